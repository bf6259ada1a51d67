"""Input checks reported with every diagnosis: is this image like the model's training data, and if it
is a phone photo of a screen, is it a usable one?

Three checks feed :class:`InputCheck`:

* the **input gate** (:class:`InputGate`): Mahalanobis-type distances of a descriptor of the picture and of
  the ensemble's penultimate features from those of the training images (statistics in the model repo's
  ``input_gate.safetensors``, limits in ``as_ai.json["input_gate"]``). Above its limit the diagnosis
  abstains;
* the **photo-quality check** (:func:`check_photo`): blur, glare, moiré, perspective and cropping of a
  phone photo, very low resolution or contrast of any image, each with advice a person can follow;
* the **ensemble spread** (:func:`spread_reasons`): members that disagree strongly are reported.

Example:
    >>> import numpy as np
    >>> check_photo(np.full((64, 64), 0.5, np.float32)).issues
    ['low_contrast', 'low_resolution']
"""
from __future__ import annotations

import dataclasses
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from . import _gate, _photo
from ._gate import GATE_FILE, METHOD, PARTS, GateStats, fit_stats, image_descriptor, load_parts, save_parts
from .errors import NoInputGateWarning
from .exposure import ExposureCheck, check_exposure

if TYPE_CHECKING:  # pragma: no cover
    from .preprocess import Preprocess
    from .radiograph import Radiograph

OOD_REASON = ("The image does not look like an AP pelvic radiograph of the kind the model was trained on "
              "(input-gate score {score:.2f}, limit {threshold:.2f}), so no diagnosis is given. Use a frontal "
              "(AP) pelvic radiograph, as the original file or a straight, sharp photo of the screen.")
CAUTION_REASON = ("The model's internal features for this image differ from those of its training images "
                  "(e.g. another hospital's equipment or processing): read the probability with caution.")
PHOTO_ISSUES = ("blur", "glare", "moire", "perspective", "crop")
IMAGE_ISSUES = ("low_contrast", "low_resolution")
SPREAD_STD = 0.2       # member std of P(AS) above which the members are said to disagree
SPREAD_CROSS = 0.3     # or: some member below threshold - 0.3 and another above threshold + 0.3


@dataclass(frozen=True)
class PhotoCheck:
    """Quality of a smartphone photo of a radiograph on a screen (and of any image's size and contrast).

    ``is_photo`` says whether the input looks like a photo rather than a digital radiograph,
    ``score`` is a quality score in [0, 1] (higher is better, None when not measured), ``issues``
    names what was found ("blur", "glare", "moire", "perspective", "crop", "low_contrast",
    "low_resolution"), ``advice`` says for each issue what to do (same order), ``measures`` holds the
    raw measurements (see :mod:`as_ai._photo` for their definitions and thresholds).
    """

    is_photo: bool = False
    score: float | None = None
    issues: list[str] = field(default_factory=list)
    advice: list[str] = field(default_factory=list)
    measures: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict."""
        return {"is_photo": bool(self.is_photo), "score": None if self.score is None else float(self.score),
                "issues": [str(i) for i in self.issues], "advice": [str(a) for a in self.advice],
                "measures": {str(k): float(v) for k, v in self.measures.items()}}


@dataclass(frozen=True)
class InputCheck:
    """Whether an input looks like the model's training data, and why not.

    ``in_distribution`` False makes the diagnosis abstain (label "indeterminate");
    ``score`` is the gate's out-of-distribution score (None when no gate ran; the largest of its parts'
    distance / limit ratios, so above 1 = refused); ``threshold`` the gate's limit (1.0; None when no
    gate ran); ``reasons`` are
    sentences for the user; ``photo`` is the photo-quality check (None when not run); ``exposure`` the
    exposure check (:mod:`as_ai.exposure`: inverted, nearly constant, clipped, far too bright or dark; any
    issue it finds refuses the image, None when not run).
    """

    in_distribution: bool = True
    score: float | None = None
    reasons: list[str] = field(default_factory=list)
    photo: PhotoCheck | None = None
    threshold: float | None = None
    exposure: ExposureCheck | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict."""
        d = asdict(self)
        d["in_distribution"] = bool(self.in_distribution)
        d["score"] = None if self.score is None else float(self.score)
        d["threshold"] = None if self.threshold is None else float(self.threshold)
        d["reasons"] = [str(r) for r in self.reasons]
        d["photo"] = None if self.photo is None else self.photo.to_dict()
        d["exposure"] = None if self.exposure is None else self.exposure.to_dict()
        return d


