"""The Radiograph: float32 H×W pixels in [0, 1] with bone bright, and metadata without patient identifiers.

What :func:`as_ai.decoding.load_radiograph` returns and every later step (checks, the model's view,
explanations) reads.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import InvalidImageError

if TYPE_CHECKING:  # torch is imported on first use (Radiograph.to_tensor), so loading images stays light
    import torch

__all__ = ["Radiograph"]


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
