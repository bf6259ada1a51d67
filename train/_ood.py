"""Images the diagnosis model was not made for: the out-of-distribution (OOD) set for the input gate.

Every image is real or rendered here, nothing is downloaded:

* radiographs of other body parts, from pydicom's test files (installed with ``pydicom`` and
  ``pydicom-data``): a chest CR (RG1) and a lower-leg CR (RG3), each with crops, flips and zooms,
  since a user might send part of one;
* other modalities: CT slices (head, neck, pancreas, a small CT), MR slices, a whole-body bone
  scan (NM), an ultrasound frame, and the Shepp-Logan head phantom;
* natural photos from ``skimage.data`` (astronaut, coffee, chelsea, rocket, ...);
* text screenshots rendered with PIL (light and dark themes, several font sizes);
* blank images (black, white, grey, a smooth gradient) and noise (uniform, Gaussian, salt and pepper,
  smooth blobs).

``ood_images()`` returns ``(category, name, image)`` triples; images are whatever
``as_ai.load_radiograph`` accepts (DICOM paths, uint8 / float arrays).
"""
from __future__ import annotations

from typing import Any, Iterator

import numpy as np

DICOM_FILES = {
    "chest_radiograph": ["RG1_UNCR.dcm"],
    "extremity_radiograph": ["RG3_UNCR.dcm"],
    "ct": ["CT_small.dcm", "J2K_pixelrep_mismatch.dcm", "bad_sequence.dcm", "explicit_VR-UN.dcm"],
    "mr": ["MR_small.dcm", "MR2_UNCR.dcm", "examples_overlay.dcm"],
    "nuclear_medicine": ["JPEG2000.dcm"],
    "ultrasound": ["US1_UNCR.dcm"],
}
PHOTOS = ["astronaut", "coffee", "chelsea", "rocket", "camera", "moon", "coins", "clock", "horse",
          "hubble_deep_field", "immunohistochemistry", "brick", "grass", "gravel", "colorwheel", "retina",
          "cell", "page"]
TEXT = ("Patient list  ward 4B   10:42\nBed 1  J. Doe   obs stable   NEWS 2\nBed 2  pending CT report\n"
        "Bed 3  discharge today  meds reconciled\n", "def diagnose(src, model=None):\n    rg = load(src)\n"
        "    return ensemble(rg)\n\n# TODO: calibrate thresholds\n", "Lorem ipsum dolor sit amet, consectetur "
        "adipiscing elit, sed do eiusmod tempor incididunt ut labore et dolore magna aliqua. Ut enim ad minim "
        "veniam, quis nostrud exercitation ullamco laboris nisi ut aliquip ex ea commodo consequat.")


def _dicom_pixels(name: str) -> np.ndarray:
    from pydicom.data import get_testdata_file

    from as_ai.imaging import load_radiograph

    # download=False: only files shipped in the pydicom / pydicom-data wheels, never a network fetch
    path = get_testdata_file(name, download=False)
    if path is None:
        raise FileNotFoundError(f"pydicom test file {name!r} not found; install pydicom-data")
    return load_radiograph(path).pixels


def _variants(px: np.ndarray, rng: np.random.Generator, n: int) -> Iterator[tuple[str, np.ndarray]]:
    """The image itself, then random crops (40-90 % of each side), flips and 90-degree turns."""
    yield "full", px
    h, w = px.shape[:2]
    for i in range(n - 1):
        fh, fw = rng.uniform(0.4, 0.9, size=2)
        ch, cw = max(64, int(h * fh)), max(64, int(w * fw))
        y, x = rng.integers(0, max(1, h - ch + 1)), rng.integers(0, max(1, w - cw + 1))
        out = px[y:y + ch, x:x + cw]
        if rng.random() < 0.5:
            out = out[:, ::-1]
        out = np.rot90(out, k=int(rng.integers(0, 4)))
        yield f"crop{i}", np.ascontiguousarray(out)


def _render_text(text: str, *, size: int, dark: bool, width: int, height: int) -> np.ndarray:
    from PIL import Image, ImageDraw, ImageFont

    bg, fg = ((30, 30, 30), (220, 220, 220)) if dark else ((255, 255, 255), (20, 20, 20))
    im = Image.new("RGB", (width, height), bg)
    draw = ImageDraw.Draw(im)
    font = ImageFont.load_default(size=size)
    draw.rectangle([0, 0, width, size * 2], fill=(60, 90, 160))  # a title bar, as on a screenshot
    draw.text((8, size // 2), "Report viewer", font=font, fill=(255, 255, 255))
    y = size * 3
    words, line = text.replace("\n", " \n ").split(" "), ""
    for word in words:
        if word == "\n" or draw.textlength(line + word, font=font) > width - 16:
            draw.text((8, y), line, font=font, fill=fg)
            y, line = y + int(size * 1.4), ""
            if word == "\n":
                continue
        line += word + " "
    draw.text((8, y), line, font=font, fill=fg)
    return np.asarray(im)


def ood_images(*, seed: int = 0, variants: int = 4) -> list[tuple[str, str, Any]]:
    """The OOD set: (category, name, image) triples; about 160 images with the defaults."""
    from skimage import data

    rng = np.random.default_rng(seed)
    out: list[tuple[str, str, Any]] = []
    for category, names in DICOM_FILES.items():
        for name in names:
            px = _dicom_pixels(name)
            k = variants * 3 if category.endswith("radiograph") else variants
            for tag, v in _variants(px, rng, k):
                out.append((category, f"{name}:{tag}", v))
    phantom = data.shepp_logan_phantom().astype(np.float32)
    for tag, v in _variants(phantom, rng, 2):
        out.append(("ct", f"shepp_logan:{tag}", v))
    for name in PHOTOS:
        img = getattr(data, name)()
        if img.dtype == bool:
            img = img.astype(np.uint8) * 255
        for tag, v in _variants(img, rng, 2):
            out.append(("natural_photo", f"{name}:{tag}", v))
    for i, text in enumerate(TEXT):
        for size, dark in ((14, False), (22, False), (18, True), (30, True)):
            img = _render_text(text * 3, size=size, dark=dark, width=int(rng.integers(400, 900)),
                               height=int(rng.integers(300, 800)))
            out.append(("text_screenshot", f"text{i}:{size}{'d' if dark else 'l'}", img))
    h, w = 512, 512
    out += [("blank", "black", np.zeros((h, w), np.uint8)), ("blank", "white", np.full((h, w), 255, np.uint8)),
            ("blank", "grey", np.full((h, w), 128, np.uint8)),
            ("blank", "gradient", np.tile(np.linspace(0, 1, w, dtype=np.float32), (h, 1))),
            ("blank", "vgradient", np.tile(np.linspace(1, 0, h, dtype=np.float32)[:, None], (1, w)))]
    for i in range(3):
        out.append(("noise", f"uniform{i}", rng.random((h, w), dtype=np.float32)))
        out.append(("noise", f"gauss{i}", np.clip(rng.normal(0.5, 0.15, (h, w)), 0, 1).astype(np.float32)))
        sp = (rng.random((h, w)) < 0.5).astype(np.float32)
        out.append(("noise", f"saltpepper{i}", sp))
        from scipy import ndimage
        blobs = ndimage.gaussian_filter(rng.random((h, w)), 12 + 8 * i)
        blobs = (blobs - blobs.min()) / (np.ptp(blobs) + 1e-9)
        out.append(("noise", f"blobs{i}", blobs.astype(np.float32)))
    return out
