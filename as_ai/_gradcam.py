"""Grad-CAM for timm CNNs and weighted ensembles of them (private machinery of :mod:`as_ai.explain`).

Grad-CAM (Selvaraju et al., 2017): the class score's gradient with respect to the last convolutional
feature map ``A`` (C x h x w) is averaged over space to give one weight per channel, and the map is
``ReLU(sum_c w_c A_c)``.  timm models split into ``forward_features`` (ending at that feature map) and
``forward_head`` (pooling and classifier), so the gradient only has to flow back through the head:
the backbone runs once without autograd, which makes a Grad-CAM cost about one plain forward pass.

The class score is the log-odds of the positive label: ``logit[pos] - logit[other]`` for two-class
heads, the single logit for one-output heads. It is monotone in P(positive), so the map shows what
raises the probability the ensemble reports.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def log_odds(logits: torch.Tensor, positive: int = 1) -> torch.Tensor:
    """Log-odds of the positive class from a (N, K) logit tensor (K == 1: sigmoid head)."""
    if logits.shape[-1] == 1:
        return logits[..., 0]
    if logits.shape[-1] == 2:
        return logits[..., positive] - logits[..., 1 - positive]
    # K > 2: positive class against the log-sum-exp of the others
    others = torch.cat([logits[..., :positive], logits[..., positive + 1:]], dim=-1)
    return logits[..., positive] - torch.logsumexp(others, dim=-1)


def member_cam(model: nn.Module, x: torch.Tensor, *, positive: int = 1) -> torch.Tensor:
    """Grad-CAM of one timm model for a batch ``x`` (N, 3, H, W), at the model's feature-map grid.

    Returns a (N, h, w) non-negative tensor (not normalised).
    """
    with torch.no_grad():
        feats = model.forward_features(x)
    if feats.ndim != 4:
        raise ValueError(f"Grad-CAM needs a convolutional feature map (N, C, h, w); {type(model).__name__} "
                         f"returned shape {tuple(feats.shape)}. Use a CNN member or method='lime'.")
    feats = feats.detach().requires_grad_(True)
    with torch.enable_grad():
        score = log_odds(model.forward_head(feats), positive)
        (grad,) = torch.autograd.grad(score.sum(), feats)
    weights = grad.mean(dim=(2, 3), keepdim=True)
    return F.relu((weights * feats.detach()).sum(dim=1))


def unit_max(t: torch.Tensor) -> torch.Tensor:
    """Scale each map of a (N, H, W) tensor to a maximum of 1 (all-zero maps stay zero)."""
    t = t.clamp_min(0)
    peak = t.flatten(1).amax(dim=1).clamp_min(1e-12)
    return t / peak[:, None, None]
