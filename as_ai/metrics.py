"""Evaluation metrics for the diagnosis model: AUC with DeLong CI and test, binary report, ECE (and, from\n:mod:`as_ai.agreement`, Cohen's kappa).

DeLong's method (DeLong, DeLong & Clarke-Pearson 1988) in the fast midrank form of Sun & Xu (2014),
reproducing R pROC's ``ci.auc`` / ``roc.test(method="delong")`` for direction "<": the positive
class is 1 and a higher score means "more likely positive". All functions validate their inputs
once and refuse missing values rather than silently dropping them.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.stats import norm

from ._metric_inputs import labels as _labels
from ._metric_inputs import level as _level
from ._metric_inputs import scores as _scores
from ._metric_inputs import two_classes as _two_classes
from .agreement import Kappa, cohen_kappa, kappa_band  # noqa: F401  (re-exported: one import for all metrics)

__all__ = [
    "auc_ci",
    "delong_placements",
    "delong_test",
    "DeLongResult",
    "binary_report",
    "BinaryReport",
    "expected_calibration_error",
    "cohen_kappa",
    "Kappa",
    "kappa_band",
]


# ---------------------------------------------------------------------------------------------- DeLong
def _midranks(a: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties given their average rank, O(n log n)."""
    order = np.argsort(a, kind="mergesort")
    s = a[order]
    # start/end positions of each run of equal values
    new = np.r_[True, s[1:] != s[:-1]]
    run_id = np.cumsum(new) - 1
    starts = np.flatnonzero(new)
    ends = np.r_[starts[1:], len(s)]
    mid = (starts + ends + 1) / 2.0  # average of ranks start+1 .. end
    ranks = np.empty(len(a))
    ranks[order] = mid[run_id]
    return ranks


def delong_placements(y: Any, score: Any) -> tuple[np.ndarray, np.ndarray]:
    """DeLong placement values ``(V10, V01)`` of the cases and the controls, in data order.

    ``V10[i]`` is the fraction of controls scored below case ``i`` (ties count ½); ``V01[j]`` the
    fraction of cases scored above control ``j``. Both average to the AUC (pROC's
    ``delongPlacements``).

    Raises:
        ValueError: bad labels or scores, or a class without cases.

    Example:
        >>> v10, v01 = delong_placements([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
        >>> v10.tolist(), v01.tolist()
        ([0.5, 1.0], [1.0, 0.5])
    """
    yy = _labels(y)
    s = _scores("score", score, len(yy))
    _two_classes(yy)
    return _placements(s[yy == 1], s[yy == 0])


