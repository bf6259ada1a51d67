"""A contact sheet of the phantoms, so anyone can see what the synthetic data look like.

Rows: (1) one patient with bilateral grades 0-4; (2) the patient's right SI joint zoomed, grades
0-4; (3) the mimics (osteitis condensans ilii, DISH, degenerative) zoomed, hip involvement zoomed,
and the full image of the OCI case; (4) the same patient at centres A-D and a level-3 phone photo.

Example::

    >>> from as_ai.synthetic.preview import contact_sheet
    >>> contact_sheet("/tmp/sheet.png", size=256).name
    'sheet.png'
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from . import pelvis
from .phone import photograph, to_display

TILE = 256


def _grey(ph: pelvis.Phantom) -> Image.Image:
    return Image.fromarray((to_display(ph.image) * 255 + 0.5).astype(np.uint8)).convert("RGB")


def _zoom(ph: pelvis.Phantom, roi: str, pad: float = 0.15) -> Image.Image:
    x0, y0, x1, y1 = ph.meta["rois"][roi]
    w, h = x1 - x0, y1 - y0
    s = max(w, h) * (1 + 2 * pad)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    box = tuple(int(round(v)) for v in (cx - s / 2, cy - s / 2, cx + s / 2, cy + s / 2))
    return _grey(ph).crop(box)


def _tile(im: Image.Image, caption: str) -> Image.Image:
    t = im.resize((TILE, TILE), Image.Resampling.LANCZOS)
    d = ImageDraw.Draw(t)
    d.rectangle((0, TILE - 16, TILE, TILE), fill=(0, 0, 0))
    d.text((4, TILE - 14), caption, fill=(255, 230, 120))
    return t


def contact_sheet(out: str | os.PathLike, *, seed: int = 1, size: int = 384) -> Path:
    """Render the contact sheet to ``out`` (PNG) and return its path.

    Raises:
        ValueError: ``size`` outside 128-2048 (from the renderer).
    """
    tiles: list[list[Image.Image]] = [[], [], [], []]
    for g in range(5):
        ph = pelvis.render(seed, (g, g), size=size)
        tiles[0].append(_tile(_grey(ph), f"grades L{g}/R{g}  label {ph.meta['true_label']}"))
        tiles[1].append(_tile(_zoom(ph, "sij_right"), f"right SI joint, grade {g}"))
    oci = pelvis.render(seed, (0, 0), size=size, mimic="osteitis_condensans_ilii")
    for mimic, name in (("osteitis_condensans_ilii", "osteitis condensans ilii"), ("dish", "DISH"),
                        ("degenerative", "degenerative")):
        ph = pelvis.render(seed, (0, 0), size=size, mimic=mimic)
        tiles[2].append(_tile(_zoom(ph, "sij_right"), f"mimic: {name} (non-AS)"))
    hip = pelvis.render(seed, (3, 3), size=size, hip_involvement=True)
    tiles[2].append(_tile(_zoom(hip, "hip_right", 0.05), "hip involvement (narrowing)"))
    tiles[2].append(_tile(_grey(oci), "OCI, full image"))
    for c in "ABCD":
        ph = pelvis.render(seed, (3, 2), size=size, center=c)
        tiles[3].append(_tile(_grey(ph), f"centre {c}, grades L3/R2"))
    photo = photograph(to_display(ph.image), level=3, seed=seed)
    tiles[3].append(_tile(Image.fromarray(photo), "phone photo, level 3"))
    sheet = Image.new("RGB", (5 * TILE + 6 * 4, 4 * TILE + 5 * 4 + 22), (20, 20, 20))
    d = ImageDraw.Draw(sheet)
    d.text((6, 4), f"as-ai synthetic phantoms (seed {seed}) - SYNTHETIC, not patients; "
                   "image right = patient left", fill=(255, 255, 255))
    for r, row in enumerate(tiles):
        for c, t in enumerate(row):
            sheet.paste(t, (4 + c * (TILE + 4), 22 + 4 + r * (TILE + 4)))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out, format="PNG")
    return out
