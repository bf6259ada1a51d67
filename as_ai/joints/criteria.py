"""The modified New York radiological criterion on per-side sacroiliitis grades, as pure functions.

A sacroiliac joint is graded 0 (normal) .. 4 (total ankylosis); the radiological criterion for ankylosing
spondylitis is met when **both sides are grade >= 2, or one side is grade >= 3** (van der Linden 1984).
:func:`mny_positive` applies it to integer grades; :func:`mny_probability` gives P(criterion met) exactly
from two per-side grade distributions (independent sides), so that a per-side grader's probabilities become
a probability of the criterion by the rule itself, never by a separately learned label.

Example::

    >>> mny_positive(2, 2), mny_positive(3, 0), mny_positive(2, 1)
    (True, True, False)
    >>> round(mny_probability([0, 0, 1, 0, 0], [0, 0.5, 0.5, 0, 0]), 6)
    0.5
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

GRADES = (0, 1, 2, 3, 4)
N_GRADES = len(GRADES)

__all__ = ["GRADES", "N_GRADES", "mny_positive", "mny_label", "mny_probability", "check_grade",
           "check_distribution"]


def check_grade(grade: object, *, name: str = "grade") -> int:
    """``grade`` as an int 0-4; ``ValueError`` naming ``name`` and the value otherwise."""
    if isinstance(grade, bool) or not isinstance(grade, (int, np.integer)) or not 0 <= int(grade) <= 4:
        raise ValueError(f"{name} must be an integer sacroiliitis grade 0-4 (modified New York), got {grade!r}")
    return int(grade)


def mny_positive(left: int, right: int) -> bool:
    """True when the grades meet the modified New York radiological criterion (both >= 2, or one >= 3).

    Raises:
        ValueError: a grade that is not an integer 0-4.
    """
    lo, hi = sorted((check_grade(left, name="left"), check_grade(right, name="right")))
    return hi >= 3 or lo >= 2


def mny_label(left: int, right: int) -> str:
    """``"AS"`` when :func:`mny_positive`, else ``"non-AS"`` (the labels the phantoms' readers give)."""
    return "AS" if mny_positive(left, right) else "non-AS"


def check_distribution(p: Sequence[float] | np.ndarray, *, name: str = "p", atol: float = 1e-4) -> np.ndarray:
    """``p`` as a float64 array ``(..., 5)`` of grade probabilities (non-negative, summing to 1 within ``atol``).

    Raises:
        ValueError: the last axis is not 5 long, a value is negative or not finite, or a row does not sum to 1.
    """
    a = np.asarray(p, dtype=np.float64)
    if a.ndim < 1 or a.shape[-1] != N_GRADES:
        raise ValueError(f"{name} must hold {N_GRADES} grade probabilities (grades 0-4) on its last axis, "
                         f"got shape {a.shape}")
    if not np.isfinite(a).all() or (a < 0).any():
        raise ValueError(f"{name} must be finite, non-negative probabilities, got {p!r}")
    sums = a.sum(axis=-1)
    if not np.allclose(sums, 1.0, atol=atol, rtol=0.0):
        raise ValueError(f"{name} must sum to 1 over the five grades, got sums {np.round(sums, 6).tolist()}")
    return a


def mny_probability(p_left: Sequence[float] | np.ndarray, p_right: Sequence[float] | np.ndarray
                    ) -> float | np.ndarray:
    """P(modified New York criterion met) from the two sides' grade distributions, sides independent.

    The criterion fails exactly when both sides are <= 2 and not both are 2, so
    ``P = 1 - (F_L(2) F_R(2) - p_L(2) p_R(2))`` with ``F(2) = p(0) + p(1) + p(2)``; this equals the sum of
    ``p_L(i) p_R(j)`` over the positive cells of the 5 x 5 table. Inputs may be batches ``(..., 5)`` (then an
    array is returned); one pair of length-5 vectors gives a float.

    Raises:
        ValueError: a distribution that is not five non-negative probabilities summing to 1.

    Example::

        >>> mny_probability([1, 0, 0, 0, 0], [0, 0, 0, 1, 0])
        1.0
    """
    pl = check_distribution(p_left, name="p_left")
    pr = check_distribution(p_right, name="p_right")
    fl, fr = pl[..., :3].sum(-1), pr[..., :3].sum(-1)
    negative = fl * fr - pl[..., 2] * pr[..., 2]
    out = np.clip(1.0 - negative, 0.0, 1.0)
    return float(out) if out.ndim == 0 else out