def _placements(x: np.ndarray, yv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    m, n = len(x), len(yv)
    tz = _midranks(np.concatenate([x, yv]))
    v10 = (tz[:m] - _midranks(x)) / n
    v01 = 1.0 - (tz[m:] - _midranks(yv)) / m
    return v10, v01


def _delong_cov(y: np.ndarray, scores: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """AUCs and their DeLong covariance matrix for several scores of the same cases."""
    pos = y == 1
    v10s, v01s = zip(*(_placements(s[pos], s[~pos]) for s in scores))
    v10, v01 = np.vstack(v10s), np.vstack(v01s)
    aucs = v10.mean(axis=1)
    m, n = v10.shape[1], v01.shape[1]
    cov = np.atleast_2d(np.cov(v10, ddof=1)) / m + np.atleast_2d(np.cov(v01, ddof=1)) / n
    return aucs, cov


def auc_ci(y: Any, score: Any, level: float = 0.95) -> tuple[float, float, float]:
    """AUC of ``score`` for labels ``y`` with its DeLong confidence interval: ``(low, auc, high)``.

    Same numbers as R ``pROC::ci.auc(roc(y, score, direction="<"), method="delong")``: normal interval
    around the AUC with DeLong's variance, clipped to [0, 1].

    Raises:
        ValueError: mismatched lengths, labels other than 0/1, missing scores, fewer than two cases
            of either class, or ``level`` outside (0, 1).

    Example:
        >>> low, auc, high = auc_ci([0, 0, 1, 0, 1, 1], [0.1, 0.3, 0.35, 0.4, 0.8, 0.9])
        >>> round(auc, 3), low < auc < high
        (0.889, True)
    """
    lvl = _level(level)
    yy = _labels(y)
    s = _scores("score", score, len(yy))
    _two_classes(yy, minimum=2)
    aucs, cov = _delong_cov(yy, [s])
    auc, sd = float(aucs[0]), math.sqrt(max(float(cov[0, 0]), 0.0))
    q = norm.ppf(1 - (1 - lvl) / 2)
    return float(max(0.0, auc - q * sd)), auc, float(min(1.0, auc + q * sd))


@dataclass(frozen=True)
class DeLongResult:
    """Paired DeLong test of two AUCs on the same cases.

    ``z = (auc_a − auc_b) / sd``; ``p`` for ``alternative`` ("two-sided", "greater": a > b,
    "less": a < b); ``ci`` is the ``level`` interval of ``auc_a − auc_b``.
    """

    auc_a: float
    auc_b: float
    z: float
    p: float
    ci: tuple[float, float]
    level: float
    alternative: str = "two-sided"
    n: int = 0

    @property
    def difference(self) -> float:
        return self.auc_a - self.auc_b

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        d = asdict(self)
        d["ci"] = [float(v) for v in self.ci]
        d["difference"] = float(self.difference)
        return d


_ALTERNATIVES = ("two-sided", "greater", "less")


def delong_test(y: Any, score_a: Any, score_b: Any, *, level: float = 0.95,
                alternative: str = "two-sided") -> DeLongResult:
    """Compare two correlated AUCs (two scores of the same cases) with DeLong's paired test.

    Same numbers as R ``pROC::roc.test(roc_a, roc_b, method="delong", paired=TRUE)``. Use it to ask
    whether the ensemble beats its best member on one test set.

    Raises:
        ValueError: as :func:`auc_ci`, or an unknown ``alternative``.

    Example:
        >>> r = delong_test([0, 0, 1, 0, 1, 1], [0.1, 0.3, 0.35, 0.4, 0.8, 0.9], [0.2, 0.1, 0.3, 0.5, 0.4, 0.6])
        >>> round(r.auc_a, 3), round(r.auc_b, 3), 0 < r.p <= 1
        (0.889, 0.778, True)
    """
    lvl = _level(level)
    if alternative not in _ALTERNATIVES:
        raise ValueError(f"alternative must be one of {_ALTERNATIVES}, got {alternative!r}.")
    yy = _labels(y)
    a = _scores("score_a", score_a, len(yy))
    b = _scores("score_b", score_b, len(yy))
    _two_classes(yy, minimum=2)
    aucs, cov = _delong_cov(yy, [a, b])
    diff = float(aucs[0] - aucs[1])
    var = float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    sd = math.sqrt(max(var, 0.0))
    if sd > 0:
        z = diff / sd
    else:  # identical placements: no variance of the difference
        z = 0.0 if diff == 0 else math.copysign(math.inf, diff)
    if alternative == "two-sided":
        p = 2 * float(norm.sf(abs(z)))
    elif alternative == "greater":
        p = float(norm.sf(z))
    else:
        p = float(norm.cdf(z))
    q = norm.ppf(1 - (1 - lvl) / 2)
    return DeLongResult(auc_a=float(aucs[0]), auc_b=float(aucs[1]), z=float(z), p=min(p, 1.0),
                        ci=(float(diff - q * sd), float(diff + q * sd)), level=lvl, alternative=alternative, n=len(yy))


# ---------------------------------------------------------------------------------------- binary report
def _probabilities(prob: Any, n: int) -> np.ndarray:
    p = _scores("prob", prob, n)
    if np.any((p < 0) | (p > 1)):
        raise ValueError(f"prob must be probabilities in [0, 1], got values from {p.min():.4g} to {p.max():.4g}; "
                         "calibrate or apply a sigmoid to raw scores first.")
    return p


def _n_bins(n_bins: int) -> int:
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}.")
    return int(n_bins)


def expected_calibration_error(y: Any, prob: Any, *, n_bins: int = 10) -> float:
    """Expected calibration error: the case-weighted mean gap between confidence and frequency.

    Probabilities are put in ``n_bins`` equal-width bins ``(k/M, (k+1)/M]`` (0 falls in the first);
    ECE = Σ_bins (cases in bin / N) · |mean(y) − mean(prob)| (Naeini et al. 2015, Guo et al. 2017),
    here on the probability of the positive class.

    Raises:
        ValueError: bad labels, probabilities outside [0, 1] or missing, bad ``n_bins``.

    Example:
        >>> round(expected_calibration_error([0, 1, 1, 1], [0.2, 0.6, 0.8, 0.9], n_bins=2), 4)
        0.225
    """
    bins = _n_bins(n_bins)
    yy = _labels(y)
    p = _probabilities(prob, len(yy))
    idx = np.clip(np.ceil(p * bins).astype(np.int64) - 1, 0, bins - 1)
    count = np.bincount(idx, minlength=bins)
    sum_y = np.bincount(idx, weights=yy, minlength=bins)
    sum_p = np.bincount(idx, weights=p, minlength=bins)
    return float(np.sum(np.abs(sum_y - sum_p)) / len(yy))


@dataclass(frozen=True)
class BinaryReport:
    """Threshold metrics of a binary classifier (positive class 1, predicted positive if prob >= threshold).

    A ratio whose denominator is empty (e.g. precision when nothing is predicted positive) is ``None``,
    not a made-up 0; ``auc`` is ``None`` when ``y`` has a single class.
    """

    threshold: float
    n: int
    accuracy: float
    precision: float | None
    recall: float | None
    specificity: float | None
    f1: float | None
    ece: float
    confusion: tuple[int, int, int, int]
    auc: float | None = None

    @property
    def sensitivity(self) -> float | None:
        return self.recall

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form; ``confusion`` as {"tn", "fp", "fn", "tp"}."""
        d = asdict(self)
        d["confusion"] = dict(zip(("tn", "fp", "fn", "tp"), (int(v) for v in self.confusion)))
        d["sensitivity"] = self.recall
        return d


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def binary_report(y: Any, prob: Any, threshold: float = 0.5, *, n_bins: int = 10) -> BinaryReport:
    """Accuracy, precision, recall (sensitivity), specificity, F1, ECE, confusion matrix and AUC.

    Cases with ``prob >= threshold`` are predicted positive (the stored decision threshold of a model).

    Raises:
        ValueError: bad labels or probabilities, mismatched lengths, threshold outside [0, 1].

    Example:
        >>> r = binary_report([0, 0, 1, 1], [0.1, 0.6, 0.7, 0.9], threshold=0.5)
        >>> r.confusion, r.accuracy, r.precision, r.specificity
        ((1, 1, 0, 2), 0.75, 0.6666666666666666, 0.5)
    """
    if not (isinstance(threshold, (int, float)) and 0 <= threshold <= 1):
        raise ValueError(f"threshold must be a probability in [0, 1], got {threshold!r}.")
    yy = _labels(y)
    p = _probabilities(prob, len(yy))
    pred = p >= threshold
    pos = yy == 1
    tp, fn = int(np.sum(pred & pos)), int(np.sum(~pred & pos))
    fp, tn = int(np.sum(pred & ~pos)), int(np.sum(~pred & ~pos))
    auc = None
    if 0 < tp + fn < len(yy):
        v10, _ = _placements(p[pos], p[~pos])
        auc = float(v10.mean())
    return BinaryReport(
        threshold=float(threshold), n=len(yy), accuracy=(tp + tn) / len(yy),
        precision=_ratio(tp, tp + fp), recall=_ratio(tp, tp + fn), specificity=_ratio(tn, tn + fp),
        f1=_ratio(2 * tp, 2 * tp + fp + fn), ece=expected_calibration_error(yy, p, n_bins=n_bins),
        confusion=(tn, fp, fn, tp), auc=auc,
    )
