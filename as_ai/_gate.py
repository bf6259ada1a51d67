"""The input gate's statistics (private part of :mod:`as_ai.quality`).

The gate asks two questions of an image, each answered by a Mahalanobis-type distance from the
training images (and simulated phone photos of them), each with its own limit set on held-out data:

* **image** -- does the picture itself look like an AP pelvic radiograph? A 93-number descriptor
  of the grey image as the model sees it (centre crop): an 8 x 8 thumbnail (the layout: pelvic ring,
  hips, soft tissue), the intensity histogram, the histogram of gradient magnitudes and the level of
  fine detail. It does not depend on the model, so it refuses blank, noise, text and photos even when
  a weak model's features cannot tell them apart;
* **features** -- are the ensemble's penultimate features like those of the training images? (Lee et
  al., 2018: features feeding the last layer cluster around the training data even where the softmax
  is confidently wrong.)

Each part standardises its vectors, projects them on their ``k`` leading principal components
(variances shrunk towards their mean) and measures the Mahalanobis distance there; the features part
also adds the scaled distance *from* that subspace (``residual_weight``), since thousands of feature
dimensions vary outside the few the training images use. The gate's score is the larger of the
refusing parts' distances, each divided by its limit: above 1 means refused. A part can be fitted as
advisory (``refuses=False``): beyond its limit it adds a caution instead. The features part of a
CNN trained on one centre is best advisory: on the demo ensemble it moved strongly with another
centre's acquisition (79 % of centre-C phantoms beyond its limit, 0 % of B and D), which the model is
meant to read -- a domain-shift warning, not a reason to abstain.

Stored as ``input_gate.safetensors`` (tensors ``<part>.mean``, ``.scale``, ``.components``,
``.variances``, ``.residual_scale``, ``.params`` = [residual_weight, limit]).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

GATE_FILE = "input_gate.safetensors"
METHOD = "pca_mahalanobis_image_and_features"
PARTS = ("image", "features")
DESCRIPTOR_RESIZE, DESCRIPTOR_CROP, THUMB = 160, 144, 8
DESCRIPTOR_DIM = THUMB * THUMB + 16 + 10 + 1 + 2


@dataclass(frozen=True)
class GateStats:
    """Fitted statistics of one part of the gate (float32 numpy arrays)."""

    mean: np.ndarray            # (D,)
    scale: np.ndarray           # (D,)
    components: np.ndarray      # (k, D), orthonormal rows
    variances: np.ndarray       # (k,)
    residual_scale: np.ndarray  # (1,): mean squared residual per dimension outside the subspace
    residual_weight: float = 0.0
    limit: float = float("inf")
    refuses: bool = True        # False: beyond the limit only adds a caution, the diagnosis is still given

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    def distance(self, x: np.ndarray) -> np.ndarray:
        """Distance of each row of ``x`` (N, D) from the training data: about 1 for training-like rows."""
        f = (np.asarray(x, dtype=np.float64) - self.mean) / self.scale
        comps = self.components.astype(np.float64)
        proj = f @ comps.T
        k = comps.shape[0]
        d2 = (proj ** 2 / self.variances).sum(axis=1) / k
        if self.residual_weight > 0:
            resid = f - proj @ comps
            out = (resid ** 2).sum(axis=1) / max(self.dim - k, 1) / float(self.residual_scale[0])
            d2 = (1 - self.residual_weight) * d2 + self.residual_weight * out
        return np.sqrt(d2)

    def tensors(self, prefix: str) -> dict[str, np.ndarray]:
        return {f"{prefix}.mean": self.mean, f"{prefix}.scale": self.scale, f"{prefix}.components": self.components,
                f"{prefix}.variances": self.variances, f"{prefix}.residual_scale": self.residual_scale,
                f"{prefix}.params": np.array([self.residual_weight, self.limit, float(self.refuses)], dtype=np.float32)}

    @classmethod
    def from_tensors(cls, t: dict[str, np.ndarray], prefix: str) -> "GateStats":
        keys = ("mean", "scale", "components", "variances", "residual_scale", "params")
        missing = [f"{prefix}.{k}" for k in keys if f"{prefix}.{k}" not in t]
        if missing:
            raise ValueError(f"the input gate file lacks {missing}; refit it (python -m train.input_gate).")
        params = t[f"{prefix}.params"]
        return cls(*(t[f"{prefix}.{k}"].astype(np.float32) for k in keys[:5]), residual_weight=float(params[0]),
                   limit=float(params[1]), refuses=bool(params[2]) if len(params) > 2 else True)


def fit_stats(x: np.ndarray, *, components: int, residual_weight: float = 0.0, shrinkage: float = 0.1) -> GateStats:
    """Fit one part's statistics on training rows (N, D); ``components`` is capped at N // 4."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 8:
        raise ValueError(f"the input gate needs at least 8 rows of shape (N, D) to fit; got {x.shape}")
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    top = max(float(scale.max()), 1e-12)
    scale = np.where(scale > 1e-6 * top, scale, top)  # constant columns: any change is large, not infinite
    z = (x - mean) / scale
    k = int(max(1, min(components, x.shape[0] // 4, x.shape[1] - 1)))
    _, s, vt = np.linalg.svd(z, full_matrices=False)
    var = s[:k] ** 2 / (x.shape[0] - 1)
    var = (1 - shrinkage) * var + shrinkage * var.mean()
    comps = vt[:k]
    resid = z - (z @ comps.T) @ comps
    rs = float((resid ** 2).sum(axis=1).mean() / max(x.shape[1] - k, 1))
    return GateStats(mean=mean.astype(np.float32), scale=scale.astype(np.float32), components=comps.astype(np.float32),
                     variances=var.astype(np.float32), residual_scale=np.array([max(rs, 1e-12)], dtype=np.float32),
                     residual_weight=float(residual_weight))


def image_descriptor(pixels: np.ndarray) -> np.ndarray:
    """The 93-number descriptor of a grey image (H, W) in [0, 1] that the gate's image part scores.

    The image is first shrunk to the photo check's working view (384 px on its long side,
    :func:`as_ai._photo.fast_view`; a diagnosis computes that view once for both), then resized (short
    edge 160, antialiased) and centre-cropped to 144 px, like the model's
    view; then: 8 x 8 thumbnail (64 -> the layout), 16-bin intensity histogram, 10-bin histogram of
    log gradient magnitude, mean absolute difference from a 3 x 3 mean (fine detail / noise), and the
    crop's robust range (p99 - p1) and dark level (p1). Thumbnail and histograms are computed after
    stretching p1..p99 to 0..1, so the display's gamma and black level of a phone photo or a centre's
    processing curve move the descriptor less than anatomy does.
    """
    import torch
    import torch.nn.functional as F

    from ._photo import fast_view

    px = fast_view(pixels)  # a no-op on a view already made
    h, w = px.shape
    s = DESCRIPTOR_RESIZE / min(h, w)
    t = torch.from_numpy(np.array(px, dtype=np.float32))[None, None]
    size = (max(DESCRIPTOR_RESIZE, round(h * s)), max(DESCRIPTOR_RESIZE, round(w * s)))
    t = F.interpolate(t, size=size, mode="bilinear", antialias=True, align_corners=False)
    top, left = (size[0] - DESCRIPTOR_CROP) // 2, (size[1] - DESCRIPTOR_CROP) // 2
    c = t[0, 0, top:top + DESCRIPTOR_CROP, left:left + DESCRIPTOR_CROP]
    n = float(c.numel())
    lo, hi = torch.quantile(c.flatten(), torch.tensor([0.01, 0.99]))
    span = float(hi - lo)
    if span > 1e-3:  # contrast-normalised, so that a screen's gamma / a centre's processing matter less
        c = ((c - lo) / span).clamp(0.0, 1.0)
    thumb = F.adaptive_avg_pool2d(c[None, None], THUMB).flatten()
    hist = torch.histc(c, 16, 0.0, 1.0) / n
    gy, gx = torch.gradient(c)
    ghist = torch.histc(torch.log10(torch.sqrt(gx ** 2 + gy ** 2) + 1e-4), 10, -4.0, 0.0) / n
    detail = (c - F.avg_pool2d(c[None, None], 3, 1, 1, count_include_pad=False)[0, 0]).abs().mean()[None]
    raw = torch.tensor([span, float(lo)])
    return torch.cat([thumb, hist, ghist, detail, raw]).numpy().astype(np.float32)


def save_parts(parts: dict[str, GateStats], path: str | Path) -> None:
    from safetensors.numpy import save_file

    tensors: dict[str, np.ndarray] = {}
    for name, st in parts.items():
        tensors.update(st.tensors(name))
    save_file(tensors, str(path), metadata={"method": METHOD, "parts": ",".join(parts)})


def load_parts(path: str | Path) -> dict[str, GateStats]:
    from safetensors.numpy import load_file

    t = load_file(str(path))
    names = sorted({k.split(".", 1)[0] for k in t})
    unknown = [n for n in names if n not in PARTS]
    if unknown or not names:
        raise ValueError(f"{path} holds gate parts {names}; this as-ai knows {list(PARTS)}. Refit the gate "
                         "(python -m train.input_gate) or upgrade as-ai.")
    return {n: GateStats.from_tensors(t, n) for n in names}
