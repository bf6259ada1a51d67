"""What every explanation method returns: :class:`Explanation`, a heatmap on the input image's pixel grid.

Grad-CAM, LIME and NormLIME all give one: the map, the probability it explains, the per-member maps
(Grad-CAM) or the superpixels and their weights (LIME, NormLIME), the time it took and how it was computed,
plus a JSON summary (``to_dict``) with the map shrunk for transport.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["Explanation", "jsonable"]


@dataclass(frozen=True, eq=False)
class Explanation:
    """A heatmap explaining P(AS) for one image, on that image's pixel grid.

    Attributes:
        method: ``"gradcam"``, ``"lime"`` or ``"normlime"``.
        heatmap: float32 H x W. Grad-CAM: in [0, 1]. LIME / NormLIME: signed superpixel weights scaled
            to [-1, 1] (positive = raises P(AS)); 0 where the model does not see the image.
        probability: the calibrated ensemble P(AS) of the explained image.
        members: Grad-CAM only: member name -> its own heatmap (H x W, [0, 1]).
        segments: LIME / NormLIME: superpixel label per pixel (int32 H x W, -1 outside the model's view).
        weights: LIME / NormLIME: the (unscaled) weight of each superpixel.
        seconds: wall time spent computing the explanation.
        params: how it was computed (samples, superpixels, seed, ...).
    """

    method: str
    heatmap: np.ndarray = field(repr=False)
    probability: float
    members: dict[str, np.ndarray] | None = field(default=None, repr=False)
    segments: np.ndarray | None = field(default=None, repr=False)
    weights: tuple[float, ...] | None = field(default=None, repr=False)
    seconds: float = 0.0
    params: dict[str, Any] = field(default_factory=dict)
    target: str = "AS"

    def top_regions(self, k: int = 5) -> list[int]:
        """The ``k`` superpixels with the largest positive weight (LIME / NormLIME), strongest first."""
        if self.weights is None:
            raise ValueError(f"{self.method} explanations have no superpixels; use method='lime'")
        order = np.argsort(-np.asarray(self.weights), kind="stable")
        return [int(i) for i in order[:k]]

    def to_dict(self, *, max_side: int = 64) -> dict[str, Any]:
        """JSON-serialisable summary: the heatmap downsampled to at most ``max_side`` px a side."""
        return {
            "method": self.method, "target": self.target, "probability": float(self.probability),
            "shape": [int(s) for s in self.heatmap.shape],
            "heatmap": np.round(_shrink(self.heatmap, max_side), 4).tolist(),
            "members": None if self.members is None else sorted(self.members),
            "weights": None if self.weights is None else [float(w) for w in self.weights],
            "seconds": float(self.seconds), "params": jsonable(self.params),
        }


def _shrink(a: np.ndarray, max_side: int) -> np.ndarray:
    h, w = a.shape
    s = max(h, w) / max_side
    if s <= 1:
        return a
    t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))[None, None]
    return F.interpolate(t, size=(max(1, round(h / s)), max(1, round(w / s))), mode="area")[0, 0].numpy()


def jsonable(v: Any) -> Any:
    """``v`` with dict keys as str, tuples as lists and numpy scalars as Python numbers (for ``json.dumps``)."""
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    return v
