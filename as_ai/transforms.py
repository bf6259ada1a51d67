"""The model's view of an image: the one place where a :class:`~as_ai.radiograph.Radiograph` becomes the
tensor a member reads.

Every path goes through here: :class:`~as_ai.Diagnoser` inference, Grad-CAM, LIME and NormLIME, the
training script's evaluation cache and its augmentation, and the evaluation's softness test. Nothing
else resizes, crops or normalises for a model (``tests/test_transforms.py`` checks the others by grep).

The evaluation view, in order (:func:`model_grey`, then :func:`normalise`):

1. a photo of a screen is contrast-stretched when the model says so (:func:`photo_view`);
2. short edge resized to ``resize_short`` (bilinear, antialiased), centre crop ``crop``;
3. intensity standardised (:func:`standardise_intensity`, ``Preprocess.intensity``): each crop windowed to
   its own percentiles and its mid-tones brought to the training images' median, so that gain, offset,
   gamma, bit depth and display window of an export do not change what the network sees. A photo that
   step 1 stretched keeps that stretch instead (its grey scale is the screen's and the camera's, and the
   bundled model's phone-photo calibration was fitted on stretched photos);
4. input blur ``blur_sigma`` (off by default);
5. grey repeated to 3 channels, normalised with ``mean`` / ``std``.

Training's random view (:func:`train_transform`, and ``train/diagnosis.py``'s centred view) builds on
the same steps: the geometry is random, steps 3-5 are these functions.

The parameters live in :class:`~as_ai.preprocess.Preprocess` (module :mod:`as_ai.preprocess`; re-exported
here), which a model repo stores in ``as_ai.json["preprocess"]``.
"""
from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from .decoding import load_radiograph
from .preprocess import IMAGENET_MEAN, IMAGENET_STD, INTENSITY_MODES, Preprocess, scaled_for_size
from .radiograph import Radiograph

if TYPE_CHECKING:  # torch is imported on first use, so loading images stays light
    import torch

__all__ = [
    "Preprocess", "IMAGENET_MEAN", "IMAGENET_STD", "INTENSITY_MODES",
    "model_grey", "normalise", "to_model_input", "standardise_intensity", "intensity_reference",
    "soften_input", "eval_transform", "train_transform", "Standardise", "Soften", "GreyToRGB",
    "scaled_for_size", "photo_stretch_from_config", "photo_rectify_from_config", "rectify_photo",
    "resize_short_edge", "finish_grey", "view_tail", "photo_view", "stretch_contrast",
    "resized_size", "crop_box", "to_input_grid",
]

GAMMA_RANGE = (0.25, 4.0)   # the mid-tone correction never bends an image further than this


# -------------------------------------------------------------------------------------------- intensity
def _window_gamma(x: "torch.Tensor", p: Preprocess) -> "torch.Tensor":
    import torch

    flat = x.reshape(*x.shape[:-2], -1).float()
    q = torch.tensor([p.intensity_window[0] / 100.0, p.intensity_window[1] / 100.0, 0.5], dtype=torch.float32)
    stats = torch.quantile(flat, q, dim=-1, keepdim=True)       # 3 x ... x 1
    lo, hi, med = stats[0, ..., None], stats[1, ..., None], stats[2, ..., None]
    span = (hi - lo).clamp_min(1e-6)
    z = ((x.float() - lo) / span).clamp_min(0.0)
    zmed = ((med - lo) / span).clamp(1e-3, 0.999)   # the windowed median (the window is monotone)
    rlo, rhi, rmid = p.intensity_reference
    gamma = (math.log(rmid) / torch.log(zmed)).clamp(*GAMMA_RANGE)
    return (rlo + z.pow(gamma) * (rhi - rlo)).clamp(0.0, 1.0).to(x.dtype)


def standardise_intensity(x: "torch.Tensor", p: Preprocess) -> "torch.Tensor":
    """Grey crops (… × H × W in [0, 1]) with their grey levels standardised as ``p.intensity`` says.

    ``"window_gamma"``: each image's ``p.intensity_window`` percentiles go to the reference's low and high
    values, and one gamma (within ``GAMMA_RANGE``) brings its median to the reference median. Invariant
    to a gain or offset of the input (up to clipping), and to a gamma whenever the window's low end is
    black; a narrower display window moves little. ``"none"`` returns ``x`` itself.
    """
    if p.intensity == "none":
        return x
    return _window_gamma(x, p)


