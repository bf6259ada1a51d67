"""Images in, Radiographs out: ``load_radiograph``, the one place where outside images enter as-ai.

``load_radiograph`` accepts a path, bytes, a
binary file object, a PIL image or a numpy array, detects the format from the content (never the
extension), enforces size limits before decoding, and returns a :class:`Radiograph`: float32 H×W
pixels in [0, 1] with bone bright, plus metadata that never includes patient identifiers.

Conventions (what every reader below does):

- colour -> grey with ITU-R BT.601 luma (0.299 R + 0.587 G + 0.114 B); a warning is recorded when the
  channels actually differed;
- transparency is composited on **black**: in a radiograph black is air (no attenuation), so a
  transparent pixel carries no signal; a warning is recorded when any pixel was not opaque;
- integer images scale by their stored bit depth: uint8 / 255; 16-bit data (uint16 arrays, any integer
  array within 0-65535, 16-bit PNG/TIFF) by the smallest of 8/10/12/14/16 bits that holds its maximum,
  as DICOM's BitsStored would say (a 12-bit detector's 0-4095 is not read 16x too dark), unless the
  caller says ``bits_stored=``; what was inferred is in ``meta["bits_stored"]`` and the warnings. Float
  images already in [0, 1] are kept; any other range (float outside [0, 1], negative or wider integers)
  is min-max scaled with a warning; NaN / inf are refused;
- arrays and raster files are MONOCHROME2 (bone bright) unless the caller says ``photometric=
  "MONOCHROME1"``, which inverts them; a DICOM file's own PhotometricInterpretation always applies;
- EXIF orientation (phone photos) is applied; ``meta["original_size"]`` is the size stored in the
  file, before that rotation;
- an image with one value everywhere is kept, with the warning ``"constant image ..."``.

What a model makes of a Radiograph (resize, crop, intensity standardisation, normalisation) is
:mod:`as_ai.transforms`.
"""
from __future__ import annotations

import io
import os
import warnings as _warnings
from contextlib import contextmanager
from typing import Any, Iterator

import numpy as np
from PIL import Image, ImageOps

from . import _dicom
from ._limits import Limits
from ._pixels import BIT_DEPTHS, PHOTOMETRIC, _alpha_unit, _photometric, _Reading, _stored_bits, _to_unit_grey
from .errors import InvalidImageError
from .radiograph import Radiograph

__all__ = ["Radiograph", "load_radiograph", "BIT_DEPTHS", "PHOTOMETRIC"]

