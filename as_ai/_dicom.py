"""DICOM radiographs to display-ready grey pixels (private to ``as_ai.decoding``).

Order of operations, as a DICOM viewer shows the image (PS3.4 N.2): stored values -> modality LUT
(rescale slope/intercept or Modality LUT Sequence) -> VOI LUT (VOI LUT Sequence, else window
centre/width of the first window) -> scaled to [0, 1] over the VOI output range -> MONOCHROME1 inverted
so that bone (dense) is bright. pydicom does the LUT arithmetic (``apply_modality_lut``,
``apply_voi_lut``); compressed transfer syntaxes decode through its pylibjpeg / Pillow plugins.

Sizes are checked before pixel data are decoded: Rows x Columns x frames against ``max_pixels``, and
for the deflated transfer syntax, the inflated size against ``max_bytes`` (pydicom would inflate the
whole stream in one call).
"""
from __future__ import annotations

import math
import zlib
from io import BytesIO
from typing import Any

import numpy as np

from ._limits import Limits
from .errors import InvalidImageError

DICM = b"DICM"
_PREAMBLE = 128
# Value representations, for recognising a DICOM stream written without preamble and 'DICM'.
_VRS = {b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FD", b"FL", b"IS", b"LO", b"LT", b"OB", b"OD",
        b"OF", b"OL", b"OV", b"OW", b"PN", b"SH", b"SL", b"SQ", b"SS", b"ST", b"SV", b"TM", b"UC", b"UI",
        b"UL", b"UN", b"UR", b"US", b"UT", b"UV"}
_DEFLATED = "1.2.840.10008.1.2.1.99"
_MONO = ("MONOCHROME1", "MONOCHROME2")


def is_dicom(head: bytes) -> bool:
    """True when ``head`` (the first bytes of a file) starts a DICOM stream.

    Recognises the Part 10 layout (128-byte preamble + ``DICM``), ``DICM`` without preamble, and a bare
    dataset that starts with a group 0002 or 0008 element (little or big endian, explicit or implicit VR).
    """
    if head[_PREAMBLE:_PREAMBLE + 4] == DICM or head[:4] == DICM:
        return True
    if len(head) < 8:
        return False
    for group_bytes, order in ((head[0:2], "little"), (head[0:2], "big")):
        group = int.from_bytes(group_bytes, order)
        element = int.from_bytes(head[2:4], order)
        if group not in (0x0002, 0x0008) or element > 0x0100:
            continue
        if head[4:6] in _VRS:
            return True
        implicit_length = int.from_bytes(head[4:8], "little")
        if order == "little" and implicit_length < 1024:
            return True
    return False


def _as_part10(data: bytes) -> bytes:
    """pydicom expects either a preamble + 'DICM' or a bare dataset; give it one of those."""
    if data[:4] == DICM and data[_PREAMBLE:_PREAMBLE + 4] != DICM:
        return bytes(_PREAMBLE) + data
    return data


def _check_deflated(data: bytes, limits: Limits) -> None:
    """Refuse a deflated dataset that would inflate past ``max_bytes``, by inflating in bounded steps."""
    if _DEFLATED.encode() not in data[:4096]:
        return
    try:
        from pydicom.filereader import _read_file_meta_info, read_preamble
    except ImportError as exc:  # pragma: no cover - pydicom renamed its internals
        raise InvalidImageError(
            "Deflated DICOM cannot be size-checked safely with this pydicom; re-save the file uncompressed "
            "or with a JPEG-family transfer syntax.", reason="unsupported_format") from exc
    bio = BytesIO(data)
    try:
        read_preamble(bio, True)
        meta = _read_file_meta_info(bio)
    except Exception as exc:
        raise InvalidImageError(f"DICOM file meta information is unreadable ({exc}).", reason="corrupt") from exc
    if str(meta.get("TransferSyntaxUID", "")) != _DEFLATED:
        return
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    pending, total, step = data[bio.tell():], 0, 1 << 20
    try:
        while pending:
            total += len(inflater.decompress(pending, step))
            if total > limits.max_bytes:
                raise InvalidImageError(
                    f"The deflated DICOM dataset inflates to more than {limits.max_bytes:,} bytes (max_bytes); "
                    "refusing to inflate it. Re-save it uncompressed if you trust the file.", reason="too_large")
            pending = inflater.unconsumed_tail
            if inflater.eof:
                break
    except zlib.error as exc:
        raise InvalidImageError(f"The deflated DICOM dataset is corrupt ({exc}).", reason="corrupt") from exc


def _int_attr(ds: Any, name: str, default: int | None = None) -> int | None:
    value = ds.get(name, default)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise InvalidImageError(f"DICOM {name} is not an integer ({value!r}).", reason="corrupt") from exc