def intensity_reference(crops: Sequence[np.ndarray] | "torch.Tensor", window: tuple[float, float] = (1.0, 99.0)
                        ) -> tuple[float, float, float]:
    """The ``Preprocess.intensity_reference`` of training crops (grey, in [0, 1], as the model's view cuts them):
    the mean of their window percentiles, and the mean median of the windowed crops."""
    import torch

    x = torch.as_tensor(np.stack([np.asarray(c, dtype=np.float32) for c in crops])
                        if not isinstance(crops, torch.Tensor) else crops.float())
    flat = x.reshape(x.shape[0], -1)
    q = torch.quantile(flat, torch.tensor([window[0] / 100.0, window[1] / 100.0, 0.5]), dim=1)
    lo, hi, med = q[0], q[1], q[2]
    zmed = ((med - lo) / (hi - lo).clamp_min(1e-6)).clamp(1e-3, 0.999)
    return (float(lo.mean()), float(hi.mean()), float(zmed.mean()))


# ---------------------------------------------------------------------------------------------- photos
def photo_stretch_from_config(entry: Any) -> tuple[float, float] | None:
    """``as_ai.json["photo_input"]`` -> the contrast-stretch percentiles for photos, or None (read as they are).

    Raises:
        ValueError: the entry is malformed (not two percentiles 0 <= low < high <= 100, ``rectify`` not a bool).
    """
    photo_rectify_from_config(entry)
    if not entry:
        return None
    pct = entry.get("contrast_stretch") if isinstance(entry, Mapping) else None
    if pct is None:
        return None
    try:
        lo, hi = (float(v) for v in pct)
    except (TypeError, ValueError):
        raise ValueError(f"photo_input.contrast_stretch must be two percentiles [low, high], got {pct!r}") from None
    if not 0.0 <= lo < hi <= 100.0:
        raise ValueError(f"photo_input.contrast_stretch must satisfy 0 <= low < high <= 100, got {pct!r}")
    return lo, hi


def stretch_contrast(rg: Radiograph, pct: tuple[float, float]) -> Radiograph:
    """``rg`` with its ``pct`` percentiles (measured on the shrunk work view) mapped to 0 and 1."""
    lo, hi = np.percentile(rg.work_view, pct)
    if hi - lo < 1e-3:  # flat: nothing to stretch
        return rg
    px = np.clip((rg.pixels - np.float32(lo)) / np.float32(hi - lo), 0.0, 1.0).astype(np.float32)
    return Radiograph(px, {**rg.meta, "warnings": list(rg.warnings), "contrast_stretched": [float(lo), float(hi)]})


def photo_rectify_from_config(entry: Any) -> bool:
    """``as_ai.json["photo_input"]["rectify"]``: whether a photo of a screen is cut out of the photo and made
    upright (:mod:`as_ai.rectify`) before it is read; False when absent (models from before it existed).

    Raises:
        ValueError: the entry is not true / false.
    """
    value = entry.get("rectify", False) if isinstance(entry, Mapping) else False
    if not isinstance(value, bool):
        raise ValueError(f"photo_input.rectify must be true or false, got {value!r}")
    return value


def rectify_photo(rg: Radiograph) -> Radiograph:
    """The radiograph cut out of a photo and made upright (:func:`as_ai.rectify.find_radiograph`,
    :func:`~as_ai.rectify.rectify`), at the photo's resolution capped at ``RECTIFY_MAX_SIDE``; what was found
    is in ``meta["rectified"]`` (corners, or why none were found, in which case the photo is kept as it is)."""
    from .rectify import find_radiograph, rectify

    quad = find_radiograph(rg.pixels)
    meta = {**rg.meta, "warnings": list(rg.warnings), "rectified": quad.to_dict()}
    if not quad.found:
        return Radiograph(rg.pixels, meta)
    h, w = quad.size
    scale = min(1.0, RECTIFY_MAX_SIDE / max(h, w))
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    return Radiograph(rectify(rg.pixels, quad, size=size), meta)


RECTIFY_MAX_SIDE = 2048


def photo_view(rg: Radiograph, stretch: tuple[float, float] | None, is_photo: bool, *,
               rectify: bool = False) -> Radiograph:
    """What a model makes of an image before its geometry: a photo of a screen rectified (when the model
    says so) and stretched when it says so (once: an image already stretched is returned as it is)."""
    if stretch is None or not is_photo or "contrast_stretched" in rg.meta:
        return rg
    if rectify and "rectified" not in rg.meta:
        rg = rectify_photo(rg)
    return stretch_contrast(rg, stretch)


