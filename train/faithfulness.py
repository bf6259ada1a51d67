"""Whether a heatmap is faithful: the deletion curve, and whether its strongest region is a sacroiliac joint.

:func:`deletion_curve` removes growing shares of the image, most important first by the map, and records
how fast P(AS) falls (a random ranking is the baseline); :func:`si_joint_hit` asks whether the map's peak
lies on an SI joint, where radiographic sacroiliitis is read. ``python -m train.explain`` reports both; they
measure the explanation methods of :mod:`as_ai.explain` and are used only in training and evaluation.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from as_ai.decoding import load_radiograph
from as_ai.explain.protocol import Explainable, ensemble_view
from as_ai.transforms import to_input_grid

__all__ = ["DeletionCurve", "deletion_curve", "si_joint_hit"]


@dataclass(frozen=True)
class DeletionCurve:
    """P(AS) as growing shares of the image, most important first, are replaced by a blurred copy.

    ``auc`` is the normalised area under the curve (mean over the fractions, trapezoid rule): lower
    means the map found what the model relies on.
    """

    fractions: tuple[float, ...]
    probabilities: tuple[float, ...]
    auc: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict."""
        return {"fractions": list(self.fractions), "probabilities": list(self.probabilities), "auc": self.auc}


def deletion_curve(diagnoser: Explainable, image: Any, heatmap: np.ndarray | None, *, steps: int = 20,
                   seed: int = 0) -> DeletionCurve:
    """Deletion curve of a heatmap (input grid); ``heatmap=None`` ranks pixels at random (the baseline).

    Only pixels the model sees are ranked (outside its centre crop nothing changes). Removed pixels
    take the value of a Gaussian-blurred copy of the image (sigma 4 % of the short side), which removes
    detail without adding edges. Ties in the map are broken at random (``seed``).
    """
    from scipy import ndimage

    rg = load_radiograph(image)
    px = np.asarray(rg.pixels, dtype=np.float32)
    h, w = px.shape
    _, by_size = ensemble_view(diagnoser)
    p = by_size[max(by_size)]
    seen = to_input_grid(np.ones((p.crop, p.crop), np.float32), (h, w), p, mode="nearest") > 0.5
    rng = np.random.default_rng(seed)
    score = rng.random((h, w)) if heatmap is None else np.asarray(heatmap, np.float64) + 1e-9 * rng.random((h, w))
    score = np.where(seen, score, -np.inf)
    order = np.argsort(-score, axis=None, kind="stable")[: int(seen.sum())]
    blurred = ndimage.gaussian_filter(px, 0.04 * min(h, w)).astype(np.float32)
    fractions = np.linspace(0.0, 1.0, steps + 1)
    batch = []
    for f in fractions:
        img = px.copy().ravel()
        idx = order[: int(round(f * len(order)))]
        img[idx] = blurred.ravel()[idx]
        batch.append(img.reshape(h, w))
    probs = diagnoser.predict_proba(batch, batch_size=len(batch))
    auc = float(np.sum((probs[1:] + probs[:-1]) / 2 * np.diff(fractions)))  # trapezoid rule, any NumPy
    return DeletionCurve(tuple(float(f) for f in fractions), tuple(float(q) for q in probs), auc)


def si_joint_hit(heatmap: np.ndarray, rois: Mapping[str, Any] | Iterable[Any], *, keys: Sequence[str] | None = None,
                 top: float = 0.95) -> bool:
    """Whether the strongest region of a heatmap lies in a sacroiliac-joint ROI.

    The strongest region is the set of pixels at or above ``top`` times the map's maximum (a Grad-CAM
    peak, or the top LIME superpixel); it hits when its centroid lies inside one of the ROI boxes.
    ``rois`` maps names to pixel boxes ``(x0, y0, x1, y1)`` (end exclusive, as the phantom generator's
    ``meta["rois"]``) or is a list of such boxes; ``keys`` picks the SI-joint entries (default: names
    starting with "sij").
    """
    hm = np.asarray(heatmap, dtype=np.float64)
    peak = hm.max()
    if not np.isfinite(peak) or peak <= 0:
        return False
    ys, xs = np.nonzero(hm >= top * peak)
    cy, cx = ys.mean(), xs.mean()
    boxes = _si_boxes(rois, keys)
    return any(x0 <= cx < x1 and y0 <= cy < y1 for x0, y0, x1, y1 in boxes)


def _si_boxes(rois: Mapping[str, Any] | Iterable[Any], keys: Sequence[str] | None) -> list[tuple[float, ...]]:
    if isinstance(rois, Mapping):
        names = list(keys) if keys is not None else [k for k in rois if str(k).lower().startswith("sij")]
        return [tuple(float(v) for v in rois[k]) for k in names]
    return [tuple(float(v) for v in b) for b in rois]
