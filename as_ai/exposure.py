"""Is the image's grey scale one the model can read? The exposure check behind every diagnosis.

The model's view standardises each crop's grey levels (:func:`as_ai.transforms.standardise_intensity`),
so gain, offset, gamma, bit depth and a narrower display window do not change its reading. What that
cannot undo is refused here, each with the fault named and what to do about it:

* ``inverted`` — bone dark and background bright (a MONOCHROME1 image read as MONOCHROME2, or a negative;
  named alone, since the other measures would only describe the inversion);
  measured as the border ring's mean brightness minus the centre's, once the image is windowed and its median
  brought to mid-grey (so a very dark or bright processing curve cannot pass for an inversion): a pelvis on
  a radiograph is bright in the middle and dark at the edges;
* ``near_constant`` — the 1st to 99th percentile span less than 2 % of the scale (nothing to read, e.g. a
  12-bit image declared as 16-bit, or a blank export);
* ``saturated`` — more than ``SATURATED_SHARE`` of the pixels at the image's top value, or more than
  ``SATURATED_CROP_SHARE`` of the region the model reads (the sacroiliac joints): a gain, offset or narrow
  window that clipped the bone white, where sclerosis shows. On 600 external phantoms a window narrowed to
  the 2nd-98th percentile clipped 0.2-4.8 % of that region; the 11 whose label changed had 2.3-4.3 %,
  clean ones at most 1.1 %;
* ``intensity_out_of_range`` — the mid-tone correction the view would need lies outside ``GAMMA_LIMITS``
  (far beyond the 0.7-1.4 gammas of exports and viewers the model is checked on).

Example:
    >>> import numpy as np
    >>> check_exposure(np.full((128, 128), 0.5, np.float32)).issues
    ['near_constant']
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["ExposureCheck", "check_exposure", "EXPOSURE_ISSUES"]

EXPOSURE_ISSUES = ("inverted", "near_constant", "saturated", "intensity_out_of_range")
MIN_SPAN = 0.02          # 1st-99th percentile span below this: nearly constant
INVERTED_ABOVE = 0.0     # border ring minus centre (windowed): above this the image looks inverted
SATURATED_SHARE = 0.05   # share of pixels at the top value above which the image is clipped
SATURATED_CROP_SHARE = 0.03  # the same, in the region the model's centre crop reads
GAMMA_LIMITS = (0.4, 2.5)
RING = 0.12              # border ring width, share of the short side

ADVICE = {
    "inverted": ("The image looks inverted (bone dark, background bright), as a MONOCHROME1 image shown as "
                 "MONOCHROME2 would. Use the original DICOM or an export with bone white (for an array: "
                 "load_radiograph(arr, photometric='MONOCHROME1'))."),
    "near_constant": ("The image is nearly uniform (its grey levels span {span:.1%} of the scale), so there is "
                      "nothing to read. Check the file, its window, and bits_stored= for raw arrays."),
    "saturated": ("{share:.0%} of the image ({crop_share:.0%} of the region around the sacroiliac joints that the "
                  "model reads) is clipped to white, so the detail of the bone is lost. Export it again with the "
                  "full window and without extra brightness or contrast (the original DICOM is best)."),
    "intensity_out_of_range": ("The image's brightness is far outside what the model was trained on (it would "
                               "need a mid-tone correction of gamma {gamma:.2f}). Export the original image "
                               "without a processing curve or window."),
}


@dataclass(frozen=True)
class ExposureCheck:
    """What the exposure check found: ``issues`` (some of ``EXPOSURE_ISSUES``), a sentence of advice for each
    (same order), and the raw ``measures`` (``span``, ``inversion``, ``saturated_share`` and, when the model
    standardises intensities, ``gamma``)."""

    issues: list[str] = field(default_factory=list)
    advice: list[str] = field(default_factory=list)
    measures: dict[str, float] = field(default_factory=dict)

    @property
    def readable(self) -> bool:
        """True when nothing was found that the model cannot read."""
        return not self.issues

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict."""
        return {"issues": list(self.issues), "advice": list(self.advice),
                "measures": {k: float(v) for k, v in self.measures.items()}}


def _centre_crop(view: np.ndarray, fraction: float) -> np.ndarray:
    h, w = view.shape
    side = max(1, int(round(min(h, w) * fraction)))
    top, left = (h - side) // 2, (w - side) // 2
    return view[top:top + side, left:left + side]


def check_exposure(view: np.ndarray, *, pixels: np.ndarray | None = None, preprocess: Any = None) -> ExposureCheck:
    """Check a grey image (``view``: H×W in [0, 1], e.g. ``Radiograph.work_view``) for what the model cannot read.

    ``pixels`` (the full-resolution image, default ``view``) is where clipping is counted; ``preprocess``
    (an :class:`as_ai.transforms.Preprocess`) adds the checks of the region its centre crop reads: clipping
    there, and the mid-tone correction when the model standardises intensities.
    """
    g = np.asarray(view, dtype=np.float32)
    full = g if pixels is None else np.asarray(pixels)
    lo, hi = (float(v) for v in np.percentile(g, [1.0, 99.0]))
    span = hi - lo
    measures: dict[str, float] = {"span": span}
    issues: list[str] = []
    if span < MIN_SPAN:
        issues.append("near_constant")
    else:
        z = np.clip((g - lo) / span, 0.0, 1.0)
        z = z ** (math.log(0.5) / math.log(min(max(float(np.median(z)), 1e-3), 0.999)))  # median at mid-grey
        b = max(1, int(RING * min(z.shape)))
        ring = np.concatenate([z[:b].ravel(), z[-b:].ravel(), z[b:-b, :b].ravel(), z[b:-b, -b:].ravel()])
        measures["inversion"] = float(ring.mean() - _centre_crop(z, 0.5).mean())
        if measures["inversion"] > INVERTED_ABOVE:
            issues.append("inverted")
    top = float(full.max()) if full.size else 0.0
    measures["saturated_share"] = float(np.count_nonzero(full >= top - 1e-6) / max(full.size, 1)) if top > 0 else 0.0
    fraction = preprocess.crop / preprocess.resize_short if preprocess is not None else 0.5
    measures["saturated_crop_share"] = (float(np.mean(_centre_crop(g, fraction) >= top * (1 - 1e-3))) if top > 0 else 0.0)
    if span >= MIN_SPAN and (measures["saturated_share"] > SATURATED_SHARE
                             or (preprocess is not None and measures["saturated_crop_share"] > SATURATED_CROP_SHARE)):
        issues.append("saturated")
    if preprocess is not None and preprocess.intensity == "window_gamma" and span >= MIN_SPAN:
        region = _centre_crop(g, preprocess.crop / preprocess.resize_short)
        wlo, whi, wmed = np.percentile(region, [*preprocess.intensity_window, 50.0])
        zmed = min(max((wmed - wlo) / max(whi - wlo, 1e-6), 1e-3), 0.999)
        measures["gamma"] = math.log(preprocess.intensity_reference[2]) / math.log(zmed)
        if not GAMMA_LIMITS[0] <= measures["gamma"] <= GAMMA_LIMITS[1]:
            issues.append("intensity_out_of_range")
    if "inverted" in issues:  # the other measures read an inverted image: the inversion is the fault to fix
        issues = ["inverted"]
    fill = {"span": span, "share": measures["saturated_share"], "crop_share": measures["saturated_crop_share"],
            "gamma": measures.get("gamma", 1.0)}
    return ExposureCheck(issues=issues, advice=[ADVICE[i].format(**fill) for i in issues], measures=measures)