# ------------------------------------------------------------------------------------------- the view
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


def _readonly_view(px: np.ndarray) -> "torch.Tensor":
    """A tensor sharing ``px``'s memory, for reading only (DLPack exports read-only arrays; from_numpy warns)."""
    import torch

    try:
        return torch.from_dlpack(px)
    except (BufferError, RuntimeError, TypeError):  # an older numpy without read-only DLPack export
        return torch.from_numpy(px.copy())


def resize_short_edge(t: "torch.Tensor", short: int) -> "torch.Tensor":
    """``t`` (… × H × W) with its short edge resized to ``short`` (bilinear, antialiased), as every view does."""
    from torchvision.transforms.v2 import functional as F

    return F.resize(t, [short], interpolation=F.InterpolationMode.BILINEAR, antialias=True)


def finish_grey(crop: "torch.Tensor", p: Preprocess) -> "torch.Tensor":
    """Steps 3-4 of the view on grey crops (… × H × W): intensity standardisation, then the input blur."""
    return soften_input(standardise_intensity(crop, p), p.blur_sigma)


def model_grey(image: Radiograph | np.ndarray, p: Preprocess) -> "torch.Tensor":
    """The grey crop (1 × crop × crop, float32, before :func:`normalise`) a member reading ``p`` sees.

    Arrays go through :func:`~as_ai.decoding.load_radiograph` first, so they follow its rules and limits.
    A photo already stretched by :func:`photo_view` is not standardised again (step 3 of the module).
    """
    from torchvision.transforms.v2 import functional as F

    rg = load_radiograph(image)
    if "contrast_stretched" in rg.meta and p.intensity != "none":
        p = dataclasses.replace(p, intensity="none")
    # the input is a zero-copy view of the read-only pixels; resize writes new memory
    resized = resize_short_edge(_readonly_view(rg.pixels)[None], p.resize_short)
    return finish_grey(F.center_crop(resized, [p.crop, p.crop]), p)


def normalise(grey: "torch.Tensor", p: Preprocess) -> "torch.Tensor":
    """Grey batches N × 1 × s × s (or one 1 × s × s) -> 3 channels, normalised with ``p.mean`` / ``p.std``."""
    import torch

    g = grey.float()
    shape = (1, 3, 1, 1) if g.dim() == 4 else (3, 1, 1)
    mean = torch.tensor(p.mean, dtype=torch.float32).view(*shape)
    std = torch.tensor(p.std, dtype=torch.float32).view(*shape)
    return (g.expand(*g.shape[:-3], 3, *g.shape[-2:]) - mean) / std


def to_model_input(images: Sequence[Radiograph | np.ndarray], p: Preprocess) -> "torch.Tensor":
    """Batch radiographs into the eval tensor N×3×crop×crop that the models take (what inference uses).

    :func:`model_grey` of each image, stacked and normalised once for the batch. Equal (to float rounding)
    to stacking ``eval_transform(p)`` over the images.

    Raises:
        InvalidImageError: an array is not a valid image (see :func:`~as_ai.decoding.load_radiograph`).

    Example:
        >>> import numpy as np
        >>> to_model_input([np.zeros((300, 400), np.uint8), np.zeros((256, 256), np.uint8)], Preprocess()).shape
        torch.Size([2, 3, 224, 224])
    """
    import torch

    if isinstance(images, (Radiograph, np.ndarray)):
        raise TypeError("to_model_input takes a sequence of images; wrap a single one in a list: [image]")
    grey = torch.empty((len(images), 1, p.crop, p.crop), dtype=torch.float32)
    for i, im in enumerate(images):  # one at a time: images differ in size, and a stacked resize is no faster
        grey[i] = model_grey(im, p)
    return normalise(grey, p)


# ---------------------------------------------------------------------------------- composable steps
class Standardise:
    """A transform step: :func:`standardise_intensity` as ``p`` says."""

    def __init__(self, p: Preprocess) -> None:
        self.p = p

    def __call__(self, x: "torch.Tensor") -> "torch.Tensor":
        return standardise_intensity(x, self.p)

    def __repr__(self) -> str:
        return f"Standardise(intensity={self.p.intensity!r})"


class Soften:
    """A transform step: :func:`soften_input` by ``sigma``."""

    def __init__(self, sigma: float) -> None:
        self.sigma = float(sigma)

    def __call__(self, x: "torch.Tensor") -> "torch.Tensor":
        return soften_input(x, self.sigma)

    def __repr__(self) -> str:
        return f"Soften(sigma={self.sigma})"


