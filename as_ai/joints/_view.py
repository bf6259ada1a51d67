"""The two views of the joint reader (private): the whole radiograph shrunk for the localiser, and one joint's
crop at native resolution for the grader.

Both start from a :class:`~as_ai.radiograph.Radiograph` (so every input went through
:func:`as_ai.decoding.load_radiograph`), shrink with :func:`as_ai.transforms.resize_short_edge` and standardise
grey levels with :func:`as_ai.transforms.standardise_intensity` (window and reference measured on the training
images), exactly as the whole-image members' view does. The crop itself (a box of the original pixels resampled
to a fixed size) has no counterpart in :mod:`as_ai.transforms` yet; it lives here until it moves there.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from ..preprocess import Preprocess
from ..radiograph import Radiograph
from ..transforms import resize_short_edge, standardise_intensity

Box = tuple[float, float, float, float]   # (x0, y0, x1, y1) in pixels of the original image, end-exclusive


def intensity_preprocess(window: Sequence[float], reference: Sequence[float]) -> Preprocess:
    """The :class:`Preprocess` whose ``window_gamma`` standardisation a joint view applies (its geometry unused)."""
    return Preprocess(intensity="window_gamma", intensity_window=tuple(window), intensity_reference=tuple(reference))


def standardise(x: torch.Tensor, p: Preprocess) -> torch.Tensor:
    """Grey views (``... x H x W`` in [0, 1]) standardised as ``p`` says (:func:`standardise_intensity`)."""
    return standardise_intensity(x, p)


def localiser_grey(rg: Radiograph, short_edge: int) -> tuple[torch.Tensor, tuple[float, float]]:
    """The whole image, short edge resized to ``short_edge`` (1 x h x w, grey in [0, 1], before intensity
    standardisation), and the (x, y) factors that take view coordinates back to the original pixels."""
    t = torch.from_numpy(np.array(rg.pixels, dtype=np.float32, copy=True))[None]
    view = resize_short_edge(t, int(short_edge))
    H, W = rg.shape
    return view, (W / view.shape[-1], H / view.shape[-2])


def crop_window(box: Box, *, margin: float, aspect: float) -> Box:
    """The window a joint crop reads: ``box`` grown by ``margin`` (fraction of its size) on every side, then
    its shorter dimension grown so that height / width == ``aspect``; same centre."""
    x0, y0, x1, y1 = (float(v) for v in box)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    w, h = max(x1 - x0, 1.0) * (1 + 2 * margin), max(y1 - y0, 1.0) * (1 + 2 * margin)
    if h / w < aspect:
        h = w * aspect
    else:
        w = h / aspect
    return cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2


def joint_crop(pixels: torch.Tensor | np.ndarray, box: Box, *, size: tuple[int, int], margin: float,
               mirror: bool) -> torch.Tensor:
    """One joint read at native resolution: the window of ``box`` (:func:`crop_window`) cut from ``pixels``
    (H x W or 1 x H x W, grey in [0, 1]; outside the image reads 0 = air) and resampled to ``size`` (h, w),
    bilinear and antialiased; mirrored left-right when ``mirror`` (so one network reads both sides).
    Returns 1 x h x w, before intensity standardisation."""
    px = torch.as_tensor(pixels, dtype=torch.float32)
    if px.dim() == 3:
        px = px[0]
    H, W = px.shape
    oh, ow = int(size[0]), int(size[1])
    x0, y0, x1, y1 = crop_window(box, margin=margin, aspect=oh / ow)
    ix0, iy0 = int(math.floor(x0)), int(math.floor(y0))
    ix1, iy1 = max(ix0 + 1, int(math.ceil(x1))), max(iy0 + 1, int(math.ceil(y1)))
    region = torch.zeros((iy1 - iy0, ix1 - ix0), dtype=torch.float32)
    sx0, sy0, sx1, sy1 = max(ix0, 0), max(iy0, 0), min(ix1, W), min(iy1, H)
    if sx1 > sx0 and sy1 > sy0:
        region[sy0 - iy0:sy1 - iy0, sx0 - ix0:sx1 - ix0] = px[sy0:sy1, sx0:sx1]
    out = torch.nn.functional.interpolate(region[None, None], size=(oh, ow), mode="bilinear", antialias=True,
                                          align_corners=False)[0]
    return torch.flip(out, dims=[-1]) if mirror else out


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0