def may_be_camera_picture(meta: Mapping[str, Any] | None) -> bool:
    """Whether an image could be a camera picture, by its ``meta`` (from :func:`as_ai.load_radiograph`).

    A camera writes 8 bits per pixel; a deeper file or a DICOM comes from the modality or PACS.
    """
    meta = meta or {}
    return int(meta.get("bit_depth") or 8) <= 8 and meta.get("source_format") != "dicom"


def check_photo(pixels: np.ndarray, *, meta: Mapping[str, Any] | None = None,
                original_shape: tuple[int, int] | None = None) -> PhotoCheck:
    """Measure the photo quality of a grey image (H, W) in [0, 1] and say what to fix.

    Photo-specific issues (glare, moiré, perspective, crop) are reported only when the image looks
    like a photo (``is_photo``): EXIF rotation or colour in the original (``meta`` from
    :func:`as_ai.load_radiograph`), or a clear moiré or tilted screen edges; blur, very low
    resolution and low contrast are reported for any image. A file with more than 8 bits per pixel or a
    DICOM (``meta``'s ``bit_depth`` / ``source_format``) is never a camera picture: it gets only the
    measures for any image. ``original_shape`` is the image's size before any resizing
    (default: ``pixels.shape``).

    Raises:
        ValueError: ``pixels`` is not a 2-D array.

    Example:
        >>> check_photo(np.random.default_rng(0).random((600, 600), np.float32)).is_photo
        False
    """
    g = np.asarray(pixels, dtype=np.float32)
    if g.ndim != 2:
        raise ValueError(f"check_photo needs a grey image (H, W); got shape {g.shape}. Load it with "
                         "as_ai.load_radiograph first.")
    h, w = original_shape or g.shape
    meta = dict(meta or {})
    wg = _photo.work_image(np.clip(g, 0.0, 1.0))
    measures = {"blur": _photo.blur(wg), "low_contrast": _photo.contrast(wg), "low_resolution": float(min(h, w))}
    from_camera = may_be_camera_picture(meta)  # if not, the photo-only measures (the slow part) are skipped
    if from_camera:
        measures.update(glare=_photo.glare(wg), moire=_photo.moire(wg), perspective=_photo.perspective(wg),
                        crop=_photo.crop(wg))
    sev = {k: _photo.severity(k, v) for k, v in measures.items()}
    notes = " ".join(str(x) for x in meta.get("warnings", []))
    camera = bool(meta.get("exif_rotated") or "colour" in notes or meta.get("camera"))
    is_photo = from_camera and (camera or sev["moire"] >= 0.5 or sev["perspective"] >= 0.5)
    considered = (PHOTO_ISSUES if is_photo else ("blur",)) + IMAGE_ISSUES
    if sev["low_contrast"] >= 0.5:  # sharpness means nothing without contrast: report the contrast only
        considered = tuple(k for k in considered if k != "blur")
    issues = [k for k in considered if sev[k] >= 0.5]
    score = float(np.prod([1.0 - sev[k] for k in considered]))
    advice = [_photo.ADVICE[i] if is_photo or i != "blur" else _photo.ADVICE["blur_digital"] for i in issues]
    return PhotoCheck(is_photo=is_photo, score=score, issues=issues, advice=advice, measures=measures)


