"""One probability from two views of a radiograph: the whole-image members and the joint reader (issue #20).

The whole-image members (CNNs on the model's 224 px view of the pelvis) and the joint reader (both sacroiliac
joints found and graded 0-4 at native resolution, P(modified New York criterion) by the rule) look at
different evidence, so their errors differ where seeds of one network's do not. A :class:`CrossViewRule`
combines them: every whole-image member's own P(AS) and the reader's P(mNY) (the member named
:data:`JOINTS`) go through one of

* ``"mean"``: the mean of the members' probabilities;
* ``"auc_weighted"``: a mean weighted by each member's AUC above chance on the data the rule was fitted on;
* ``"stacking"``: a logistic regression on the members' logits (``bias + sum_i w_i logit(p_i)``), fitted on
  out-of-fold predictions;

then the rule's calibration and its threshold. Which rule, its weights, calibration and threshold are chosen
by cross-validation on held-out phantoms (``python -m train.cross_view``) and stored in the diagnosis
repository's ``as_ai.json["cross_view"]``; the :class:`~as_ai.diagnoser.Diagnoser` applies it whenever a joint
reader is attached. Without a reader the whole-image ensemble's own probability and threshold apply.

Example:
    >>> import numpy as np
    >>> rule = CrossViewRule("mean", ("a", "b", JOINTS), (1/3, 1/3, 1/3), threshold=0.5)
    >>> float(rule.probability(np.array([[0.9, 0.7]]), np.array([0.8]))[0])
    0.8
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from .ensemble import Calibration

JOINTS = "joints"  # the joint reader's name among the members
RULES = ("mean", "auc_weighted", "stacking")

__all__ = ["CrossViewRule", "JOINTS", "RULES", "logit"]


def logit(p: Any) -> np.ndarray:
    """log(p / (1 - p)) with p clipped to [1e-6, 1 - 1e-6] (float64)."""
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-6, 1 - 1e-6)
    return np.log(p) - np.log1p(-p)


@dataclass(frozen=True)
class CrossViewRule:
    """How the whole-image members' P(AS) and the joint reader's P(mNY) become one calibrated probability.

    Attributes:
        rule: ``"mean"``, ``"auc_weighted"`` or ``"stacking"`` (see the module's docstring).
        members: the member names in the order of ``weights``: the whole-image members, then :data:`JOINTS`.
        weights: per member: a weight on its probability (mean rules, summing to 1) or a coefficient on its
            logit (stacking).
        bias: the stacking intercept (0 for the mean rules).
        calibration: the map of the combined probability (stacking is fitted calibrated: ``none``).
        threshold: the decision threshold on the calibrated probability.
        metrics: what the fit measured (cross-validation of every rule, external evaluation), as written.
    """

    rule: str
    members: tuple[str, ...]
    weights: tuple[float, ...]
    bias: float = 0.0
    calibration: Calibration = field(default_factory=Calibration)
    threshold: float = 0.5
    metrics: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise ValueError(f"cross_view rule must be one of {RULES}, got {self.rule!r}")
        if not self.members or self.members[-1] != JOINTS or list(self.members).count(JOINTS) != 1:
            raise ValueError(f"cross_view members must end with {JOINTS!r} (the joint reader), got {list(self.members)}")
        if len(self.weights) != len(self.members):
            raise ValueError(f"cross_view has {len(self.members)} members but {len(self.weights)} weights")
        if not all(np.isfinite(w) for w in (*self.weights, self.bias)):
            raise ValueError("cross_view weights and bias must be finite numbers")
        if not 0.0 < float(self.threshold) < 1.0:
            raise ValueError(f"cross_view threshold must be in (0, 1), got {self.threshold!r}")

    @property
    def image_members(self) -> tuple[str, ...]:
        """The whole-image members' names, in the order :meth:`probability` takes their probabilities."""
        return self.members[:-1]

    def combined(self, image_probs: np.ndarray, joint_probs: np.ndarray) -> np.ndarray:
        """The uncalibrated combination for ``image_probs`` (N x whole-image members) and ``joint_probs`` (N)."""
        p = np.column_stack([np.asarray(image_probs, dtype=np.float64).reshape(len(joint_probs), -1),
                             np.asarray(joint_probs, dtype=np.float64)])
        if p.shape[1] != len(self.members):
            raise ValueError(f"expected probabilities of {len(self.members)} members, got {p.shape[1]}")
        w = np.asarray(self.weights, dtype=np.float64)
        if self.rule == "stacking":
            return 1.0 / (1.0 + np.exp(-(self.bias + logit(p) @ w)))
        return p @ w

    def probability(self, image_probs: np.ndarray, joint_probs: np.ndarray) -> np.ndarray:
        """Calibrated P(AS) from the whole-image members' and the joint reader's probabilities (float64, N)."""
        return self.calibration.apply(self.combined(image_probs, joint_probs))

    def applied(self, d: Any, joint_probability: float) -> Any:
        """The :class:`~as_ai.result.Diagnosis` ``d`` (whole-image members only) read across both views.

        ``probability``, ``threshold`` and the label follow this rule; ``members`` gains :data:`JOINTS` (the
        reader's P(mNY)) and ``spread`` covers it. An ``indeterminate`` label stays so.
        """
        image = np.array([[d.members[n] for n in self.image_members]])
        p = float(self.probability(image, np.array([joint_probability]))[0])
        members = {**d.members, JOINTS: float(joint_probability)}
        label = d.label if d.label == "indeterminate" else ("AS" if p >= self.threshold else "non-AS")
        return dataclasses.replace(d, probability=p, label=label, threshold=float(self.threshold), members=members,
                                   spread=float(np.std(list(members.values()))))

    def to_json(self) -> dict[str, Any]:
        """The ``as_ai.json["cross_view"]`` entry."""
        return {"rule": self.rule, "members": list(self.members), "weights": [float(w) for w in self.weights],
                "bias": float(self.bias), "calibration": self.calibration.to_dict(),
                "threshold": float(self.threshold), "metrics": dict(self.metrics)}

    @classmethod
    def from_json(cls, entry: Mapping[str, Any] | None, *, image_members: Sequence[str] | None = None
                  ) -> "CrossViewRule | None":
        """Read an ``as_ai.json["cross_view"]`` entry (None when absent), checked against the ensemble's
        ``image_members`` when given.

        Raises:
            ValueError: the entry is malformed or names other members than the ensemble has.
        """
        if not entry:
            return None
        if not isinstance(entry, Mapping):
            raise ValueError(f"cross_view must be an object, got {type(entry).__name__}")
        try:
            rule = cls(rule=str(entry["rule"]), members=tuple(str(m) for m in entry["members"]),
                       weights=tuple(float(w) for w in entry["weights"]), bias=float(entry.get("bias", 0.0)),
                       calibration=Calibration.from_dict(entry.get("calibration")),
                       threshold=float(entry["threshold"]), metrics=dict(entry.get("metrics") or {}))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"cross_view entry is incomplete or malformed ({type(exc).__name__}: {exc})") from exc
        if image_members is not None and sorted(rule.image_members) != sorted(image_members):
            raise ValueError(f"cross_view combines members {list(rule.image_members)} but the ensemble has "
                             f"{list(image_members)}")
        return rule
