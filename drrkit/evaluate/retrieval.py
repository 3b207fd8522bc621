"""View retrieval on held-out CTs: does the world model know what the CT looks like from angle a?

For each held-out CT and each of its V views a: predict the view's latent from the frontal context
view and the action of a (encoder f + view predictor g_v, mean-pooled), and rank the CT's V views
by cosine similarity of their target-encoder embeddings (f', mean-pooled). Top-1 / top-5 are the
fractions of queries whose own view ranks first / within five; chance is 1/V and min(5, V)/V.
Also the mean |yaw error| of the top-1 view, and the PSNR of the decoded predicted view (the
latent→image head on g_v's tokens) against the true view, with the decoded target-encoder tokens
(an autoencoding ceiling) beside it.

Ranking a CT's own views can be won on the angle alone: the action says which view is asked for.
`identification` asks what only the CT can answer: for each action, rank the predicted view of CT
i against the true views of every held-out CT under that action (chance 1/n_cts). It reuses the
embeddings of the per-CT pass, so it costs no extra forward pass.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from drrkit.train.data import ProjectionViews
from drrkit.train.model import XWin


def _psnr(pred: torch.Tensor, true: torch.Tensor) -> float:
    mse = float(F.mse_loss(pred.float().clamp(0, 1), true.float()))
    return 10.0 * math.log10(1.0 / max(mse, 1e-12))


@torch.no_grad()
def ct_retrieval(model: XWin, views: torch.Tensor, actions: torch.Tensor, context: int) -> dict:
    """Ranks, decoding quality and the pooled embeddings (predicted, target: (V, D) on the CPU)
    for one CT: views (V, C, H, W), actions (V, A)."""
    device = next(model.parameters()).device
    views, actions = views.to(device), actions.to(device)
    t_tokens = model.target_tokens(views)
    z_tokens = model.predict_views(views[context:context + 1], actions.unsqueeze(0))
    z, t = z_tokens.mean(1).float(), t_tokens.mean(1).float()  # the embeddings ranked here and in identification
    sim = F.normalize(z, dim=-1) @ F.normalize(t, dim=-1).T
    order = sim.argsort(dim=1, descending=True).cpu()
    truth = torch.arange(len(views)).unsqueeze(1)
    rank = (order == truth).float().argmax(dim=1)
    yaw = actions[:, 0].cpu().numpy()
    return {"rank": rank.numpy(), "yaw_error_deg": np.degrees(np.abs(yaw[order[:, 0].numpy()] - yaw)),
            "predicted": z.cpu(), "target": t.cpu(),
            "psnr_predicted": _psnr(model.decoder(z_tokens), views),
            "psnr_target_tokens": _psnr(model.decoder(t_tokens), views)}


def _action_key(action: np.ndarray) -> tuple:
    return tuple(np.round(np.asarray(action, dtype=np.float64), 4).tolist())


def identification(per_ct: list[dict]) -> dict:
    """Across-CT ranks. per_ct: for each CT {action key: (predicted (D,), target (D,))}, the context
    view left out. For every action shared by >= 2 CTs, the predicted embedding of each CT is
    ranked (cosine) against the targets of all CTs with that action; its own CT should come first.
    mean_normalised_rank: rank / (n − 1), 0 = always first, 0.5 = chance, 1 = always last.
    target_cosine: what the target embeddings vary with, the mean cosine between two views of one
    CT under different actions (`same_ct`) and of two CTs under one action (`same_action`); a
    same_ct well above same_action means the embedding tells CTs apart more than angles."""
    keys = sorted({k for d in per_ct for k in d})
    ranks, chance1, chance5, norm, same_action = [], [], [], [], []
    for key in keys:
        members = [d[key] for d in per_ct if key in d]
        n = len(members)
        if n < 2:
            continue
        z = F.normalize(torch.stack([m[0] for m in members]), dim=-1)
        t = F.normalize(torch.stack([m[1] for m in members]), dim=-1)
        sim = z @ t.T
        rank = ((sim >= sim.diagonal()[:, None]).sum(1) - 1).numpy()  # ties count against: a collapse ranks last
        same_action.append(_mean_pairwise_cosine(t))
        ranks.append(rank)
        chance1 += [1.0 / n] * n
        chance5 += [min(5, n) / n] * n
        norm.append(rank / (n - 1))
    if not ranks:
        return {"reason": "no action shared by two or more CTs"}
    rank, norm = np.concatenate(ranks), np.concatenate(norm)
    return {"n_queries": len(rank), "n_actions": len(ranks), "top1": float(np.mean(rank == 0)),
            "top5": float(np.mean(rank < 5)), "chance_top1": float(np.mean(chance1)),
            "chance_top5": float(np.mean(chance5)), "mean_normalised_rank": float(np.mean(norm)),
            "chance_mean_normalised_rank": 0.5,
            "target_cosine": {"same_ct": _mean_cosine_within_ct(per_ct), "same_action": float(np.mean(same_action))}}


def _mean_pairwise_cosine(vectors: torch.Tensor) -> float:
    """Mean cosine over the distinct pairs of rows of vectors (n >= 2, D)."""
    t = F.normalize(vectors, dim=-1)
    return float((t @ t.T)[~torch.eye(len(t), dtype=torch.bool)].mean())


def _mean_cosine_within_ct(per_ct: list[dict]) -> float | None:
    """Mean cosine between the target embeddings of two views (two actions) of the same CT."""
    values = [_mean_pairwise_cosine(torch.stack([v[1] for v in d.values()])) for d in per_ct if len(d) >= 2]
    return float(np.mean(values)) if values else None


def view_retrieval(model: XWin, data: ProjectionViews) -> dict:
    """Retrieval accuracy over every CT of `data` (held-out CTs) and every view angle, and the
    identification of each CT among them (`identification`)."""
    ranks, errors, psnr_pred, psnr_tgt, n_views, per_ct = [], [], [], [], [], []
    for i, ct in enumerate(data.cts):
        views, actions = data.all_views(i)
        r = ct_retrieval(model, views, actions, ct.context)
        per_ct.append({_action_key(a): (r["predicted"][v], r["target"][v])
                       for v, a in enumerate(actions.numpy()) if v != ct.context})
        ranks.append(r["rank"])
        errors.append(r["yaw_error_deg"])
        psnr_pred.append(r["psnr_predicted"])
        psnr_tgt.append(r["psnr_target_tokens"])
        n_views.append(len(views))
    rank = np.concatenate(ranks)
    chance1 = float(np.mean([1.0 / v for v in n_views]))
    chance5 = float(np.mean([min(5, v) / v for v in n_views]))
    return {"n_cts": len(data.cts), "n_queries": int(len(rank)), "views_per_ct": sorted(set(n_views)),
            "top1": float(np.mean(rank == 0)), "top5": float(np.mean(rank < 5)),
            "chance_top1": chance1, "chance_top5": chance5,
            "mean_top1_yaw_error_deg": float(np.mean(np.concatenate(errors))),
            "decoded_view_psnr_db": float(np.mean(psnr_pred)),
            "decoded_target_psnr_db": float(np.mean(psnr_tgt)),
            "identification": identification(per_ct)}
