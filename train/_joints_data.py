"""Data for the joint reader's training (``train/joints.py``): images and true joint boxes held in memory,
the phone photo's geometry, and the localiser's augmentation.

* :func:`phone_box` maps a box of a radiograph onto the simulated phone photo of it
  (:func:`as_ai.synthetic.phone.photograph` draws its camera pose from the seed alone, so the same keystone,
  rotation and framing can be recomputed here and the true joint boxes of a photo are known exactly).
* :func:`load_items` reads a split in worker processes into :class:`Item` s: the localiser's shrunk grey view,
  the full-resolution pixels (float16) for the grader's crops, true boxes and grades; with ``phone=True`` a
  training image also gets a simulated phone photo of itself (another seed stream than the external photos).
* :func:`augment_localiser` draws a random similarity transform (zoom, shift, small rotation) of a view with
  its boxes, and sometimes a cropped film (a joint out of view: that side's target is "absent").
"""
from __future__ import annotations

import math
import multiprocessing as mp
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from as_ai.decoding import load_radiograph
from as_ai.joints._view import localiser_grey
from as_ai.synthetic import phone as phone_sim

SIDE_KEYS = ("sij_left", "sij_right")


def phone_box(box: Sequence[float], shape: tuple[int, int], *, level: int, seed: int) -> tuple[float, ...]:
    """Where ``box`` (x0, y0, x1, y1) of an image of ``shape`` lands in ``photograph(image, level, seed)``: the
    axis-aligned box around the projected outline (:func:`as_ai.synthetic.phone.image_points`)."""
    x0, y0, x1, y1 = (float(v) for v in box)
    t = np.linspace(0, 1, 9)
    outline = np.concatenate([np.stack([x0 + (x1 - x0) * t, np.full_like(t, y0)], 1),
                              np.stack([x0 + (x1 - x0) * t, np.full_like(t, y1)], 1),
                              np.stack([np.full_like(t, x0), y0 + (y1 - y0) * t], 1),
                              np.stack([np.full_like(t, x1), y0 + (y1 - y0) * t], 1)])
    px, py = phone_sim.image_points(outline, shape, level, seed).T
    return float(px.min()), float(py.min()), float(px.max()), float(py.max())


def anatomical_box(roi: Sequence[float], centre: str, size: int, *, train_centre: str = "A") -> tuple[float, ...]:
    """The joint's box as the localiser learns it, for an image of ``centre``: the stored ROI without that
    centre's blur margin (``_acquisition.blur_margin_px``: how far its detector blur and edge enhancement can
    spread a lesion, 5 px at centre A but 30 px at D), plus the training centre's margin in millimetres. At the
    training centre it is the stored ROI itself."""
    from as_ai.synthetic._acquisition import CENTRES, blur_margin_px

    ps = CENTRES[centre].fov_mm / size
    ref = CENTRES[train_centre]
    ref_mm = blur_margin_px(ref, ref.fov_mm / size) * ref.fov_mm / size
    g = ref_mm / ps - blur_margin_px(CENTRES[centre], ps)
    x0, y0, x1, y1 = (float(v) for v in roi)
    return x0 - g, y0 - g, x1 + g, y1 + g


@dataclass
class Item:
    """One image as training and evaluation read it."""

    view: torch.Tensor              # 1 x h x w localiser grey view, before intensity standardisation
    scale: tuple[float, float]      # view -> original pixels (x, y)
    pixels: np.ndarray              # H x W float16, the full-resolution grey image (for the grader's crops)
    boxes: list[tuple[float, ...]]  # true (left, right) boxes in original pixels
    grades: tuple[int, int]         # true grades (left, right)
    row: dict


def _item(args) -> Item | tuple[Item, Item]:
    row, short_edge, phone_level, phone_seed = args
    torch.set_num_threads(1)
    rg = load_radiograph(row["path"])
    view, scale = localiser_grey(rg, short_edge)
    boxes = [tuple(float(v) for v in row["rois"][k]) for k in SIDE_KEYS]
    grades = (int(row["grade_left"]), int(row["grade_right"]))
    if int(row.get("phone_level") or 0):                        # an external phone photo: map its boxes
        boxes = [phone_box(b, tuple(row["_orig_shape"]), level=int(row["phone_level"]), seed=int(row["seed"]))
                 for b in boxes]
    item = Item(view, scale, rg.pixels.astype(np.float16), boxes, grades, row)
    if not phone_level:
        return item
    photo = phone_sim.photograph(phone_sim.to_display(np.asarray(rg.pixels)), level=phone_level, seed=phone_seed)
    prg = load_radiograph(photo)
    pview, pscale = localiser_grey(prg, short_edge)
    pboxes = [phone_box(b, rg.shape, level=phone_level, seed=phone_seed) for b in boxes]
    return item, Item(pview, pscale, prg.pixels.astype(np.float16), pboxes, grades,
                      dict(row, phone_level=phone_level))


