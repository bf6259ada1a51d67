"""Example images for the page, generated at start (phantoms; nothing of a patient is shipped or stored)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

EXAMPLE_SEEDS = (1, 4, 5)   # phantoms: AS (grades 2/3), non-AS, non-AS mimic (osteitis condensans ilii)
PHOTO_SEED = 2


def make_examples(folder: Path) -> tuple[list[str], list[str]]:
    """Write a few phantom radiographs (16-bit PNG) and a phone photo of one (JPEG) into ``folder``."""
    from PIL import Image

    from as_ai.synthetic import pelvis

    radiographs, photos = [], []
    for seed in EXAMPLE_SEEDS:
        ph = pelvis.sample(seed)
        p = folder / f"phantom_{seed}_truth_{ph.meta['label']}.png"
        Image.fromarray(_png16(ph)).save(p)
        radiographs.append(str(p))
    try:
        from as_ai.synthetic import phone
    except ImportError:
        return radiographs, photos
    ph = pelvis.sample(PHOTO_SEED)
    im = Image.fromarray(phone.photograph(_png16(ph), level=2, seed=PHOTO_SEED))
    p = folder / f"phone_photo_{PHOTO_SEED}_truth_{ph.meta['label']}.jpg"
    im.convert("RGB").save(p, quality=88)
    photos.append(str(p))
    return radiographs, photos


def _png16(phantom: Any) -> np.ndarray:
    """A phantom's stored values (``bits_stored`` bits) stretched to the full 16-bit range, as a PNG export does."""
    top = 2 ** int(phantom.meta.get("bits_stored", 16)) - 1
    return (phantom.image.astype(np.uint32) * 65535 // top).astype(np.uint16)