def image_checks(rg: "Radiograph", descriptor: bool, preprocess: "Preprocess | None" = None
                 ) -> tuple[PhotoCheck, np.ndarray | None, ExposureCheck]:
    """The photo check, (if asked) the gate's image descriptor and the exposure check, from one shrunk view.

    A photo of a screen gets no mid-tone check: its grey scale is the screen's and the camera's, and the
    photo check names what to fix.
    """
    view = rg.work_view
    photo = check_photo(view, meta=rg.meta, original_shape=rg.shape)
    exposure = check_exposure(view, pixels=rg.pixels, preprocess=None if photo.is_photo else preprocess)
    return photo, (image_descriptor(view) if descriptor else None), exposure


def spread_reasons(member_probs: Mapping[str, float], *, threshold: float = 0.5) -> list[str]:
    """A sentence when the ensemble's members disagree strongly, else nothing.

    Disagreement: the standard deviation of the members' P(AS) is above ``SPREAD_STD`` (0.2), or one
    member is clearly below the decision threshold and another clearly above it (by ``SPREAD_CROSS``).

    Example:
        >>> spread_reasons({"a": 0.05, "b": 0.95})[0][:34]
        "The ensemble's members disagree st"
    """
    if len(member_probs) < 2:
        return []
    p = np.array([float(v) for v in member_probs.values()])
    std = float(p.std())
    crossed = bool(p.min() < threshold - SPREAD_CROSS and p.max() > threshold + SPREAD_CROSS)
    if std <= SPREAD_STD and not crossed:
        return []
    lo_name = min(member_probs, key=lambda k: member_probs[k])
    hi_name = max(member_probs, key=lambda k: member_probs[k])
    return [f"The ensemble's members disagree strongly (P(AS) from {p.min():.2f} by {lo_name} to {p.max():.2f} "
            f"by {hi_name}, spread {std:.2f}): treat this result as uncertain and have an expert read the "
            "image."]