def _text(ds: Any, name: str) -> str | None:
    value = ds.get(name)
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _pixel_spacing(ds: Any) -> tuple[float, float] | None:
    for name in ("PixelSpacing", "ImagerPixelSpacing"):
        value = ds.get(name)
        if value is None:
            continue
        try:
            row, col = (float(v) for v in value)
        except (TypeError, ValueError):
            continue
        if all(math.isfinite(v) and v > 0 for v in (row, col)):
            return (row, col)
    return None


def _voi_output_range(ds: Any, used_lut: bool) -> tuple[float, float]:
    """Output range of pydicom's VOI step: the LUT's bit depth, or the windowing range (PS3.3 C.11.2.1.2)."""
    if used_lut:
        bits = int(ds.VOILUTSequence[0].LUTDescriptor[2])
        return 0.0, float(2 ** bits - 1)
    if ds.get("ModalityLUTSequence"):
        bits = int(ds.ModalityLUTSequence[0].LUTDescriptor[2])
        lo, hi = 0.0, float(2 ** bits - 1)
    elif int(ds.get("PixelRepresentation", 0)) == 0:
        lo, hi = 0.0, float(2 ** int(ds.BitsStored) - 1)
    else:
        lo, hi = float(-(2 ** (int(ds.BitsStored) - 1))), float(2 ** (int(ds.BitsStored) - 1) - 1)
    slope, intercept = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
    if slope is not None and intercept is not None:
        lo, hi = lo * float(slope) + float(intercept), hi * float(slope) + float(intercept)
    return min(lo, hi), max(lo, hi)


def _minmax(arr: np.ndarray) -> np.ndarray:
    lo, hi = float(arr.min()), float(arr.max())
    if hi <= lo:
        return np.zeros(arr.shape, dtype=np.float32)
    return ((arr - lo) / (hi - lo)).astype(np.float32)


def _grey_monochrome(arr: np.ndarray, ds: Any, photometric: str, warnings: list[str]) -> tuple[np.ndarray, str]:
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    arr = apply_modality_lut(arr, ds)
    has_lut = bool(ds.get("VOILUTSequence"))
    has_window = "WindowCenter" in ds and "WindowWidth" in ds
    voi = "min-max"
    out: np.ndarray | None = None
    if has_lut or has_window:
        try:
            windowed = apply_voi_lut(arr, ds, index=0, prefer_lut=True)
            lo, hi = _voi_output_range(ds, used_lut=has_lut)
            if hi > lo:
                out = ((np.asarray(windowed, dtype=np.float64) - lo) / (hi - lo)).astype(np.float32)
                voi = "lut" if has_lut else "window"
        except Exception as exc:  # a malformed VOI module: fall back to the data range, say so
            warnings.append(f"VOI LUT / window could not be applied ({exc}); used the data range instead")
    if out is None:
        out = _minmax(np.asarray(arr, dtype=np.float64))
    np.clip(out, 0.0, 1.0, out=out)
    if photometric == "MONOCHROME1":
        out = 1.0 - out
    return out, voi


def _grey_colour(arr: np.ndarray, ds: Any, photometric: str, warnings: list[str]) -> np.ndarray:
    from pydicom.pixels import apply_color_lut

    if photometric == "PALETTE COLOR":
        arr = apply_color_lut(arr, ds)
        full = float(np.iinfo(arr.dtype).max) if arr.dtype.kind in "ui" else 1.0
    elif arr.dtype.kind == "f":
        full = None
    else:
        full = float(2 ** int(ds.get("BitsStored", arr.dtype.itemsize * 8)) - 1)
    rgb = arr.astype(np.float32)
    grey = 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]
    warnings.append(f"colour DICOM ({photometric}) converted to grey (ITU-R BT.601 luma)")
    if full is None:
        return _minmax(grey)
    return np.clip(grey / full, 0.0, 1.0).astype(np.float32)


def read_dicom(data: bytes, limits: Limits) -> tuple[np.ndarray, dict[str, Any]]:
    """Decode a DICOM image to float32 H×W in [0, 1], bone bright, and its non-identifying metadata.

    Raises:
        InvalidImageError: reasons ``corrupt``, ``too_large``, ``too_small``, ``multi_frame``,
            ``no_pixel_data``, ``unsupported_format`` (a transfer syntax no installed plugin decodes).
            Any other failure inside pydicom or its plugins becomes ``corrupt``.
    """
    try:
        return _read_dicom(data, limits)
    except InvalidImageError:
        raise
    except MemoryError as exc:
        raise InvalidImageError("Decoding the DICOM file ran out of memory; lower max_pixels or pass a smaller "
                                "image.", reason="too_large") from exc
    except Exception as exc:
        raise InvalidImageError(f"The DICOM file cannot be read ({type(exc).__name__}: {exc}); it is damaged. "
                                "Re-export it from the PACS or modality.", reason="corrupt") from exc


