"""Radiographs in, model tensors out: ``load_radiograph`` and the model-input transforms.

``load_radiograph`` is the one place where outside images enter as-ai. It accepts a path, bytes, a
binary file object, a PIL image or a numpy array, detects the format from the content (never the
extension), enforces size limits before decoding, and returns a :class:`Radiograph`: float32 H×W
pixels in [0, 1] with bone bright, plus metadata that never includes patient identifiers.

Conventions (what every reader below does):

- colour -> grey with ITU-R BT.601 luma (0.299 R + 0.587 G + 0.114 B); a warning is recorded when the
  channels actually differed;
- transparency is composited on **black**: in a radiograph black is air (no attenuation), so a
  transparent pixel carries no signal; a warning is recorded when any pixel was not opaque;
- integer images scale by their type's range (uint8 / 255, uint16 / 65535; 16-bit PNG/TIFF keep their
  depth); float images already in [0, 1] are kept; any other range (float outside [0, 1], signed or
  32/64-bit integers) is min-max scaled with a warning; NaN / inf are refused;
- EXIF orientation (phone photos) is applied; ``meta["original_size"]`` is the size stored in the
  file, before that rotation;
- an image with one value everywhere is kept, with the warning ``"constant image ..."``.

The transforms reproduce the reference study: eval = short edge 256, centre crop 224, normalise;
train = short edge 512, random 224 crop, random rotation, horizontal and vertical flips. The
parameters live in :class:`Preprocess`, which a model repo stores in ``as_ai.json["preprocess"]``.
"""
from __future__ import annotations

import io
import math
import os
import warnings as _warnings
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np
from PIL import Image, ImageOps

from . import _dicom
from ._limits import Limits
from .errors import InvalidImageError, ModelLoadError

if TYPE_CHECKING:  # torch is imported on first use of a transform, so loading images stays light
    import torch

__all__ = [
    "Radiograph", "load_radiograph", "Preprocess", "eval_transform", "train_transform", "to_model_input",
    "IMAGENET_MEAN", "IMAGENET_STD",
]

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
_LUMA = (0.299, 0.587, 0.114)

