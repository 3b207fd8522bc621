"""X-WIN's losses as pure functions of tensors (computed in float32).

Alignment (view prediction): z_i = mean-pooled predicted tokens of view i, t_i = mean-pooled
target-encoder tokens of the same view, both L2-normalised; logits_ij = <z_i, t_j>/τ over all B·N
views of the batch.
  info_nce          symmetric cross-entropy with the diagonal as the positive pair.
  affinity_loss     the same logits with soft labels A_ij = softmax_j(<t_i, t_j>/τ̃): views of one
                    volume that look alike (neighbouring angles) share probability mass, so they
                    are not pushed apart as hard negatives. Symmetric as info_nce. With `groups`
                    (the volume of each view) A_ij is taken over the views of i's own volume only:
                    another CT's view at the same angle is then a negative, as in info_nce.
MIM: MSE between g_m predictions and layer-normed target-encoder tokens at masked positions,
averaged over the simulated and the real images.
Domain: L_domain = mean ||z − t||² − mean log f_c(z) for simulated predictions z (squared error
per dimension, as MSE), with f_c frozen; L_cls = BCE of f_c on detached features, real = 1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _logits(z: torch.Tensor, t: torch.Tensor, tau: float) -> torch.Tensor:
    z = F.normalize(z.float(), dim=-1)
    t = F.normalize(t.float(), dim=-1)
    return z @ t.T / tau


def info_nce(z: torch.Tensor, t: torch.Tensor, tau: float = 0.1) -> torch.Tensor:
    """Symmetric InfoNCE between predicted (N, D) and target (N, D) embeddings."""
    logits = _logits(z, t, tau)
    labels = torch.arange(len(logits), device=logits.device)
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))


def affinity_targets(t: torch.Tensor, tau_tilde: float = 0.1, groups: torch.Tensor | None = None) -> torch.Tensor:
    """A_ij = softmax_j(sim(t_i, t_j)/τ̃) from target embeddings (no gradient); rows sum to 1.
    `groups` (N,): the volume of each view; then A_ij = 0 unless views i and j share a volume."""
    t = F.normalize(t.detach().float(), dim=-1)
    sim = t @ t.T / tau_tilde
    if groups is not None:
        sim = sim.masked_fill(groups[:, None] != groups[None, :], float("-inf"))
    return torch.softmax(sim, dim=-1)


def affinity_loss(z: torch.Tensor, t: torch.Tensor, tau: float = 0.1, tau_tilde: float = 0.1,
                  groups: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy of the alignment logits against the affinity soft labels, both directions."""
    logits = _logits(z, t, tau)
    soft = affinity_targets(t, tau_tilde, groups)
    return 0.5 * (F.cross_entropy(logits, soft) + F.cross_entropy(logits.T, soft))


def mim_loss(pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """Mean over domains of MSE(prediction, layer-normed target tokens)."""
    return torch.stack([F.mse_loss(p.float(), h.float()) for p, h in pairs]).mean()


def layer_normed(tokens: torch.Tensor) -> torch.Tensor:
    """MIM targets: target-encoder tokens normalised per token without affine (I-JEPA)."""
    return F.layer_norm(tokens.float(), (tokens.size(-1),))


def domain_loss(z: torch.Tensor, t: torch.Tensor, real_logit: torch.Tensor) -> torch.Tensor:
    """mean ||z − t||² − mean log f_c(z): pull simulated predictions toward their targets and
    toward what the (frozen) classifier calls real. `real_logit` = f_c(pool(z)), frozen f_c."""
    return F.mse_loss(z.float(), t.float()) + F.softplus(-real_logit.float()).mean()


def classifier_loss(sim_logit: torch.Tensor, real_logit: torch.Tensor) -> torch.Tensor:
    """BCE of f_c: simulated → 0, real → 1 (one mean over all samples)."""
    logits = torch.cat([sim_logit, real_logit]).float()
    labels = torch.cat([torch.zeros_like(sim_logit), torch.ones_like(real_logit)]).float()
    return F.binary_cross_entropy_with_logits(logits, labels)