def _read_dicom(data: bytes, limits: Limits) -> tuple[np.ndarray, dict[str, Any]]:
    import pydicom
    from pydicom.pixels import get_decoder

    data = _as_part10(data)
    _check_deflated(data, limits)
    try:
        ds = pydicom.dcmread(BytesIO(data), force=True)
    except Exception as exc:
        raise InvalidImageError(f"The DICOM file cannot be parsed ({type(exc).__name__}: {exc}).",
                                reason="corrupt") from exc

    pixel_tags = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
    try:
        rows, cols = _int_attr(ds, "Rows"), _int_attr(ds, "Columns")
        frames = _int_attr(ds, "NumberOfFrames", 1) or 1
        has_pixels = any(tag in ds for tag in pixel_tags)
    except InvalidImageError:
        raise
    except Exception as exc:
        raise InvalidImageError(f"The DICOM header cannot be read ({type(exc).__name__}: {exc}).",
                                reason="corrupt") from exc
    if not has_pixels or rows is None or cols is None:
        sop = _text(ds, "SOPClassUID")
        kind = f" (SOP class {getattr(ds.get('SOPClassUID'), 'name', sop)})" if sop else ""
        raise InvalidImageError(
            f"The DICOM file holds no image{kind}: no Pixel Data or no Rows/Columns. Export the radiograph "
            "image itself (e.g. the DX/CR instance), not a report or structured document.",
            reason="no_pixel_data")
    limits.check_dims(rows, cols, frames=frames, what="DICOM image")
    if frames > 1:
        raise InvalidImageError(
            f"The DICOM file has {frames} frames; as-ai reads single-frame radiographs. Export the frame you "
            "want as its own image, e.g. with pydicom: `pydicom.dcmread(path).pixel_array[i]` saved as a "
            "16-bit PNG, or `dcmj2pnm --frame i+1 in.dcm out.png` (DCMTK).", reason="multi_frame")

    file_meta = getattr(ds, "file_meta", None)
    syntax = file_meta.get("TransferSyntaxUID") if file_meta else None
    if syntax is None:  # a bare dataset: pydicom inferred the encoding while reading; name it for the decoder
        from pydicom.dataset import FileMetaDataset
        from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

        implicit, little = ds.original_encoding
        syntax = (ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian) if little else ExplicitVRBigEndian
        if not file_meta:
            ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = syntax
    if syntax is not None and syntax.is_compressed:
        decoder = get_decoder(syntax)
        if decoder is None or not decoder.is_available:
            raise InvalidImageError(
                f"The DICOM pixel data use {syntax.name}, which no installed plugin decodes. Install the "
                "pylibjpeg plugins (pip install pylibjpeg pylibjpeg-openjpeg pylibjpeg-libjpeg) or "
                "re-export the image uncompressed.", reason="unsupported_format")
    try:
        arr = ds.pixel_array
    except Exception as exc:
        raise InvalidImageError(f"The DICOM pixel data cannot be decoded ({type(exc).__name__}: {exc}).",
                                reason="corrupt") from exc
    if arr.ndim not in (2, 3) or arr.shape[0] != rows or arr.shape[1] != cols:
        raise InvalidImageError(f"Decoded DICOM pixels have shape {arr.shape}, expected {rows}×{cols}.",
                                reason="corrupt")

    warnings: list[str] = []
    photometric = (_text(ds, "PhotometricInterpretation") or "").upper()
    if not photometric:
        photometric = "MONOCHROME2" if arr.ndim == 2 else "RGB"
        warnings.append(f"DICOM has no PhotometricInterpretation; assumed {photometric}")
    try:
        if arr.ndim == 2 and photometric != "PALETTE COLOR":
            if photometric not in _MONO:
                warnings.append(f"single-channel DICOM with PhotometricInterpretation {photometric!r}; "
                                "read as MONOCHROME2")
            pixels, voi = _grey_monochrome(arr, ds, photometric, warnings)
        else:
            pixels, voi = _grey_colour(arr, ds, photometric, warnings), "none"
    except InvalidImageError:
        raise
    except Exception as exc:
        raise InvalidImageError(f"The DICOM pixel values cannot be converted ({type(exc).__name__}: {exc}).",
                                reason="corrupt") from exc

    meta: dict[str, Any] = {
        "source_format": "dicom",
        "original_size": (rows, cols),
        "bit_depth": _int_attr(ds, "BitsStored", None) if "BitsStored" in ds else int(arr.dtype.itemsize * 8),
        "photometric_interpretation": photometric,
        "pixel_spacing_mm": _pixel_spacing(ds),
        "modality": _text(ds, "Modality"),
        "body_part": _text(ds, "BodyPartExamined"),
        "view": _text(ds, "ViewPosition"),
        "transfer_syntax": str(syntax.name) if syntax is not None else None,
        "voi": voi,
        "exif_rotated": False,
        "bits_stored": _int_attr(ds, "BitsStored", None) if "BitsStored" in ds else None,
        "warnings": warnings,
    }
    return np.ascontiguousarray(pixels, dtype=np.float32), meta