# Magic bytes -> our format name, and the Pillow plugin allowed to open it.
_RASTER_PLUGINS = {"png": "PNG", "jpeg": "JPEG", "tiff": "TIFF", "bmp": "BMP", "webp": "WEBP"}
_REFUSED_MAGIC = (
    (b"GIF87a", "GIF"), (b"GIF89a", "GIF"), (b"%PDF", "PDF"), (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG 2000 (JP2)"),
    (b"\xffO\xffQ", "JPEG 2000 codestream"), (b"PK\x03\x04", "ZIP archive"), (b"\x1f\x8b", "gzip archive"),
    (b"8BPS", "Photoshop PSD"), (b"\x00\x00\x01\x00", "ICO"), (b"qoif", "QOI"), (b"\xff\x0a", "JPEG XL"),
)
_SUPPORTED_TXT = "PNG, JPEG, TIFF, BMP, WebP and DICOM"


# ----------------------------------------------------------------------------------------------- sources


def load_radiograph(src: Any, *, bits_stored: int | None = None, photometric: str | None = None,
                    max_bytes: int = 200_000_000, max_pixels: int = 100_000_000,
                    min_size: int = 64) -> Radiograph:
    """Load an image as a :class:`Radiograph` (float32 grey in [0, 1], bone bright), safely.

    ``src`` may be a path (str / PathLike), bytes / bytearray / memoryview, a binary file object, a
    ``PIL.Image.Image``, a numpy array (H×W, or H×W×1/3/4; unsigned or signed ints, floats), or a
    Radiograph (returned as is). Files are recognised by content: PNG (8/16-bit), JPEG (incl. CMYK,
    progressive), TIFF, BMP, WebP and DICOM (with or without the 128-byte preamble; JPEG 2000 /
    JPEG lossless / JPEG-LS / RLE decode through the pylibjpeg plugins). Sizes are checked before
    decoding: ``max_bytes`` for the encoded input, ``max_pixels`` for what the header claims,
    ``min_size`` for the shortest edge.

    ``bits_stored`` (1-16) says how many bits of an integer image hold data, as DICOM's BitsStored: a
    12-bit image in a uint16 array is ``bits_stored=12``. Without it the depth is inferred from the maximum
    (see the module's rules). ``photometric="MONOCHROME1"`` says an array or raster file stores bone dark
    (it is inverted); DICOM files carry their own.

    Raises:
        InvalidImageError: with ``reason`` one of ``not_found``, ``unreadable``, ``empty``,
            ``unsupported_format``, ``corrupt``, ``too_large``, ``too_small``, ``multi_frame``,
            ``no_pixel_data``, ``bad_array``. Nothing else escapes from decoding libraries.
        ValueError: a limit argument is not a positive int, ``bits_stored`` is not 1-16 or
            ``photometric`` not one of ``PHOTOMETRIC``, or either is given for a DICOM file.

    Example:
        >>> import numpy as np
        >>> rg = load_radiograph(np.full((128, 128), 0.5, dtype=np.float32))
        >>> rg.pixels.shape, rg.meta["source_format"], rg.warnings[0][:14]
        ((128, 128), 'array', 'constant image')
    """
    if isinstance(src, Radiograph):
        return src
    if bits_stored is not None and (isinstance(bits_stored, bool) or not isinstance(bits_stored, (int, np.integer))
                                    or not 1 <= int(bits_stored) <= 16):
        raise ValueError(f"bits_stored must be an integer from 1 to 16 (DICOM BitsStored), got {bits_stored!r}")
    if photometric is not None and photometric not in PHOTOMETRIC:
        raise ValueError(f"photometric must be one of {PHOTOMETRIC}, got {photometric!r}")
    reading = _Reading(None if bits_stored is None else int(bits_stored), photometric)
    limits = Limits(max_bytes=max_bytes, max_pixels=max_pixels, min_size=min_size)
    library_warnings: list[str] = []
    try:
        with _collect_warnings(library_warnings):
            if isinstance(src, np.ndarray):
                pixels, meta = _from_array(src, limits, reading)
            elif isinstance(src, Image.Image):
                pixels, meta = _from_pil(src, limits, reading, source_format=(src.format or "pil").lower())
            else:
                pixels, meta = _from_bytes(_read_source(src, limits), limits, reading)
    except InvalidImageError:
        raise
    except MemoryError as exc:
        raise InvalidImageError("Decoding the image ran out of memory; lower max_pixels or pass a smaller image.",
                                reason="too_large") from exc
    except Exception as exc:  # the boundary: nothing from Pillow / pydicom / numpy leaks out
        raise InvalidImageError(f"The image cannot be read ({type(exc).__name__}: {exc}); it is damaged or "
                                "not an image. Re-export it.", reason="corrupt") from exc
    meta["warnings"].extend(w for w in library_warnings if w not in meta["warnings"])
    return _finish(pixels, meta)


@contextmanager
def _collect_warnings(into: list[str]) -> Iterator[None]:
    """Record what Pillow / pydicom warn about while decoding into the Radiograph's own warnings.

    Pillow's DecompressionBombWarning is dropped: our ``max_pixels`` check runs right after the header
    is read. (``warnings.catch_warnings`` is process-wide; during a decode, warnings raised by other
    threads are recorded here too.)
    """
    with _warnings.catch_warnings(record=True) as caught:
        _warnings.simplefilter("always")
        _warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        yield
    for w in caught:
        text = f"{w.category.__name__}: {w.message}"
        if text not in into:
            into.append(text)


def _read_source(src: Any, limits: Limits) -> bytes:
    """The encoded bytes of a path, bytes-like or binary file object, within ``max_bytes``."""
    if isinstance(src, (bytes, bytearray, memoryview)):
        view = memoryview(src)
        limits.check_bytes(view.nbytes, what="input")
        return view.tobytes()
    if isinstance(src, (str, os.PathLike)):
        path = os.fspath(src)
        try:
            size = os.stat(path).st_size
            if not os.path.isfile(path):
                raise IsADirectoryError(path)
        except (OSError, ValueError) as exc:  # ValueError: e.g. a NUL byte in the path
            if isinstance(exc, PermissionError):
                raise InvalidImageError(f"Cannot read {path!r}: permission denied.", reason="unreadable") from exc
            what = "is not a regular file" if isinstance(exc, IsADirectoryError) else "does not exist"
            raise InvalidImageError(f"Image path {path!r} {what}; pass the path of an image file.",
                                    reason="not_found") from exc
        limits.check_bytes(size, what=f"file {os.path.basename(path)!r}")
        try:
            with open(path, "rb") as fh:
                data = fh.read(limits.max_bytes + 1)
        except OSError as exc:
            raise InvalidImageError(f"Cannot read {path!r} ({exc}).", reason="unreadable") from exc
        limits.check_bytes(len(data), what=f"file {os.path.basename(path)!r}")
        return data
    read = getattr(src, "read", None)
    if callable(read):
        try:
            data = read(limits.max_bytes + 1)
        except Exception as exc:
            raise InvalidImageError(f"Reading the file object failed ({type(exc).__name__}: {exc}).",
                                    reason="unreadable") from exc
        if isinstance(data, str):
            raise InvalidImageError("The file object is open in text mode; open the image with "
                                    "open(path, 'rb').", reason="unsupported_format")
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise InvalidImageError(f"The file object's read() returned {type(data).__name__}, not bytes.",
                                    reason="unsupported_format")
        limits.check_bytes(len(data), what="file object")
        return bytes(data)
    raise InvalidImageError(
        f"Cannot load a radiograph from a {type(src).__name__}; pass a path, bytes, a binary file object, "
        "a PIL image or a numpy array.", reason="unsupported_format")


def _sniff(head: bytes) -> str:
    """Name the format from the first bytes, or refuse it (reason ``unsupported_format``)."""
    if head[128:132] == _dicom.DICM:  # first: a DICOM preamble may itself hold a TIFF header (dual files)
        return "dicom"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if _dicom.is_dicom(head):
        return "dicom"
    if head.startswith(b"BM") and len(head) >= 26:
        return "bmp"
    name = next((label for magic, label in _REFUSED_MAGIC if head.startswith(magic)), None)
    if name is None and head[4:8] == b"ftyp":
        name = f"ISO media ({head[8:12].decode('ascii', 'replace').strip()}, e.g. HEIC/AVIF/MP4)"
    if name is None:
        sample = head[:512]
        try:
            text = sample.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        if text is not None and all(c.isprintable() or c in "\r\n\t" for c in text):
            name = "text"
        else:
            name = f"unknown binary data (starts with {head[:8].hex(' ')})"
    raise InvalidImageError(
        f"Unsupported image format: {name}. as-ai reads {_SUPPORTED_TXT}; export the radiograph as "
        "DICOM or PNG (lossless) and try again.", reason="unsupported_format")


def _from_bytes(data: bytes, limits: Limits, reading: _Reading) -> tuple[np.ndarray, dict[str, Any]]:
    fmt = _sniff(data[:1024])
    if fmt == "dicom":
        if reading != _Reading():
            raise ValueError("bits_stored= and photometric= are for arrays and raster images; a DICOM file's own "
                             "BitsStored and PhotometricInterpretation are used. Leave them out.")
        return _dicom.read_dicom(data, limits)
    try:  # lazy: reads the header only; the size it claims is checked in _from_pil before load()
        im = Image.open(io.BytesIO(data), formats=[_RASTER_PLUGINS[fmt]])
    except Image.DecompressionBombError as exc:
        raise InvalidImageError(f"The {fmt.upper()} header claims more pixels than Pillow will open ({exc}). "
                                "Downscale the image before loading.", reason="too_large") from exc
    except Image.UnidentifiedImageError as exc:
        raise InvalidImageError(f"The file starts like a {fmt.upper()} but its header is invalid; it is "
                                "damaged or truncated. Re-export the image.", reason="corrupt") from exc
    except Exception as exc:
        raise InvalidImageError(f"The {fmt.upper()} file cannot be read ({type(exc).__name__}: {exc}); "
                                "it is damaged or truncated. Re-export the image.", reason="corrupt") from exc
    with im:
        return _from_pil(im, limits, reading, source_format=fmt)


# ------------------------------------------------------------------------------------------------ raster
def _exif_orientation(im: Image.Image, warnings: list[str]) -> int:
    try:
        value = int(im.getexif().get(0x0112, 1) or 1)
    except Exception:
        warnings.append("EXIF metadata unreadable; orientation not applied")
        return 1
    return value if 1 <= value <= 8 else 1


def _from_pil(im: Image.Image, limits: Limits, reading: _Reading, *, source_format: str
              ) -> tuple[np.ndarray, dict[str, Any]]:
    """Decode a (possibly lazily opened) PIL image after checking the size its header claims."""
    warnings: list[str] = []
    width, height = im.size
    limits.check_dims(height, width, what=f"{source_format.upper()} image")
    try:
        frames = int(getattr(im, "n_frames", 1) or 1)
    except Exception as exc:
        raise InvalidImageError(f"The {source_format.upper()} frame table cannot be read ({exc}).",
                                reason="corrupt") from exc
    if frames > 1:
        raise InvalidImageError(
            f"The {source_format.upper()} image has {frames} frames/pages; as-ai reads one radiograph per "
            "image. Save the page you want as its own PNG.", reason="multi_frame")
    try:
        orientation = _exif_orientation(im, warnings)
        im.load()
        if orientation != 1:
            im = ImageOps.exif_transpose(im)
        values, alpha, bit_depth, photometric = _pil_values(im)
    except InvalidImageError:
        raise
    except Exception as exc:
        raise InvalidImageError(
            f"The {source_format.upper()} image cannot be decoded ({type(exc).__name__}: {exc}); it is damaged "
            "or truncated. Re-export the image.", reason="corrupt") from exc
    stored = _stored_bits(values, reading, bit_depth, warnings) if values.dtype.kind == "u" else None
    pixels = _to_unit_grey(values, alpha, warnings, bits=stored)
    meta = {
        "source_format": source_format,
        "original_size": (height, width),
        "bit_depth": bit_depth,
        "photometric_interpretation": photometric,
        "pixel_spacing_mm": None,
        "modality": None, "body_part": None, "view": None,
        "exif_rotated": orientation != 1,
        "bits_stored": stored,
        "warnings": warnings,
    }
    return _photometric(pixels, meta, reading), meta


def _pil_values(im: Image.Image) -> tuple[np.ndarray, np.ndarray | None, int, str]:
    """PIL image -> (values H×W or H×W×3 in the image's own units, alpha in [0, 1] or None, bits, photometric)."""
    mode = im.mode
    photometric = {"P": "PALETTE COLOR", "PA": "PALETTE COLOR", "CMYK": "CMYK", "YCbCr": "YBR_FULL"}.get(mode, "RGB")
    bits = 8
    if mode == "1":
        return np.asarray(im.convert("L")), None, 1, "MONOCHROME2"
    if mode in ("P", "PA"):
        im = im.convert("RGBA" if mode == "PA" or "transparency" in im.info else "RGB")
    elif mode == "La":
        im = im.convert("LA")
    elif mode == "RGBa":
        im = im.convert("RGBA")
    elif mode in ("CMYK", "YCbCr", "LAB", "HSV", "RGBX"):
        im = im.convert("RGB")
    mode = im.mode
    if mode in ("L", "LA"):
        arr = np.asarray(im)
        if mode == "LA":
            return arr[..., 0], arr[..., 1].astype(np.float32) / 255.0, 8, "MONOCHROME2"
        return arr, None, 8, "MONOCHROME2"
    if mode.startswith("I;16"):
        return np.asarray(im).astype(np.uint16, copy=False), None, 16, "MONOCHROME2"
    if mode == "I":
        arr = np.asarray(im)
        if arr.size and arr.min() >= 0 and arr.max() <= 65535:  # 16-bit data in a 32-bit container
            return arr.astype(np.uint16), None, 16, "MONOCHROME2"
        return arr, None, 32, "MONOCHROME2"
    if mode == "F":
        return np.asarray(im), None, 32, "MONOCHROME2"
    if mode == "RGB":
        return np.asarray(im), None, bits, photometric
    if mode == "RGBA":
        arr = np.asarray(im)
        return arr[..., :3], arr[..., 3].astype(np.float32) / 255.0, bits, photometric
    try:
        return np.asarray(im.convert("RGB")), None, bits, photometric
    except Exception as exc:
        raise InvalidImageError(f"Image mode {mode!r} is not supported; save the image as 8/16-bit grey "
                                "or RGB.", reason="unsupported_format") from exc


# ------------------------------------------------------------------------------------------------ arrays
def _from_array(arr: np.ndarray, limits: Limits, reading: _Reading) -> tuple[np.ndarray, dict[str, Any]]:
    """Validate an ndarray (H×W or H×W×C) and split off alpha; scaling follows the module rules."""
    kind = arr.dtype.kind
    if kind not in "uif":
        raise InvalidImageError(
            f"Image arrays must hold integers or floats, got dtype {arr.dtype}. Convert with "
            "arr.astype(np.float32) (values in [0, 1]) or np.uint8 / np.uint16.", reason="bad_array")
    if arr.ndim == 2:
        values = arr
    elif arr.ndim == 3 and arr.shape[2] in (1, 3, 4):
        values = arr[..., 0] if arr.shape[2] == 1 else arr[..., :3]
    elif arr.ndim == 3 and arr.shape[0] in (1, 3, 4):
        raise InvalidImageError(
            f"Image array has shape {arr.shape}, which looks channels-first; pass H×W×C, e.g. "
            "arr.transpose(1, 2, 0).", reason="bad_array")
    else:
        raise InvalidImageError(
            f"Image arrays must be H×W or H×W×C with C in (1, 3, 4), got shape {arr.shape}. Pass one "
            "image at a time (index a batch, e.g. arr[0]).", reason="bad_array")
    limits.check_dims(arr.shape[0], arr.shape[1], what="image array")
    alpha = _alpha_unit(arr[..., 3]) if arr.ndim == 3 and arr.shape[2] == 4 else None
    if kind == "f" and not np.isfinite(arr).all():
        raise InvalidImageError("Image array contains NaN or infinite values; replace them "
                                "(e.g. np.nan_to_num) before loading.", reason="bad_array")
    warnings: list[str] = []
    stored = None
    if kind in "ui" and values.size and int(values.min()) >= 0 and int(values.max()) <= 65535:
        if kind == "i" or values.dtype.itemsize > 2:  # non-negative 16-bit data in a wider or signed container
            values = values.astype(np.uint16)
        stored = _stored_bits(values, reading, int(values.dtype.itemsize * 8), warnings)
    elif reading.bits_stored is not None:
        raise InvalidImageError(f"bits_stored= is for integer images with values in 0-65535; this array is "
                                f"{arr.dtype}" + (f" with values in [{values.min()}, {values.max()}]" if values.size
                                                  and kind in "uif" else "") + ". Leave bits_stored out.",
                                reason="bad_array")
    pixels = _to_unit_grey(values, alpha, warnings, bits=stored)
    meta = {
        "source_format": "array",
        "original_size": (int(arr.shape[0]), int(arr.shape[1])),
        "bit_depth": int(arr.dtype.itemsize * 8),
        "photometric_interpretation": "MONOCHROME2" if values.ndim == 2 else "RGB",
        "pixel_spacing_mm": None,
        "modality": None, "body_part": None, "view": None,
        "exif_rotated": False,
        "bits_stored": stored,
        "warnings": warnings,
    }
    return _photometric(pixels, meta, reading), meta


def _finish(pixels: np.ndarray, meta: dict[str, Any]) -> Radiograph:
    if pixels.size and float(pixels.min()) == float(pixels.max()):
        meta["warnings"].append(f"constant image (every pixel is {float(pixels.min()):.4g}); "
                                "check that the right file or window was used")
    pixels = np.ascontiguousarray(pixels, dtype=np.float32)  # freshly computed by every reader
    pixels.setflags(write=False)
    return Radiograph(pixels=pixels, meta=meta)