def load_items(rows: list[dict], *, short_edge: int, workers: int = 2, phone: bool = False, seed: int = 0
               ) -> tuple[list[Item], list[Item]]:
    """Read ``rows`` (``read_split`` records) into items; with ``phone``, also a phone photo of each (levels 1-4
    in turn from a seeded draw). External phone rows need ``_orig_shape`` (the radiograph's shape)."""
    rng = np.random.default_rng([seed, 31])
    jobs = [(r, short_edge, int(rng.integers(1, 5)) if phone else 0, int(r["seed"]) + 1) for r in rows]
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    if workers > 1:
        with ctx.Pool(workers) as pool:
            out = pool.map(_item, jobs, chunksize=8)
    else:
        out = [_item(j) for j in jobs]
    if phone:
        return [o[0] for o in out], [o[1] for o in out]
    return out, []


def _affine(view: torch.Tensor, boxes: list, scale: tuple[float, float], rng: np.random.Generator, *,
            zoom: float, shift: float, degrees: float) -> tuple[torch.Tensor, list]:
    """A random similarity transform of ``view`` (1 x h x w) and its (original-pixel) boxes."""
    _, h, w = view.shape
    z = math.exp(rng.uniform(-zoom, zoom))
    a = math.radians(rng.uniform(-degrees, degrees))
    tx, ty = rng.uniform(-shift, shift) * w, rng.uniform(-shift, shift) * h
    c = np.array([w / 2, h / 2])
    M = z * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])   # out = M (in - c) + c + t
    Minv = np.linalg.inv(M)
    # affine_grid works in normalised coordinates ([-1, 1], align_corners=False)
    N = np.diag([2 / w, 2 / h])
    A = N @ Minv @ np.linalg.inv(N)
    tn = -(N @ Minv @ np.array([tx, ty]))
    theta = torch.tensor(np.concatenate([A, tn[:, None]], 1), dtype=torch.float32)[None]
    grid = torch.nn.functional.affine_grid(theta, [1, 1, h, w], align_corners=False)
    out = torch.nn.functional.grid_sample(view[None], grid, mode="bilinear", padding_mode="zeros",
                                          align_corners=False)[0]
    new = []
    for b in boxes:
        if b is None:
            new.append(None)
            continue
        x0, y0, x1, y1 = b[0] / scale[0], b[1] / scale[1], b[2] / scale[0], b[3] / scale[1]
        corners = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]]) - c
        pts = corners @ M.T + c + np.array([tx, ty])
        # a rotated box's axis-aligned hull overstates it; shrink back to the same area (small angles)
        cx, cy = pts.mean(0)
        bw, bh = (x1 - x0) * z, (y1 - y0) * z
        nb = (cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2)
        inside = 0 <= cx < w and 0 <= cy < h and nb[0] > -bw * 0.3 and nb[2] < w + bw * 0.3 \
            and nb[1] > -bh * 0.3 and nb[3] < h + bh * 0.3
        new.append(nb if inside else None)
    return out, new


def augment_localiser(item: Item, rng: np.random.Generator, *, crop_p: float = 0.08
                      ) -> tuple[torch.Tensor, list]:
    """A training view of ``item`` and its boxes **in view pixels** (None: that joint is not in view)."""
    view, boxes = _affine(item.view, item.boxes, item.scale, rng, zoom=0.18, shift=0.08, degrees=6.0)
    if rng.random() < crop_p:                                   # a film cut through the pelvis: a joint missing
        _, h, w = view.shape
        side = int(rng.integers(0, 2))                          # 0: left joint (image right) cut off
        b = boxes[side]
        if b is not None:
            view = view.clone()
            if side == 0:
                cut = int(max(0, min(w - 1, b[0] + rng.uniform(-0.2, 0.3) * (b[2] - b[0]))))
                view[:, :, cut:] = 0.0
            else:
                cut = int(max(1, min(w, b[2] - rng.uniform(-0.2, 0.3) * (b[2] - b[0]))))
                view[:, :, :cut] = 0.0
            boxes = list(boxes)
            boxes[side] = None
    return view, boxes


def negative_view(rng: np.random.Generator, size: int) -> torch.Tensor:
    """An image with no pelvis in it (smooth blobs, noise, a gradient, a flat field), 1 x size x size in [0, 1]."""
    kind = int(rng.integers(0, 4))
    if kind == 0:
        from scipy import ndimage
        x = ndimage.gaussian_filter(rng.random((size, size)), rng.uniform(2, 10))
        x = (x - x.min()) / (np.ptp(x) + 1e-9)
    elif kind == 1:
        x = rng.random((size, size))
    elif kind == 2:
        x = np.tile(np.linspace(0, 1, size), (size, 1))
        x = x if rng.random() < 0.5 else x.T
    else:
        x = np.full((size, size), rng.uniform(0, 1))
    return torch.tensor(x, dtype=torch.float32)[None]
