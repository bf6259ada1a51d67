"""The parameters of the model's view: :class:`Preprocess`, as a model repo stores it in ``as_ai.json["preprocess"]``.

One frozen dataclass says how a model wants its input (eval resize and centre crop, intensity standardisation,
input blur, normalisation, and the training augmentation's geometry), checks every value when it is built,
and round-trips through ``to_dict`` / ``from_dict``; :func:`scaled_for_size` gives the same view for a
member with another input size. The operations that apply these parameters are :mod:`as_ai.transforms`.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields
from typing import Any

from .errors import ModelLoadError

__all__ = ["Preprocess", "scaled_for_size", "IMAGENET_MEAN", "IMAGENET_STD", "INTENSITY_MODES"]

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
INTENSITY_MODES = ("none", "window_gamma")


# -------------------------------------------------------------------------------------------- Preprocess
@dataclass(frozen=True)
class Preprocess:
    """How a model wants its input: eval resize / crop, intensity, normalisation, and the train augmentation.

    Defaults reproduce the reference study (eval: short edge 256, centre crop 224; train: short edge 512,
    random 224 crop, rotation ±10°, horizontal and vertical flips p=0.5; ImageNet mean/std; intensities as
    given). A model repo stores ``to_dict()`` in ``as_ai.json["preprocess"]`` so inference cannot drift
    from training.

    ``blur_sigma`` (not in the study; default 0 = off) softens every input, in training and inference alike,
    by a Gaussian of that many pixels of the crop (:func:`~as_ai.transforms.soften_input`).

    ``intensity`` (not in the study; default ``"none"``) standardises each crop's grey levels before the
    network (:func:`~as_ai.transforms.standardise_intensity`): ``"window_gamma"`` maps its ``intensity_window`` percentiles
    to ``intensity_reference``'s low and high values and bends its mid-tones (one gamma) so that its median
    lands on the reference median. The reference is measured on the training images
    (:func:`~as_ai.transforms.intensity_reference`), so a training image is left almost as it was.

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
    intensity: str = "none"  # "none" | "window_gamma": grey-level standardisation of every crop
    intensity_window: tuple[float, float] = (1.0, 99.0)           # percentiles that set the window
    intensity_reference: tuple[float, float, float] = (0.0, 1.0, 0.5)  # window low, high, median after it

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
        for name, n in (("mean", 3), ("std", 3), ("intensity_window", 2), ("intensity_reference", 3)):
            value = getattr(self, name)
            try:
                values = tuple(float(v) for v in value)
            except (TypeError, ValueError):
                values = ()
            if len(values) != n or not all(math.isfinite(v) for v in values):
                what = "three finite numbers (R, G, B)" if n == 3 and name in ("mean", "std") else f"{n} finite numbers"
                raise ValueError(f"Preprocess.{name} must be {what}, got {value!r}")
            if name == "std" and min(values) <= 0:
                raise ValueError(f"Preprocess.std must be > 0, got {value!r}")
            object.__setattr__(self, name, values)
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
        if self.intensity not in INTENSITY_MODES:
            raise ValueError(f"Preprocess.intensity must be one of {INTENSITY_MODES}, got {self.intensity!r}")
        lo, hi = self.intensity_window
        if not 0.0 <= lo < hi <= 100.0:
            raise ValueError(f"Preprocess.intensity_window must be percentiles 0 <= low < high <= 100, "
                             f"got {self.intensity_window}")
        rlo, rhi, rmid = self.intensity_reference
        if not (0.0 <= rlo < rhi <= 1.0 and 0.0 < rmid < 1.0):
            raise ValueError("Preprocess.intensity_reference must be (low, high, median) with 0 <= low < high <= 1 "
                             f"and 0 < median < 1, got {self.intensity_reference}")

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


def scaled_for_size(p: Preprocess, size: int) -> Preprocess:
    """``p`` for a member reading ``size`` px: eval crop ``size``, resize and input blur scaled in proportion."""
    if size == p.crop:
        return p
    resize = max(size, int(math.floor(p.resize_short * size / p.crop + 0.5)))
    return dataclasses.replace(p, crop=size, resize_short=resize, blur_sigma=min(5.0, p.blur_sigma * size / p.crop))