# Magic bytes -> our format name, and the Pillow plugin allowed to open it.
_RASTER_PLUGINS = {"png": "PNG", "jpeg": "JPEG", "tiff": "TIFF", "bmp": "BMP", "webp": "WEBP"}
_REFUSED_MAGIC = (
    (b"GIF87a", "GIF"), (b"GIF89a", "GIF"), (b"%PDF", "PDF"), (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG 2000 (JP2)"),
    (b"\xffO\xffQ", "JPEG 2000 codestream"), (b"PK\x03\x04", "ZIP archive"), (b"\x1f\x8b", "gzip archive"),
    (b"8BPS", "Photoshop PSD"), (b"\x00\x00\x01\x00", "ICO"), (b"qoif", "QOI"), (b"\xff\x0a", "JPEG XL"),
)
_SUPPORTED_TXT = "PNG, JPEG, TIFF, BMP, WebP and DICOM"


@dataclass(frozen=True, eq=False)
class Radiograph:
    """A radiograph ready for the models: grey pixels in [0, 1] (bone bright) and where they came from.

    ``pixels`` is float32, 2-D, C-contiguous and read-only. ``meta`` holds ``source_format``,
    ``original_size`` (h, w), ``bit_depth``, ``photometric_interpretation``, ``pixel_spacing_mm``
    ((row, col) or None), ``modality`` / ``body_part`` / ``view`` (DICOM, else None), ``exif_rotated`` and
    ``warnings`` (list of str); DICOM adds ``transfer_syntax`` and ``voi`` ("window", "lut", "min-max").
    It never holds patient identifiers (names, IDs, dates).

    Raises:
        InvalidImageError: reason ``bad_array`` when ``pixels`` break that contract.
    """

    pixels: np.ndarray = field(repr=False)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        px = self.pixels
        if not isinstance(px, np.ndarray) or px.dtype != np.float32 or px.ndim != 2:
            got = f"{type(px).__name__} {getattr(px, 'dtype', '')} {getattr(px, 'shape', '')}".strip()
            raise InvalidImageError(f"Radiograph.pixels must be a float32 H×W numpy array, got {got}; "
                                    "use load_radiograph() to convert images.", reason="bad_array")
        if px.size and not (np.isfinite(px).all() and px.min() >= 0.0 and px.max() <= 1.0):
            raise InvalidImageError("Radiograph.pixels must be finite and within [0, 1]; "
                                    "use load_radiograph() to convert images.", reason="bad_array")
        if px.flags.writeable or not px.flags.c_contiguous:  # keep our own read-only copy
            px = np.array(px, dtype=np.float32, order="C", copy=True)
            px.setflags(write=False)
            object.__setattr__(self, "pixels", px)
        self.meta.setdefault("warnings", [])

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) of ``pixels``."""
        return (int(self.pixels.shape[0]), int(self.pixels.shape[1]))

    def to_tensor(self) -> "torch.Tensor":
        """The pixels as a new float32 torch tensor 1×H×W, the input :func:`eval_transform` takes.

        A copy, so in-place tensor operations cannot change the Radiograph (``torch.from_numpy`` on the
        read-only ``pixels`` would warn for that reason).
        """
        import torch

        return torch.from_numpy(self.pixels.copy())[None]

    @property
    def work_view(self) -> np.ndarray:
        """The pixels shrunk to the photo check's working size (read-only; made once per Radiograph).

        The photo check, the input gate's image descriptor and a photo's contrast stretch all read this
        view; the pixels are read-only, so it stays valid.
        """
        view = self.__dict__.get("_work_view")
        if view is None:
            from ._photo import fast_view

            view = fast_view(self.pixels)
            if view is not self.pixels:
                view.setflags(write=False)
            object.__setattr__(self, "_work_view", view)
        return view

    @property
    def warnings(self) -> list[str]:
        """What the loader changed or doubted (colour dropped, range rescaled, constant image, ...)."""
        return list(self.meta.get("warnings", []))

    def to_dict(self) -> dict[str, Any]:
        """The metadata (not the pixels) as JSON-serialisable values, plus the pixel ``size`` (h, w)."""
        out = {key: _jsonable(value) for key, value in self.meta.items()}
        out["size"] = list(self.shape)
        return out

    def __repr__(self) -> str:
        return (f"Radiograph(shape={self.shape}, source_format={self.meta.get('source_format')!r}, "
                f"warnings={len(self.meta.get('warnings', []))})")


def _jsonable(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


# ----------------------------------------------------------------------------------------------- sources
def load_radiograph(src: Any, *, max_bytes: int = 200_000_000, max_pixels: int = 100_000_000,
                    min_size: int = 64) -> Radiograph:
    """Load an image as a :class:`Radiograph` (float32 grey in [0, 1], bone bright), safely.

    ``src`` may be a path (str / PathLike), bytes / bytearray / memoryview, a binary file object, a
    ``PIL.Image.Image``, a numpy array (H×W, or H×W×1/3/4; unsigned or signed ints, floats), or a
    Radiograph (returned as is). Files are recognised by content: PNG (8/16-bit), JPEG (incl. CMYK,
    progressive), TIFF, BMP, WebP and DICOM (with or without the 128-byte preamble; JPEG 2000 /
    JPEG lossless / JPEG-LS / RLE decode through the pylibjpeg plugins). Sizes are checked before
    decoding: ``max_bytes`` for the encoded input, ``max_pixels`` for what the header claims,
    ``min_size`` for the shortest edge.

    Raises:
        InvalidImageError: with ``reason`` one of ``not_found``, ``unreadable``, ``empty``,
            ``unsupported_format``, ``corrupt``, ``too_large``, ``too_small``, ``multi_frame``,
            ``no_pixel_data``, ``bad_array``. Nothing else escapes from decoding libraries.
        ValueError: a limit argument is not a positive int.

    Example:
        >>> import numpy as np
        >>> rg = load_radiograph(np.full((128, 128), 0.5, dtype=np.float32))
        >>> rg.pixels.shape, rg.meta["source_format"], rg.warnings[0][:14]
        ((128, 128), 'array', 'constant image')
    """
    if isinstance(src, Radiograph):
        return src
    limits = Limits(max_bytes=max_bytes, max_pixels=max_pixels, min_size=min_size)
    library_warnings: list[str] = []
    try:
        with _collect_warnings(library_warnings):
            if isinstance(src, np.ndarray):
                pixels, meta = _from_array(src, limits)
            elif isinstance(src, Image.Image):
                pixels, meta = _from_pil(src, limits, source_format=(src.format or "pil").lower())
            else:
                pixels, meta = _from_bytes(_read_source(src, limits), limits)
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


def _from_bytes(data: bytes, limits: Limits) -> tuple[np.ndarray, dict[str, Any]]:
    fmt = _sniff(data[:1024])
    if fmt == "dicom":
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
        return _from_pil(im, limits, source_format=fmt)


# ------------------------------------------------------------------------------------------------ raster
def _exif_orientation(im: Image.Image, warnings: list[str]) -> int:
    try:
        value = int(im.getexif().get(0x0112, 1) or 1)
    except Exception:
        warnings.append("EXIF metadata unreadable; orientation not applied")
        return 1
    return value if 1 <= value <= 8 else 1


def _from_pil(im: Image.Image, limits: Limits, *, source_format: str) -> tuple[np.ndarray, dict[str, Any]]:
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
    pixels = _to_unit_grey(values, alpha, warnings)
    meta = {
        "source_format": source_format,
        "original_size": (height, width),
        "bit_depth": bit_depth,
        "photometric_interpretation": photometric,
        "pixel_spacing_mm": None,
        "modality": None, "body_part": None, "view": None,
        "exif_rotated": orientation != 1,
        "warnings": warnings,
    }
    return pixels, meta


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
def _from_array(arr: np.ndarray, limits: Limits) -> tuple[np.ndarray, dict[str, Any]]:
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
    pixels = _to_unit_grey(values, alpha, warnings)
    meta = {
        "source_format": "array",
        "original_size": (int(arr.shape[0]), int(arr.shape[1])),
        "bit_depth": int(arr.dtype.itemsize * 8),
        "photometric_interpretation": "MONOCHROME2" if values.ndim == 2 else "RGB",
        "pixel_spacing_mm": None,
        "modality": None, "body_part": None, "view": None,
        "exif_rotated": False,
        "warnings": warnings,
    }
    return pixels, meta


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


def _to_unit_grey(values: np.ndarray, alpha: np.ndarray | None, warnings: list[str]) -> np.ndarray:
    """Values (H×W or H×W×3, any int/float dtype) -> float32 H×W in [0, 1] by the module's rules."""
    dtype = values.dtype
    wide = dtype.itemsize > 2 and not (dtype == np.float32)
    work = np.float64 if wide else np.float32
    unsigned = dtype in (np.uint8, np.uint16)
    if values.ndim == 3:
        r, g, b = (values[..., i] for i in range(3))
        if not (np.array_equal(r, g) and np.array_equal(g, b)):
            warnings.append("colour image converted to grey (ITU-R BT.601 luma)")
        grey = r.astype(work) * _LUMA[0] + g.astype(work) * _LUMA[1] + b.astype(work) * _LUMA[2]
        if unsigned:
            grey /= np.iinfo(dtype).max
    elif unsigned:  # grey 8/16-bit, the common case: one pass, and already within [0, 1]
        grey = np.divide(values, np.float32(np.iinfo(dtype).max), dtype=np.float32)
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


