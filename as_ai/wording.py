"""Every sentence as-ai says to a clinician about a diagnosis, in one place, as plain text.

Findings "suggest"; nothing here states a diagnosis. :func:`finding` is the one sentence a
:class:`~as_ai.result.Diagnosis` carries (``Diagnosis.finding``, also in ``to_dict()``); :func:`headline`,
:func:`probability_sentence`, :func:`abstention_reasons` and :func:`input_check_sentence` are the pieces a
page or report shows around it (the Space's Markdown adds only emphasis and bullets); :func:`photo_caution`
and :func:`softness_caution` are the cautions a diagnosis of a photo or a blurred image carries, with the
model's own figures. Everything takes plain values or a Diagnosis and returns str, so a reader can change a
sentence here without touching the inference.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from .result import Diagnosis

HEAD_AS = "Suggests ankylosing spondylitis (radiographic sacroiliitis)"
HEAD_NON_AS = "No radiographic signs of ankylosing spondylitis found"
HEAD_ABSTAINED = "No finding: the model abstained"
NOT_LIKE_TRAINING = "the image does not look like the radiographs the model was trained on"
ABSTAINED_INTRO = "The input check did not accept this image, so no finding is given:"
UPLOAD_ADVICE = "Upload an AP (anteroposterior) pelvic radiograph, ideally the original DICOM or a PNG export."

__all__ = ["finding", "headline", "probability_sentence", "abstention_reasons", "input_check_sentence",
           "spread_sentence", "percent", "photo_caution", "softness_caution", "HEAD_AS", "HEAD_NON_AS",
           "HEAD_ABSTAINED", "NOT_LIKE_TRAINING", "ABSTAINED_INTRO", "UPLOAD_ADVICE"]


def percent(p: float) -> str:
    """A probability as a whole percentage: ``0.734`` -> ``"73 %"``."""
    return f"{100 * p:.0f} %"


def finding(d: "Diagnosis") -> str:
    """One sentence for clinicians; it describes findings, it never states a diagnosis (``Diagnosis.finding``)."""
    if d.label == "AS":
        return ("Findings suggest ankylosing spondylitis (radiographic sacroiliitis): "
                f"model probability {d.probability:.2f}, at or above its threshold {d.threshold:.2f}. "
                "Confirm with a radiologist or rheumatologist.")
    if d.label == "non-AS":
        return ("No radiographic signs of ankylosing spondylitis found by the model: "
                f"model probability {d.probability:.2f}, below its threshold {d.threshold:.2f}. "
                "This does not rule out axial spondyloarthritis (early disease may not show on radiographs).")
    why = "; ".join(d.check.reasons) or "the image does not look like the radiographs it was trained on"
    return f"The model gives no finding for this image: {why}."


def headline(d: "Diagnosis") -> str:
    """The result in a few words: :data:`HEAD_AS`, :data:`HEAD_NON_AS` or, when the model abstained,
    :data:`HEAD_ABSTAINED`."""
    if d.label == "AS":
        return HEAD_AS
    if d.label == "non-AS":
        return HEAD_NON_AS
    return HEAD_ABSTAINED


def probability_sentence(d: "Diagnosis") -> str:
    """The calibrated probability against the decision threshold, e.g. ``"Calibrated probability of AS 73 %
    (0.734), at or above the model's decision threshold 0.500."``"""
    rel = "at or above" if d.probability >= d.threshold else "below"
    return (f"Calibrated probability of AS {percent(d.probability)} ({d.probability:.3f}), {rel} the model's "
            f"decision threshold {d.threshold:.3f}.")


def abstention_reasons(d: "Diagnosis") -> list[str]:
    """Why the input check did not accept the image (to follow :data:`ABSTAINED_INTRO`); never empty."""
    return list(d.check.reasons) or [NOT_LIKE_TRAINING]


def input_check_sentence(d: "Diagnosis") -> str:
    """The input check's verdict and score, e.g. ``"Input check: passed (score 0.42, limit 1.00)."``"""
    c = d.check
    verdict = "passed" if c.in_distribution else "not passed, so the model abstains"
    score = (f" (score {c.score:.2f}, limit {c.threshold:.2f})" if c.score is not None and c.threshold is not None
             else " (no input gate in this model)" if c.score is None else f" (score {c.score:.2f})")
    return f"Input check: {verdict}{score}."


def spread_sentence(d: "Diagnosis") -> str:
    """How much the members disagree, e.g. ``"Spread (standard deviation across members): 0.012."``"""
    return f"Spread (standard deviation across members): {d.spread:.3f}."


def photo_caution(*, clean_auc: float | None = None, phone_auc: float | None = None,
                  phone_specificity: float | None = None, stretched: bool = False) -> str:
    """What a result on a photo of a screen carries: photos are read less reliably, with the model's own
    figures when its evaluation measured them (AUC on the original files and on phone photos of them, and the
    share of photos without AS read as non-AS), and whether the photo's contrast was stretched first."""
    over = (f", and only {100 * phone_specificity:.0f} % of photos without AS were read as non-AS"
            if phone_specificity is not None and phone_specificity < 0.8 else "")
    measured = (f" (in this model's evaluation: AUC {phone_auc:.2f} on phone photos against {clean_auc:.2f} on the "
                f"original files{over})") if clean_auc is not None and phone_auc is not None else ""
    stretch = (" Its contrast was stretched to the full range before reading, which undoes part of the "
               "screen's black level and glare.") if stretched else ""
    return ("This looks like a photo of a screen. The model reads photos less reliably than the original "
            f"file{measured}; use the original DICOM or PNG when you can.{stretch}")


def softness_caution(*, sigma: float, before: float, after: float) -> str:
    """What a result on a blurred image carries when the model's evaluation found that blurring its external
    radiographs by ``sigma`` px raised the mean P(AS) of those without AS from ``before`` to ``after``."""
    return ("This model reads softer images as more likely AS: in its evaluation, blurring the external "
            f"radiographs by {sigma:g} px raised the mean P(AS) of those without AS from "
            f"{before:.2f} to {after:.2f}. On a blurred "
            "image like this one, a finding of AS is less certain than its probability says.")