class GreyToRGB:
    """1×H×W -> 3×H×W by repeating the channel (ImageNet backbones expect three)."""

    def __call__(self, x: "torch.Tensor") -> "torch.Tensor":
        if x.shape[-3] == 3:
            return x
        if x.shape[-3] != 1:
            raise ValueError(f"expected 1 or 3 channels, got shape {tuple(x.shape)}")
        return x.expand(*x.shape[:-3], 3, *x.shape[-2:])

    def __repr__(self) -> str:
        return "GreyToRGB()"


def view_tail(p: Preprocess, *, before_intensity: Sequence[Any] = ()) -> list[Any]:
    """The steps after the crop, as transform steps: ``before_intensity`` (e.g. training's acquisition
    jitter, which imitates another scanner before the model's own standardisation), intensity, blur, grey
    to 3 channels, normalise."""
    from torchvision.transforms import v2

    return [*before_intensity,
            *([Standardise(p)] if p.intensity != "none" else []),
            *([Soften(p.blur_sigma)] if p.blur_sigma > 0 else []),
            GreyToRGB(),
            v2.Normalize(mean=list(p.mean), std=list(p.std))]


def eval_transform(p: Preprocess) -> Any:
    """The evaluation view for one image as a torchvision v2 pipeline (equal to :func:`model_grey` + normalise).

    Input: a float tensor 1×H×W in [0, 1] (``rg.to_tensor()``). Output: 3×crop×crop. For batches use
    :func:`to_model_input`.

    Example:
        >>> import torch
        >>> eval_transform(Preprocess())(torch.rand(1, 300, 400)).shape
        torch.Size([3, 224, 224])
    """
    from torchvision.transforms import v2

    return v2.Compose([
        v2.Resize(p.resize_short, interpolation=v2.InterpolationMode.BILINEAR, antialias=True),
        v2.CenterCrop(p.crop),
        *view_tail(p),
    ])


def train_transform(p: Preprocess, *, before_intensity: Sequence[Any] = ()) -> Any:
    """The study's training augmentation (torchvision v2), random under ``torch.manual_seed``.

    Short edge to ``p.train_resize_short``, random ``p.train_crop`` crop, random rotation within
    ±``p.rotation_degrees`` (bilinear, corners filled black = air), horizontal and vertical flips with
    probabilities ``p.hflip`` / ``p.vflip``, then the view's tail (:func:`view_tail`). Input as
    :func:`eval_transform`.

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
        *view_tail(p, before_intensity=before_intensity),
    ])


# ------------------------------------------------------------------------------------------- geometry
def resized_size(h: int, w: int, short: int) -> tuple[int, int]:
    """Size after torchvision's ``Resize(short)`` (short edge to ``short``, long edge truncated)."""
    if h <= w:
        return short, int(short * w / h)
    return int(short * h / w), short


def crop_box(h: int, w: int, p: Preprocess) -> tuple[int, int, int, int]:
    """(top, left, resized_h, resized_w) of ``p``'s centre crop on its resized grid, as torchvision."""
    rh, rw = resized_size(h, w, p.resize_short)
    return int(round((rh - p.crop) / 2.0)), int(round((rw - p.crop) / 2.0)), rh, rw


def to_input_grid(m: Any, shape: tuple[int, int], p: Preprocess, *, mode: str = "bilinear",
                  fill: float = 0.0) -> np.ndarray:
    """Map a map on the model's crop grid (crop x crop) back to the input image's grid ``shape``.

    Undoes the centre crop (outside the crop: ``fill``) and the resize (``mode``: "bilinear" for
    heatmaps, "nearest" for labels).
    """
    import torch
    import torch.nn.functional as F

    t = torch.as_tensor(np.asarray(m, dtype=np.float32))
    if t.shape[-2:] != (p.crop, p.crop):
        t = F.interpolate(t[None, None], size=(p.crop, p.crop), mode="bilinear", align_corners=False)[0, 0]
    h, w = shape
    top, left, rh, rw = crop_box(h, w, p)
    canvas = torch.full((rh, rw), float(fill), dtype=torch.float32)
    canvas[top:top + p.crop, left:left + p.crop] = t
    kw = {"align_corners": False} if mode == "bilinear" else {}
    out = F.interpolate(canvas[None, None], size=(h, w), mode=mode, **kw)[0, 0]
    return out.numpy()