def _finish(pixels: np.ndarray, meta: dict[str, Any]) -> Radiograph:
    if pixels.size and float(pixels.min()) == float(pixels.max()):
        meta["warnings"].append(f"constant image (every pixel is {float(pixels.min()):.4g}); "
                                "check that the right file or window was used")
    pixels = np.ascontiguousarray(pixels, dtype=np.float32)  # freshly computed by every reader
    pixels.setflags(write=False)
    return Radiograph(pixels=pixels, meta=meta)


# -------------------------------------------------------------------------------------------- transforms
@dataclass(frozen=True)
class Preprocess:
    """How a model wants its input: eval resize / crop, normalisation, and the train augmentation.

    Defaults reproduce the reference study (eval: short edge 256, centre crop 224; train: short edge 512,
    random 224 crop, rotation ±10°, horizontal and vertical flips p=0.5; ImageNet mean/std). A model repo
    stores ``to_dict()`` in ``as_ai.json["preprocess"]`` so inference cannot drift from training.

    ``blur_sigma`` (not in the study; default 0 = off) softens every input, in training and inference alike,
    by a Gaussian of that many pixels of the crop (:func:`soften_input`). Images from a sharp and a soft
    detector then differ less, so a model cannot take the detector's sharpness for blurred joint margins.

    Raises:
        ValueError: a parameter is out of range (crop larger than the resize, std <= 0, p not in [0, 1]).

    Example:
        >>> p = Preprocess.from_dict({"resize_short": 256, "crop": 224})
        >>> p.crop, Preprocess.from_dict(p.to_dict()) == p
        (224, True)
    """

    resize_short: int = 256
    crop: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    train_resize_short: int = 512
    train_crop: int = 224
    rotation_degrees: float = 10.0
    hflip: float = 0.5
    vflip: float = 0.5
    blur_sigma: float = 0.0  # Gaussian blur (px of the crop) of every input after the crop: sharpness harmonised

    def __post_init__(self) -> None:
        for name in ("resize_short", "crop", "train_resize_short", "train_crop"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Preprocess.{name} must be a positive int, got {value!r}")
        if self.crop > self.resize_short:
            raise ValueError(f"Preprocess.crop ({self.crop}) must not exceed resize_short ({self.resize_short})")
        if self.train_crop > self.train_resize_short:
            raise ValueError(f"Preprocess.train_crop ({self.train_crop}) must not exceed train_resize_short "
                             f"({self.train_resize_short})")
        for name in ("mean", "std"):
            value = getattr(self, name)
            try:
                triple = tuple(float(v) for v in value)
            except (TypeError, ValueError):
                triple = ()
            if len(triple) != 3 or not all(math.isfinite(v) for v in triple):
                raise ValueError(f"Preprocess.{name} must be three finite numbers (R, G, B), got {value!r}")
            if name == "std" and min(triple) <= 0:
                raise ValueError(f"Preprocess.std must be > 0, got {value!r}")
            object.__setattr__(self, name, triple)
        for name in ("rotation_degrees", "hflip", "vflip", "blur_sigma"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"Preprocess.{name} must be a finite number, got {value!r}")
            object.__setattr__(self, name, float(value))
        if not 0.0 <= self.rotation_degrees <= 180.0:
            raise ValueError(f"Preprocess.rotation_degrees must be in [0, 180], got {self.rotation_degrees}")
        for name in ("hflip", "vflip"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"Preprocess.{name} is a probability in [0, 1], got {getattr(self, name)}")
        if not 0.0 <= self.blur_sigma <= 5.0:
            raise ValueError(f"Preprocess.blur_sigma must be in [0, 5] pixels, got {self.blur_sigma}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable parameters (tuples as lists), as stored in ``as_ai.json``."""
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Preprocess":
        """Build from ``as_ai.json["preprocess"]``; missing keys take the study's defaults.

        Raises:
            ModelLoadError: ``d`` is not a dict, has keys this version does not know (a model written by
                a newer as-ai, or a typo), or values out of range.
        """
        if not isinstance(d, dict):
            raise ModelLoadError(f"as_ai.json 'preprocess' must be an object, got {type(d).__name__}.")
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise ModelLoadError(
                f"as_ai.json 'preprocess' has unknown keys {unknown}; known keys are {known}. The model may "
                "need a newer as-ai (pip install -U as-ai), or the keys are misspelt.")
        try:
            return cls(**d)
        except ValueError as exc:
            raise ModelLoadError(f"as_ai.json 'preprocess' is invalid: {exc}.") from exc


def soften_input(x: "torch.Tensor", sigma: float) -> "torch.Tensor":
    """Blur images (… × H × W tensors) by a Gaussian of ``sigma`` pixels; ``sigma`` 0 returns ``x`` itself.

    ``Preprocess.blur_sigma`` applies it to every model input after the crop. Normalisation is affine per
    channel and the blur keeps constants, so it gives the same result before or after normalising.
    """
    import torch
    from torchvision.transforms.v2 import functional as F

    if sigma <= 0:
        return x
    k = 2 * int(math.ceil(3 * sigma)) + 1
    return F.gaussian_blur(x.to(torch.float32), [k, k], [float(sigma), float(sigma)]).to(x.dtype)


class _Soften:
    """A transform step: :func:`soften_input` by ``sigma``."""

    def __init__(self, sigma: float) -> None:
        self.sigma = float(sigma)

    def __call__(self, x: "torch.Tensor") -> "torch.Tensor":
        return soften_input(x, self.sigma)

    def __repr__(self) -> str:
        return f"Soften(sigma={self.sigma})"


class _GreyToRGB:
    """1×H×W -> 3×H×W by repeating the channel (ImageNet backbones expect three)."""

    def __call__(self, x: "torch.Tensor") -> "torch.Tensor":
        if x.shape[-3] == 3:
            return x
        if x.shape[-3] != 1:
            raise ValueError(f"expected 1 or 3 channels, got shape {tuple(x.shape)}")
        return x.expand(*x.shape[:-3], 3, *x.shape[-2:])

    def __repr__(self) -> str:
        return "GreyToRGB()"


def eval_transform(p: Preprocess) -> Any:
    """The study's evaluation transform for one image (torchvision v2).

    Input: a float tensor 1×H×W in [0, 1] (``rg.to_tensor()``). Output: 3×crop×crop:
    short edge resized to ``p.resize_short`` (bilinear, antialiased), centre crop ``p.crop``, grey
    repeated to 3 channels, normalised with ``p.mean`` / ``p.std``. For batches use :func:`to_model_input`.

    Example:
        >>> import torch
        >>> eval_transform(Preprocess())(torch.rand(1, 300, 400)).shape
        torch.Size([3, 224, 224])
    """
    from torchvision.transforms import v2

    return v2.Compose([
        v2.Resize(p.resize_short, interpolation=v2.InterpolationMode.BILINEAR, antialias=True),
        v2.CenterCrop(p.crop),
        *([_Soften(p.blur_sigma)] if p.blur_sigma > 0 else []),
        _GreyToRGB(),
        v2.Normalize(mean=list(p.mean), std=list(p.std)),
    ])


def train_transform(p: Preprocess) -> Any:
    """The study's training augmentation (torchvision v2), random under ``torch.manual_seed``.

    Short edge to ``p.train_resize_short``, random ``p.train_crop`` crop, random rotation within
    ±``p.rotation_degrees`` (bilinear, corners filled black = air), horizontal and vertical flips with
    probabilities ``p.hflip`` / ``p.vflip``, grey to 3 channels, normalise. Input as :func:`eval_transform`.

    Example:
        >>> import torch
        >>> _ = torch.manual_seed(0)
        >>> train_transform(Preprocess())(torch.rand(1, 600, 520)).shape
        torch.Size([3, 224, 224])
    """
    from torchvision.transforms import v2

    return v2.Compose([
        v2.Resize(p.train_resize_short, interpolation=v2.InterpolationMode.BILINEAR, antialias=True),
        v2.RandomCrop(p.train_crop),
        v2.RandomRotation(p.rotation_degrees, interpolation=v2.InterpolationMode.BILINEAR, fill=0.0),
        v2.RandomHorizontalFlip(p.hflip),
        v2.RandomVerticalFlip(p.vflip),
        *([_Soften(p.blur_sigma)] if p.blur_sigma > 0 else []),
        _GreyToRGB(),
        v2.Normalize(mean=list(p.mean), std=list(p.std)),
    ])


def _readonly_view(px: np.ndarray) -> "torch.Tensor":
    """A tensor sharing ``px``'s memory, for reading only (DLPack exports read-only arrays; from_numpy warns)."""
    import torch

    try:
        return torch.from_dlpack(px)
    except (BufferError, RuntimeError, TypeError):  # an older numpy without read-only DLPack export
        return torch.from_numpy(px.copy())


def to_model_input(images: Sequence[Radiograph | np.ndarray], p: Preprocess) -> "torch.Tensor":
    """Batch radiographs into the eval tensor N×3×crop×crop that the models take (what inference uses).

    Equal (to float rounding) to stacking ``eval_transform(p)`` over the images: resize on tensors
    (bilinear, antialiased) straight from the pixels without a copy or a PIL round trip, then grey to
    3 channels and normalisation once for the batch. Arrays go through :func:`load_radiograph` first,
    so they follow its rules and limits.

    Raises:
        InvalidImageError: an array is not a valid image (see :func:`load_radiograph`).

    Example:
        >>> import numpy as np
        >>> to_model_input([np.zeros((300, 400), np.uint8), np.zeros((256, 256), np.uint8)], Preprocess()).shape
        torch.Size([2, 3, 224, 224])
    """
    import torch
    from torchvision.transforms.v2 import functional as F

    if isinstance(images, (Radiograph, np.ndarray)):
        raise TypeError("to_model_input takes a sequence of images; wrap a single one in a list: [image]")
    radiographs = [load_radiograph(im) for im in images]
    grey = torch.empty((len(radiographs), 1, p.crop, p.crop), dtype=torch.float32)
    for i, rg in enumerate(radiographs):
        # One image at a time: images differ in size, and a stacked resize is no faster on CPU (it only
        # adds a copy). The input is a zero-copy view of the read-only pixels; resize writes new memory.
        resized = F.resize(_readonly_view(rg.pixels)[None, None], [p.resize_short],
                           interpolation=F.InterpolationMode.BILINEAR, antialias=True)
        grey[i] = F.center_crop(resized, [p.crop, p.crop])
    grey = soften_input(grey, p.blur_sigma)
    mean = torch.tensor(p.mean, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(p.std, dtype=torch.float32).view(1, 3, 1, 1)
    return (grey.expand(-1, 3, -1, -1) - mean) / std  # grey to 3 channels and normalise, batched
