"""What a diagnosis returns: :class:`Diagnosis`, the ensemble's answer about one radiograph.

It carries the calibrated ensemble probability, the label (``"AS"``, ``"non-AS"``, or :data:`INDETERMINATE`
when the input check made the model abstain), the threshold applied, every member's own probability and
their spread, the input check, an explanation when one was asked for, how the image was read and the model's
provenance; ``to_dict()`` is its JSON form. Its clinician-facing sentence comes from :mod:`as_ai.wording`.

``Diagnosis.members`` holds each member's **own** softmax P(AS), before the ensemble calibration
(the calibration is fitted on the combined probability, so it does not apply to single members);
``spread`` is the standard deviation of those member probabilities. ``probability`` is the combined
(mean or AUC-weighted mean) member probability mapped through the calibration, or, when the model has a
cross-view rule and a joint reader, that rule's (:mod:`as_ai.cross_view`). :func:`side_columns` flattens a
diagnosis' ``sides`` into the columns the CLI's CSV and ``train.evaluate``'s predictions share.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from . import wording
from .quality import InputCheck

INDETERMINATE = "indeterminate"
SIDE_FIELDS = ("found", "confidence", "grade", *(f"p{g}" for g in range(5)), "x0", "y0", "x1", "y1")
SIDE_COLUMNS = tuple(f"sij_{side}_{k}" for side in ("left", "right") for k in SIDE_FIELDS) + ("mny_probability",)

__all__ = ["Diagnosis", "INDETERMINATE", "with_sides", "side_columns", "SIDE_COLUMNS"]


@dataclass(frozen=True)
class Diagnosis:
    """What the ensemble says about one radiograph.

    Attributes:
        probability: calibrated ensemble P(AS) in [0, 1]; when the model has a cross-view rule and a joint
            reader (:mod:`as_ai.cross_view`), read across the whole-image members and both joints.
        label: ``"AS"`` (probability >= threshold), ``"non-AS"``, or ``"indeterminate"`` when the input
            check found the image unlike the training data (the model abstains; probability is still given).
        threshold: the decision threshold applied (from the model repository).
        members: member name -> that member's own (uncalibrated) softmax P(AS); with a cross-view rule,
            ``"joints"`` is the joint reader's P(modified New York criterion).
        spread: standard deviation of the member probabilities (disagreement between members).
        check: the :class:`~as_ai.quality.InputCheck` of the image.
        explanation: an ``as_ai.explain`` explanation when asked for, else None.
        model: provenance of the model ("org/name@<commit>" or "<path>@<content hash>").
        image: how the image was read (``Radiograph.to_dict()``: format, size, bits stored and whether
            inferred, photometric interpretation, the loader's warnings); never patient identifiers.
        sides: the joint reader's :class:`~as_ai.joints.JointReading` (both sacroiliac joints: box,
            localiser confidence, grade 0-4, grade probabilities, and P(modified New York criterion)), or
            None when no joint reader is configured. It changes ``probability`` only through the model's
            cross-view rule; a joint not found makes the label ``indeterminate``.

    Example:
        >>> from as_ai.quality import InputCheck
        >>> d = Diagnosis(0.9, "AS", 0.5, {"a": 0.9}, 0.0, InputCheck(), None, "demo@abc")
        >>> d.finding.startswith("Findings suggest ankylosing spondylitis")
        True
    """

    probability: float
    label: str
    threshold: float
    members: dict[str, float]
    spread: float
    check: InputCheck
    explanation: Any = None
    model: str = ""
    image: dict[str, Any] = dataclasses.field(default_factory=dict)
    sides: Any = None

    @property
    def finding(self) -> str:
        """One sentence for clinicians; it describes findings, it never states a diagnosis
        (:func:`as_ai.wording.finding`)."""
        return wording.finding(self)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict (explanation via its own ``to_dict()`` when it has one)."""
        expl = self.explanation
        if expl is not None and hasattr(expl, "to_dict"):
            expl = expl.to_dict()
        return {
            "probability": float(self.probability),
            "label": self.label,
            "finding": self.finding,
            "threshold": float(self.threshold),
            "members": {str(k): float(v) for k, v in self.members.items()},
            "spread": float(self.spread),
            "check": self.check.to_dict(),
            "explanation": expl,
            "image": dict(self.image),
            "model": self.model,
            "sides": None if self.sides is None else self.sides.to_dict(),
        }


def with_sides(d: Diagnosis, reading: Any) -> Diagnosis:
    """``d`` with the joint reader's ``reading`` attached; when a joint was not found plausibly (the
    localiser's confidence below the reader's threshold), the diagnosis abstains (``indeterminate``) and the
    reading's reasons are added to the check. ``probability`` is left as it is."""
    if getattr(reading, "found", True):
        return dataclasses.replace(d, sides=reading)
    check = dataclasses.replace(d.check, in_distribution=False, reasons=[*d.check.reasons, *reading.reasons])
    return dataclasses.replace(d, sides=reading, label=INDETERMINATE, check=check)


def side_columns(reading: Any) -> dict[str, Any]:
    """A :class:`~as_ai.joints.JointReading` as :data:`SIDE_COLUMNS` values, unformatted (``found`` a bool,
    ``grade`` an int, the rest floats; box corners in the image's pixels)."""
    out: dict[str, Any] = {}
    for s in reading.sides:
        values = (bool(s.found), float(s.confidence), int(s.grade), *map(float, s.probabilities), *map(float, s.box))
        out.update({f"sij_{s.side}_{k}": v for k, v in zip(SIDE_FIELDS, values)})
    out["mny_probability"] = float(reading.mny_probability)
    return out
