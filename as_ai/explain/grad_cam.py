"""Grad-CAM: which pixels raise the log-odds of AS, for every ensemble member and for the ensemble.

Grad-CAM (Selvaraju et al., 2017): the class score's gradient with respect to the last convolutional
feature map ``A`` (C x h x w) is averaged over space to give one weight per channel, and the map is
``ReLU(sum_c w_c A_c)``.  timm models split into ``forward_features`` (ending at that feature map) and
``forward_head`` (pooling and classifier), so the gradient only has to flow back through the head:
the backbone runs once without autograd, which makes a Grad-CAM cost about one plain forward pass --
fast enough to be the Space's default. :func:`gradcam` scales each member's map to a maximum of 1 and
weights them as the ensemble weights their probabilities.

The class score is the log-odds of the positive label: ``logit[pos] - logit[other]`` for two-class
heads, the single logit for one-output heads. It is monotone in P(positive), so the map shows what
raises the probability the ensemble reports.
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..transforms import to_input_grid
from .protocol import Explainable, ensemble_view, read_view
from .result import Explanation

__all__ = ["gradcam", "member_cam", "log_odds", "unit_max"]


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


def gradcam(diagnoser: Explainable, image: Any) -> Explanation:
    """Grad-CAM of every member and of the ensemble, on the input image's pixel grid.

    Each member's map (``ReLU`` of the gradient-weighted last feature map, for the log-odds of AS) is
    scaled to a maximum of 1; the ensemble map is their mean weighted by the ensemble's member
    weights, again scaled to a maximum of 1.

    Raises:
        InvalidImageError: ``image`` cannot be read as a radiograph.

    Example:
        >>> e = gradcam(d, "pelvis.png")                   # doctest: +SKIP
        >>> e.heatmap.max(), sorted(e.members)             # doctest: +SKIP
        (1.0, ['mnv3_a', 'mnv3_b'])
    """
    t0 = time.perf_counter()
    rg = read_view(diagnoser, image)
    members, by_size = ensemble_view(diagnoser)
    x = diagnoser.model_input([rg])
    big = max(by_size)
    crop = by_size[big].crop
    combined = torch.zeros((crop, crop))
    per_member: dict[str, np.ndarray] = {}
    total = sum(w for _, _, w, _ in members) or 1.0
    was_training = diagnoser.ensemble.training
    diagnoser.ensemble.eval()
    try:
        for name, module, weight, size in members:
            cam = member_cam(module, x[size].to(diagnoser.device)).cpu()
            cam = F.interpolate(cam[:, None].float(), size=(crop, crop), mode="bilinear", align_corners=False)[0, 0]
            cam = unit_max(cam[None])[0]
            per_member[name] = cam
            combined += (weight / total) * cam
    finally:
        diagnoser.ensemble.train(was_training)
    combined = unit_max(combined[None])[0]
    with torch.inference_mode():
        prob = float(diagnoser.predict_tensor(x)[0][0])
    shape = rg.shape
    heat = to_input_grid(combined, shape, by_size[big])
    maps = {n: to_input_grid(c, shape, by_size[big]) for n, c in per_member.items()}
    return Explanation(method="gradcam", heatmap=heat.astype(np.float32), probability=prob,
                       members={k: v.astype(np.float32) for k, v in maps.items()},
                       seconds=time.perf_counter() - t0,
                       params={"target": "log-odds of AS", "layer": "last feature map (forward_features)",
                               "weights": {n: w / total for n, _, w, _ in members}})
