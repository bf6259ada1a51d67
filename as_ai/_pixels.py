"""Stored values to grey: bit depth, photometric interpretation, colour and transparency (private to decoding).

The conventions are those listed in :mod:`as_ai.decoding`: integer data scales by its stored bit depth
(the caller's ``bits_stored``, else the smallest of :data:`BIT_DEPTHS` that holds the maximum), colour
becomes ITU-R BT.601 luma, transparency is composited on black, MONOCHROME1 is inverted.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import InvalidImageError

_LUMA = (0.299, 0.587, 0.114)
BIT_DEPTHS = (8, 10, 12, 14, 16)  # what a detector stores; the smallest that holds the maximum is inferred
PHOTOMETRIC = ("MONOCHROME1", "MONOCHROME2")


@dataclass(frozen=True)
class _Reading:
    """What the caller said about the stored values (``load_radiograph``'s ``bits_stored`` / ``photometric``)."""

    bits_stored: int | None = None
    photometric: str | None = None


def _stored_bits(values: np.ndarray, reading: _Reading, container: int, warnings: list[str]) -> int:
    """The bits that hold data in integer ``values``: the caller's, else the smallest of BIT_DEPTHS holding the max."""
    top = int(values.max()) if values.size else 0
    if reading.bits_stored is not None:
        if top > 2 ** reading.bits_stored - 1:
            raise InvalidImageError(
                f"bits_stored={reading.bits_stored} allows values up to {2 ** reading.bits_stored - 1}, but the "
                f"image holds {top}; pass the detector's real bit depth (DICOM BitsStored) or leave it out.",
                reason="bad_array")
        return reading.bits_stored
    bits = next(b for b in BIT_DEPTHS if top <= 2 ** b - 1)
    bits = min(bits, container) if container >= 8 else bits
    if bits < container:
        warnings.append(f"{container}-bit values up to {top} read as {bits}-bit (bits stored inferred from the "
                        f"maximum, as DICOM BitsStored; pass bits_stored= if the detector stores more)")
    return bits


def _photometric(pixels: np.ndarray, meta: dict[str, Any], reading: _Reading) -> np.ndarray:
    """Apply the caller's ``photometric``: MONOCHROME1 (bone dark) is inverted, and that is recorded."""
    if reading.photometric is None:
        return pixels
    if meta["photometric_interpretation"] not in PHOTOMETRIC:
        raise InvalidImageError(f"photometric={reading.photometric!r} is for grey images; this one is "
                                f"{meta['photometric_interpretation']}.", reason="bad_array")
    meta["photometric_interpretation"] = reading.photometric
    if reading.photometric == "MONOCHROME1":
        meta["warnings"].append("MONOCHROME1 (as the caller said): inverted so that bone is bright")
        return (1.0 - pixels).astype(np.float32)
    return pixels


def _alpha_unit(alpha: np.ndarray) -> np.ndarray:
    if alpha.dtype == np.uint8:
        return alpha.astype(np.float32) / 255.0
    if alpha.dtype == np.uint16:
        return alpha.astype(np.float32) / 65535.0
    if alpha.dtype.kind == "f" and np.isfinite(alpha).all() and alpha.min() >= 0 and alpha.max() <= 1:
        return alpha.astype(np.float32)
    raise InvalidImageError(
        f"The alpha channel of an H×W×4 array must be uint8, uint16 or float in [0, 1]; got {alpha.dtype}"
        + (f" with range [{alpha.min()}, {alpha.max()}]" if alpha.size and alpha.dtype.kind in "uif" else "")
        + ". Drop it (arr[..., :3]) or rescale it.", reason="bad_array")


def _to_unit_grey(values: np.ndarray, alpha: np.ndarray | None, warnings: list[str], *,
                  bits: int | None = None) -> np.ndarray:
    """Values (H×W or H×W×3, any int/float dtype) -> float32 H×W in [0, 1] by the module's rules.

    ``bits``: the stored bit depth of unsigned values (their full scale is ``2**bits - 1``); default the dtype's.
    """
    dtype = values.dtype
    wide = dtype.itemsize > 2 and not (dtype == np.float32)
    work = np.float64 if wide else np.float32
    unsigned = dtype in (np.uint8, np.uint16)
    full_scale = (2 ** bits - 1) if bits is not None else (np.iinfo(dtype).max if unsigned else 1)
    if values.ndim == 3:
        r, g, b = (values[..., i] for i in range(3))
        if not (np.array_equal(r, g) and np.array_equal(g, b)):
            warnings.append("colour image converted to grey (ITU-R BT.601 luma)")
        grey = r.astype(work) * _LUMA[0] + g.astype(work) * _LUMA[1] + b.astype(work) * _LUMA[2]
        if unsigned:
            grey /= full_scale
    elif unsigned:  # grey 8/16-bit, the common case: one pass, and already within [0, 1]
        grey = np.divide(values, np.float32(full_scale), dtype=np.float32)
        if alpha is None:
            return grey
    else:
        grey = values.astype(work)
    if not unsigned and grey.size:
        lo, hi = float(grey.min()), float(grey.max())
        in_unit = dtype.kind == "f" and lo >= 0.0 and hi <= 1.0 + 1e-6
        if not in_unit:
            if hi > lo:
                grey = (grey - lo) / (hi - lo)
                warnings.append(f"{dtype} values in [{lo:.6g}, {hi:.6g}] were min-max scaled to [0, 1]")
            else:
                grey = np.zeros_like(grey)
                warnings.append(f"{dtype} values all equal {lo:.6g}, outside [0, 1]; set to 0")
    if alpha is not None and (alpha < 1.0).any():
        grey *= alpha
        warnings.append("transparent pixels composited on black")
    out = np.clip(grey, 0.0, 1.0).astype(np.float32, copy=False)
    return out