class InputGate:
    """Decide whether an image looks like the AP pelvic radiographs the ensemble was trained on.

    Two parts (see :mod:`as_ai._gate`): ``"image"`` scores a descriptor of the picture itself,
    ``"features"`` the ensemble's penultimate features. Each part's distance is divided by its limit
    (set on held-out images by :meth:`calibrate`); the gate's score is the larger ratio, and an image
    with a score above 1 (:attr:`threshold`) is refused.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> gate = InputGate.fit(features=rng.normal(size=(200, 16)))
        >>> _ = gate.calibrate(features=rng.normal(size=(100, 16)), quantile=1.0, margin=1.2)
        >>> bool(gate.accepts(rng.normal(size=(1, 16)))[0]), bool(gate.accepts(np.full((1, 16), 9.0))[0])
        (True, False)
    """

    threshold = 1.0

    def __init__(self, parts: Mapping[str, GateStats], *, info: Mapping[str, Any] | None = None) -> None:
        unknown = set(parts) - set(PARTS)
        if unknown or not parts:
            raise ValueError(f"gate parts must be some of {PARTS}, got {sorted(parts)}")
        self.parts = dict(parts)
        self.info = dict(info or {})

    @classmethod
    def fit(cls, *, features: np.ndarray | None = None, pixels: Sequence[np.ndarray] | None = None,
            descriptors: np.ndarray | None = None, feature_components: int = 16,
            image_components: int = 12, features_refuse: bool = False) -> "InputGate":
        """Fit the parts given: ``features`` (N, D) of training images and/or their grey ``pixels``
        (or their ``descriptors``, :func:`as_ai._gate.image_descriptor` rows, to save memory).

        With both, the features part is advisory unless ``features_refuse`` (see :mod:`as_ai._gate`)."""
        parts: dict[str, GateStats] = {}
        if pixels is not None or descriptors is not None:
            parts["image"] = fit_stats(_descriptors(pixels, descriptors), components=image_components)
        if features is not None:
            st = fit_stats(features, components=feature_components, residual_weight=0.5)
            parts["features"] = dataclasses.replace(st, refuses=features_refuse or "image" not in parts)
        return cls(parts)

    def distances(self, features: np.ndarray | None = None, *, pixels: Sequence[np.ndarray] | None = None,
                  descriptors: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Each part's distance divided by its limit (N,), for the inputs given."""
        out: dict[str, np.ndarray] = {}
        if features is not None and "features" in self.parts:
            st = self.parts["features"]
            f = np.asarray(features)
            if f.ndim == 1:
                f = f[None]
            if f.shape[1] != st.dim:
                raise ValueError(f"the input gate expects features of shape (N, {st.dim}); got {f.shape}. "
                                 "Was the gate fitted on this ensemble?")
            out["features"] = st.distance(f) / st.limit
        if (pixels is not None or descriptors is not None) and "image" in self.parts:
            st = self.parts["image"]
            out["image"] = st.distance(_descriptors(pixels, descriptors)) / st.limit
        return out

    def score(self, features: np.ndarray | None = None, *, pixels: Sequence[np.ndarray] | None = None,
              descriptors: np.ndarray | None = None) -> np.ndarray:
        """The gate's score per image: the largest ratio of the refusing parts (above 1 = refused)."""
        d = {k: v for k, v in self.distances(features, pixels=pixels, descriptors=descriptors).items()
             if self.parts[k].refuses}
        if not d:
            raise ValueError(f"nothing to score: give features= and/or pixels= (this gate has parts {list(self.parts)})")
        return np.max(np.stack(list(d.values())), axis=0)

    def accepts(self, features: np.ndarray | None = None, *, pixels: Sequence[np.ndarray] | None = None) -> np.ndarray:
        """Boolean per image: True where it looks like the training data."""
        return self.score(features, pixels=pixels) <= self.threshold

    def calibrate(self, *, features: np.ndarray | None = None, pixels: Sequence[np.ndarray] | None = None,
                  descriptors: np.ndarray | None = None, quantile: float = 1.0, margin: float = 1.25
                  ) -> dict[str, float]:
        """Set each part's limit to ``margin`` x the ``quantile`` of its distances on held-out images."""
        limits = {}
        for name, st in list(self.parts.items()):
            raw = dataclasses.replace(st, limit=1.0)
            self.parts[name] = raw
            image = name == "image"
            d = self.distances(None if image else features, pixels=pixels if image else None,
                               descriptors=descriptors if image else None)
            if name not in d:
                raise ValueError(f"calibrate needs held-out {'pixels=' if image else 'features='} for "
                                 f"the gate's {name!r} part")
            limits[name] = float(np.quantile(d[name], quantile) * margin)
            self.parts[name] = dataclasses.replace(st, limit=limits[name])
        held = self.score(features, pixels=pixels, descriptors=descriptors)
        self.info.update({"quantile": quantile, "margin": margin, "n_heldout": int(len(held)),
                          "heldout_abstain_rate": float((held > self.threshold).mean()), "limits": limits})
        return limits

    def check(self, features: np.ndarray | None = None, *, pixels: np.ndarray | None = None,
              descriptor: np.ndarray | None = None) -> tuple[bool, float, list[str]]:
        """(in_distribution, score, reasons) for one image's features (D,) and grey pixels (H, W)
        (or its ``descriptor``, :func:`as_ai._gate.image_descriptor` of them, when already computed)."""
        d = {k: float(v[0]) for k, v in self.distances(
            features, pixels=None if pixels is None or descriptor is not None else [pixels],
            descriptors=descriptor).items()}
        refusing = [v for k, v in d.items() if self.parts[k].refuses]
        if not refusing:
            return True, float("nan"), []
        score = max(refusing)
        if score <= self.threshold:
            caution = [k for k, v in d.items() if not self.parts[k].refuses and v > self.threshold]
            return True, score, ([CAUTION_REASON] if caution else [])
        reasons = [OOD_REASON.format(score=score, threshold=self.threshold)]
        if d.get("image", 0.0) > self.threshold:
            reasons.append("Its layout, brightness and texture are unlike pelvic radiographs (e.g. another body "
                           "part, a photo of something else, a screenshot, a blank or noisy image).")
        if d.get("features", 0.0) > self.threshold and self.parts["features"].refuses:
            reasons.append("The model's internal features for it are unlike those of every image it was "
                           "trained on, so its probability would not mean anything.")
        return False, score, reasons

    def save(self, folder: str | Path) -> dict[str, Any]:
        """Write ``input_gate.safetensors`` into ``folder``; return the ``as_ai.json["input_gate"]`` entry."""
        save_parts(self.parts, Path(folder) / GATE_FILE)
        return {"file": GATE_FILE, "method": METHOD, "threshold": self.threshold, "parts": {
            n: {"components": int(st.components.shape[0]), "dim": st.dim, "limit": st.limit,
                "residual_weight": st.residual_weight, "refuses": st.refuses} for n, st in self.parts.items()},
            **self.info}

    @classmethod
    def from_config(cls, folder: str | Path, entry: Mapping[str, Any] | None) -> "InputGate | None":
        """The gate described by ``as_ai.json["input_gate"]`` in a model folder, or None if it has none."""
        if not entry or "file" not in entry:
            return None
        return cls(load_parts(Path(folder) / entry["file"]), info=entry)


def _descriptors(pixels: Sequence[np.ndarray] | None, descriptors: np.ndarray | None = None) -> np.ndarray:
    if descriptors is not None:
        return np.asarray(descriptors, dtype=np.float32).reshape(-1, _gate.DESCRIPTOR_DIM)
    if isinstance(pixels, np.ndarray) and pixels.ndim == 2:
        pixels = [pixels]
    return np.stack([image_descriptor(p) for p in pixels])


def build_check(*, gate: InputGate | None, features: np.ndarray | None, photo: PhotoCheck | None,
                member_probs: Mapping[str, float] | None = None, threshold: float = 0.5,
                extra_reasons: list[str] | None = None, pixels: np.ndarray | None = None,
                descriptor: np.ndarray | None = None, exposure: ExposureCheck | None = None) -> InputCheck:
    """Assemble the :class:`InputCheck` of one image from the gate, the photo check and the spread.

    ``features`` are the image's penultimate features (D,), ``pixels`` its grey pixels (H, W) (the
    gate's image part needs them, or their ``descriptor`` when already computed), ``member_probs`` the
    members' P(AS) and ``threshold`` the decision threshold (for the spread sentence). An ``exposure``
    check with issues refuses the image, its advice first among the reasons.
    """
    reasons = list(extra_reasons or [])
    ok, score = True, None
    if exposure is not None and exposure.issues:
        ok = False
        reasons = list(exposure.advice) + reasons
    if gate is not None and (features is not None or pixels is not None or descriptor is not None):
        gate_ok, score, why = gate.check(features, pixels=pixels, descriptor=descriptor)
        ok = ok and gate_ok
        reasons += why
    if photo is not None and photo.issues:
        reasons += photo.advice
    if ok and member_probs:
        reasons += spread_reasons(member_probs, threshold=threshold)
    return InputCheck(in_distribution=ok, score=score, reasons=reasons, photo=photo,
                      threshold=None if gate is None else gate.threshold, exposure=exposure)


def no_gate_warning(model: str) -> None:
    """Warn that a model repository has no input gate, so nothing is refused."""
    warnings.warn(f"The diagnosis model {model} has no input gate (as_ai.json has no 'input_gate'): images "
                  "unlike its training data will not be refused. Fit one with python -m train.input_gate.",
                  NoInputGateWarning, stacklevel=3)


__all__ = ["PhotoCheck", "InputCheck", "InputGate", "check_photo", "may_be_camera_picture", "image_checks",
           "spread_reasons", "build_check"]
