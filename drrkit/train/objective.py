"""One X-WIN training objective evaluation: batch in, weighted losses out.

    L = λ_align·(L_NCE + λ_aff·L_aff) + λ_MIM·L_MIM + λ_domain·L_domain + λ_cls·L_cls + λ_dec·L_dec

A loss whose weight is 0 is not computed, nor any forward pass only it needs. The losses that
compare domains (L_domain, L_cls) need real radiographs and are skipped for batches without them;
L_MIM then averages over the simulated images alone. With `mim_views: all` the simulated images
of L_MIM are the context and every target view (each target with its CT's masks); L_domain and
L_cls still use the context views' predictions. This module is what DDP wraps.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from drrkit.train import losses as L
from drrkit.train.config import LossConfig
from drrkit.train.masks import apply_masks
from drrkit.train.model import XWin

LOSS_NAMES = ("align", "affinity", "mim", "domain", "cls", "decoder")


def loss_weights(cfg: LossConfig) -> dict[str, float]:
    """Effective weight of each logged term in the total."""
    return {"align": cfg.align, "affinity": cfg.align * cfg.affinity, "mim": cfg.mim,
            "domain": cfg.domain, "cls": cfg.cls, "decoder": cfg.decoder}


class XWinObjective(nn.Module):
    def __init__(self, model: XWin, cfg: LossConfig):
        super().__init__()
        self.model, self.cfg = model, cfg
        self.weights = loss_weights(cfg)

    def forward(self, sim: dict, real: dict | None = None) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        w = self.weights
        t_tokens = None  # f' tokens of the target views, shared by the view and the masked losses
        if w["align"] > 0 or w["decoder"] > 0:
            t_tokens = self._view_losses(sim, out)
        if w["mim"] > 0 or w["domain"] > 0 or w["cls"] > 0:
            self._masked_losses(sim, real, out, t_tokens)
        out["total"] = sum(w[k] * v for k, v in out.items())
        return out

    def _view_losses(self, sim: dict, out: dict) -> torch.Tensor:
        """World-model terms: predict target views from the context + action; decode targets.
        Returns the target views' f' tokens (B·N, T, D)."""
        m, cfg = self.model, self.cfg
        targets = sim["targets"].flatten(0, 1)  # (B·N, C, H, W)
        t_tokens = m.target_tokens(targets)
        if cfg.align > 0:
            z = m.predict_views(sim["context"], sim["actions"]).mean(1)
            t = t_tokens.mean(1)
            out["align"] = L.info_nce(z, t, cfg.tau)
            if cfg.affinity > 0:
                n = sim["targets"].size(1)
                groups = None if cfg.affinity_scope == "batch" else \
                    torch.arange(len(z) // n, device=z.device).repeat_interleave(n)  # the CT of each view
                out["affinity"] = L.affinity_loss(z, t, cfg.tau, cfg.affinity_tau, groups)
        if cfg.decoder > 0:
            out["decoder"] = F.mse_loss(m.decoder(t_tokens.detach()).float(), targets.float())
        return t_tokens

    def masked_prediction(self, images: torch.Tensor, masks_enc, masks_pred,
                          target_tokens: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(g_m predictions, layer-normed target tokens) at the masked patches, (npred·B, K, D).
        `target_tokens`: the images' f' tokens where already computed."""
        m = self.model
        tokens = m.target_tokens(images) if target_tokens is None else target_tokens
        h = apply_masks(L.layer_normed(tokens), list(masks_pred))
        z = m.masked_predictor(m.context_tokens(images, masks_enc), masks_enc, masks_pred)
        return z, h

    def _masked_losses(self, sim: dict, real: dict | None, out: dict, t_tokens: torch.Tensor | None) -> None:
        cfg, f_c = self.cfg, self.model.domain_classifier
        z_sim, h_sim = self.masked_prediction(sim["context"], sim["masks_enc"], sim["masks_pred"])
        pairs = [(z_sim, h_sim)]
        if cfg.mim_views == "all" and cfg.mim > 0:  # the target views too, each with its CT's masks
            n = sim["targets"].size(1)
            z_t, h_t = self.masked_prediction(sim["targets"].flatten(0, 1), sim["masks_enc"].repeat_interleave(n, 0),
                                              sim["masks_pred"].repeat_interleave(n, 1), t_tokens)
            pairs = [(torch.cat([z_sim, z_t]), torch.cat([h_sim, h_t]))]
        if real is not None:
            z_real, h_real = self.masked_prediction(real["image"], real["masks_enc"], real["masks_pred"])
            pairs.append((z_real, h_real))
        if cfg.mim > 0:
            out["mim"] = L.mim_loss(pairs)
        if real is None:
            return
        if cfg.domain > 0:
            out["domain"] = L.domain_loss(z_sim, h_sim, f_c(z_sim.mean(1).float(), frozen=True))
        if cfg.cls > 0:
            out["cls"] = L.classifier_loss(f_c(z_sim.mean(1).detach().float()), f_c(z_real.mean(1).detach().float()))
