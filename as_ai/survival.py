"""Survival statistics for risk groups: optimal cut-off, Kaplan–Meier cumulative risk, log-rank test.

The reference study sorts patients into high and low risk of surgery by cutting BASFI and BASDAI at
the value that maximises the (standardised) log-rank statistic — R's ``maxstat.test`` as called by
``survminer::surv_cutpoint``. :func:`optimal_cutpoint` reproduces that computation exactly (same
scores, same candidate set, same tie rule), so its cut-offs can be checked against R's published
outputs. The curves and the test of the resulting groups use lifelines.

Missing values: rows with a missing value (NaN/None) in any of the inputs are dropped before
computing, as R's ``na.omit`` does for these functions; results report how many rows were used.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd

__all__ = [
    "Cutpoint",
    "RiskCurve",
    "LogRankResult",
    "optimal_cutpoint",
    "cumulative_risk",
    "logrank",
    "split_groups",
    "logrank_scores",
]


# --------------------------------------------------------------------------------------------- results
@dataclass(frozen=True)
class Cutpoint:
    """The optimal cut-off of one variable against a survival outcome.

    ``candidates`` are every cut-off scanned (ascending) and ``statistics`` their standardised
    log-rank statistics; ``statistic`` is the maximum and ``cutpoint`` the first candidate attaining
    it. Patients with ``x <= cutpoint`` form the "low" group. ``n`` is the number of rows used,
    ``dropped`` the number removed for missing values.
    """

    cutpoint: float
    statistic: float
    candidates: np.ndarray = field(repr=False)
    statistics: np.ndarray = field(repr=False)
    minprop: float
    n: int
    variable: str | None = None
    dropped: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (arrays as lists)."""
        return {
            "variable": self.variable,
            "cutpoint": float(self.cutpoint),
            "statistic": float(self.statistic),
            "minprop": float(self.minprop),
            "n": int(self.n),
            "dropped": int(self.dropped),
            "candidates": [float(v) for v in self.candidates],
            "statistics": [float(v) for v in self.statistics],
        }


@dataclass(frozen=True)
class RiskCurve:
    """Kaplan–Meier cumulative risk ``1 − S(t)`` of one group, with a pointwise confidence band.

    ``time`` is ascending and starts at 0 unless a ``timeline`` was given; ``lower``/``upper`` are the
    band (lifelines' exponential Greenwood interval, transformed to the risk scale). ``n`` patients,
    ``events`` of them with an observed event.
    """

    group: str
    time: np.ndarray = field(repr=False)
    risk: np.ndarray = field(repr=False)
    lower: np.ndarray = field(repr=False)
    upper: np.ndarray = field(repr=False)
    n: int
    events: int
    alpha: float = 0.05

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (arrays as lists)."""
        return {
            "group": self.group,
            "n": int(self.n),
            "events": int(self.events),
            "alpha": float(self.alpha),
            "time": [float(v) for v in self.time],
            "risk": [float(v) for v in self.risk],
            "lower": [float(v) for v in self.lower],
            "upper": [float(v) for v in self.upper],
        }


@dataclass(frozen=True)
class LogRankResult:
    """Log-rank test of equal survival across groups (chi-square with ``df`` = groups − 1)."""

    statistic: float
    p_value: float
    df: int
    n: int = 0
    groups: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return {"statistic": float(self.statistic), "p_value": float(self.p_value), "df": int(self.df),
                "n": int(self.n), "groups": list(self.groups)}


# ------------------------------------------------------------------------------------------ validation
def _is_missing(a: np.ndarray) -> np.ndarray:
    return np.asarray(pd.isna(a), dtype=bool).reshape(len(a))


def _as_1d(name: str, value: Any) -> np.ndarray:
    arr = np.asarray(value)
    if arr.ndim == 0:
        raise ValueError(f"{name} must be a 1-D sequence of values, got a scalar {value!r}.")
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got an array of shape {arr.shape}; pass one column.")
    return arr


def _as_float(name: str, arr: np.ndarray) -> np.ndarray:
    try:
        out = arr.astype(float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numeric, got values of dtype {arr.dtype} ({exc}).") from None
    return out


def _prepare(columns: dict[str, Any], *, numeric: Sequence[str]) -> tuple[dict[str, np.ndarray], int]:
    """Check lengths, drop rows with any missing value, convert numeric columns. Returns (columns, dropped)."""
    arrays = {name: _as_1d(name, v) for name, v in columns.items()}
    lengths = {name: len(a) for name, a in arrays.items()}
    if len(set(lengths.values())) != 1:
        shown = ", ".join(f"{k}={v}" for k, v in lengths.items())
        raise ValueError(f"inputs must have the same length, got {shown}; pass one value per patient.")
    n_all = next(iter(lengths.values()))
    keep = np.ones(n_all, dtype=bool)
    for a in arrays.values():
        keep &= ~_is_missing(a)
    arrays = {name: a[keep] for name, a in arrays.items()}
    for name in numeric:
        arrays[name] = _as_float(name, arrays[name])
        if not np.all(np.isfinite(arrays[name])):
            raise ValueError(f"{name} must be finite, got {arrays[name][~np.isfinite(arrays[name])][:3].tolist()}.")
    return arrays, int(n_all - keep.sum())


def _check_survival(time: np.ndarray, event: np.ndarray) -> np.ndarray:
    if len(time) == 0:
        raise ValueError("no complete rows: time, event (and the other inputs) are empty or all missing.")
    if np.any(time < 0):
        raise ValueError(f"time must be >= 0, got {time[time < 0][:3].tolist()}.")
    bad = ~np.isin(event, (0.0, 1.0))
    if np.any(bad):
        raise ValueError(f"event must be 0 (censored) or 1 (event observed), got {np.unique(event[bad])[:5].tolist()}.")
    return event.astype(np.int64)


# ----------------------------------------------------------------------------------------- cut-points
def logrank_scores(time: Any, event: Any) -> np.ndarray:
    """Log-rank scores of survival data, as R's ``exactRankTests::cscores`` (used by maxstat).

    ``a_i = e_i − Σ_{j: t_j <= t_i} e_j / (N − r_j + 1)`` with ``r_j`` the number of observations with
    time <= t_j (tied times share the largest rank). Inputs must be complete (no missing values).

    Example:
        >>> logrank_scores([1, 2, 3], [1, 0, 1]).round(3).tolist()
        [0.667, -0.333, -0.333]
    """
    t = np.asarray(time, dtype=float)
    e = np.asarray(event, dtype=float)
    n = len(t)
    order = np.argsort(t, kind="stable")
    ts = t[order]
    r = np.searchsorted(ts, ts, side="right")  # rank with ties at their largest
    cum = np.cumsum(e[order] / (n - r + 1))
    scores = np.empty(n)
    scores[order] = e[order] - cum[r - 1]
    return scores


def optimal_cutpoint(time: Any, event: Any, x: Any, *, minprop: float = 0.1,
                     variable: str | None = None) -> Cutpoint:
    """Find the cut-off of ``x`` that best separates survival: the maximally selected log-rank statistic.

    Reproduces R's ``maxstat.test(Surv(time, event) ~ x, smethod="LogRank", minprop, maxprop=1-minprop)``
    as called by ``survminer::surv_cutpoint``: log-rank scores (:func:`logrank_scores`); candidates are
    the observed values of ``x`` whose low group (``x <= c``) holds between ``max(1, floor(N·minprop))``
    and ``floor(N·(1−minprop))`` patients; the statistic of each is the standardised sum of the low
    group's scores; the cut-off is the first candidate attaining the maximum. Rows with a missing
    value in ``time``, ``event`` or ``x`` are dropped first (as R does).

    Raises:
        ValueError: mismatched lengths, non-numeric or infinite values, negative times, events other
            than 0/1, ``minprop`` outside (0, 0.5), no events, or no candidate cut-off.

    Example:
        >>> cp = optimal_cutpoint([5, 8, 2, 9, 4, 7], [1, 0, 1, 0, 1, 0], [3, 1, 4, 1, 5, 2], minprop=0.2)
        >>> cp.cutpoint, split_groups([1, 4], cp.cutpoint).tolist()
        (2.0, ['low', 'high'])
    """
    if not (isinstance(minprop, (int, float)) and 0 < minprop < 0.5):
        raise ValueError(f"minprop must be a number in (0, 0.5), got {minprop!r}; survminer's default is 0.1.")
    if variable is None and isinstance(getattr(x, "name", None), str):
        variable = x.name
    cols, dropped = _prepare({"time": time, "event": event, "x": x}, numeric=("time", "event", "x"))
    t, xv = cols["time"], cols["x"]
    e = _check_survival(t, cols["event"])
    n = len(t)
    if e.sum() == 0:
        raise ValueError(f"no events among the {n} patients: every row is censored, so no cut-off can "
                         "separate survival. Check the event column (1 = event observed).")

    y = logrank_scores(t, e)
    order = np.argsort(xv, kind="stable")
    xs, ys = xv[order], y[order]
    values = np.unique(xs)
    m = np.searchsorted(xs, values, side="right")  # size of the low group for each candidate
    lo, hi = max(1, math.floor(n * minprop)), math.floor(n * (1 - minprop))
    ok = (m >= lo) & (m <= hi) & (m < n)
    if not np.any(ok):
        raise ValueError(f"no candidate cut-off of {variable or 'x'}: with {n} patients and minprop={minprop} "
                         f"each group needs between {lo} and {hi} patients, but x has only {len(values)} "
                         "distinct values. Use more data, a smaller minprop, or a variable with more values.")
    cand, mc = values[ok], m[ok]
    csum = np.cumsum(ys)[mc - 1]
    sy, sy2 = ys.sum(), np.sum(ys * ys)
    var = mc * (n - mc) / (n * n * (n - 1.0)) * (n * sy2 - sy * sy)
    stats = np.abs(csum - mc / n * sy) / np.sqrt(var)
    best = int(np.argmax(stats))
    return Cutpoint(cutpoint=float(cand[best]), statistic=float(stats[best]), candidates=cand,
                    statistics=stats, minprop=float(minprop), n=n, variable=variable, dropped=dropped)


def split_groups(x: Any, cutpoint: float | Cutpoint) -> np.ndarray:
    """Label each value "low" (``x <= cutpoint``) or "high", the survminer rule.

    Raises:
        ValueError: ``x`` holds missing or non-numeric values, or ``cutpoint`` is not finite.

    Example:
        >>> split_groups([1.0, 3.6, 4.2], 3.6).tolist()
        ['low', 'low', 'high']
    """
    c = float(cutpoint.cutpoint if isinstance(cutpoint, Cutpoint) else cutpoint)
    if not math.isfinite(c):
        raise ValueError(f"cutpoint must be a finite number, got {cutpoint!r}.")
    arr = _as_1d("x", x)
    if np.any(_is_missing(arr)):
        raise ValueError("x has missing values; a patient without a value has no risk group. "
                         "Impute or drop them first.")
    xv = _as_float("x", arr)
    return np.where(xv <= c, "low", "high")


# ------------------------------------------------------------------------------------- KM and log-rank
def _group_labels(groups: Any, n: int) -> np.ndarray:
    if groups is None:
        return np.full(n, "all", dtype=object)
    return _as_1d("groups", groups)


def cumulative_risk(time: Any, event: Any, *, groups: Any = None, alpha: float = 0.05,
                    timeline: Any = None) -> dict[str, RiskCurve]:
    """Kaplan–Meier cumulative risk ``1 − S(t)`` with a (1 − alpha) confidence band, per group.

    Uses lifelines' ``KaplanMeierFitter``; the band is its exponential Greenwood interval mapped to the
    risk scale (``lower = 1 − S_upper``). Without ``groups`` one curve keyed "all" is returned, else
    one per distinct group label (sorted, keys are ``str(label)``). ``timeline`` fixes the times at
    which every curve is evaluated (handy to plot or store groups on a common grid). Rows with a
    missing value are dropped.

    Raises:
        ValueError: mismatched lengths, bad times/events, ``alpha`` outside (0, 1), bad timeline.

    Example:
        >>> curves = cumulative_risk([1, 2, 3, 4], [1, 0, 1, 1], groups=["a", "a", "b", "b"])
        >>> sorted(curves), float(curves["b"].risk[-1])
        (['a', 'b'], 1.0)
    """
    from lifelines import KaplanMeierFitter

    if not (isinstance(alpha, (int, float)) and 0 < alpha < 1):
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}; 0.05 gives a 95% band.")
    n_in = len(_as_1d("time", time))
    cols, _ = _prepare({"time": time, "event": event, "groups": _group_labels(groups, n_in)},
                       numeric=("time", "event"))
    t = cols["time"]
    e = _check_survival(t, cols["event"])
    tl = None
    if timeline is not None:
        tl = _as_float("timeline", _as_1d("timeline", timeline))
        if len(tl) == 0 or not np.all(np.isfinite(tl)) or np.any(tl < 0) or np.any(np.diff(tl) <= 0):
            raise ValueError("timeline must be a non-empty, strictly increasing sequence of finite times >= 0.")
    g = cols["groups"]
    labels = sorted(set(g.tolist()), key=lambda v: str(v))
    out: dict[str, RiskCurve] = {}
    for label in labels:
        sel = g == label
        kmf = KaplanMeierFitter(alpha=alpha)
        kmf.fit(t[sel], e[sel], timeline=tl)
        surv = kmf.survival_function_.iloc[:, 0].to_numpy(dtype=float)
        ci = kmf.confidence_interval_survival_function_
        s_low, s_up = ci.iloc[:, 0].to_numpy(dtype=float), ci.iloc[:, 1].to_numpy(dtype=float)
        times = kmf.survival_function_.index.to_numpy(dtype=float)
        key = str(label)
        out[key] = RiskCurve(group=key, time=times, risk=1.0 - surv, lower=1.0 - s_up, upper=1.0 - s_low,
                             n=int(sel.sum()), events=int(e[sel].sum()), alpha=float(alpha))
    return out


def logrank(time: Any, event: Any, groups: Any) -> LogRankResult:
    """Log-rank test that survival is equal across ``groups`` (lifelines' ``multivariate_logrank_test``).

    With two groups this is the ordinary two-sample log-rank test (R ``survdiff``). Rows with a
    missing value are dropped.

    Raises:
        ValueError: mismatched lengths, bad times/events, or fewer than two groups.

    Example:
        >>> r = logrank([1, 2, 3, 4, 5, 6], [1, 1, 1, 1, 0, 1], ["a", "a", "a", "b", "b", "b"])
        >>> r.df, round(r.p_value, 3)
        (1, 0.025)
    """
    from lifelines.statistics import multivariate_logrank_test

    cols, _ = _prepare({"time": time, "event": event, "groups": groups}, numeric=("time", "event"))
    t = cols["time"]
    e = _check_survival(t, cols["event"])
    g = np.array([str(v) for v in cols["groups"]], dtype=object)
    labels = tuple(sorted(set(g.tolist())))
    if len(labels) < 2:
        raise ValueError(f"logrank needs at least two groups, got {list(labels)}; "
                         "a cut-off that puts everyone in one group cannot be tested.")
    res = multivariate_logrank_test(t, g, e)
    return LogRankResult(statistic=float(res.test_statistic), p_value=float(res.p_value),
                         df=int(res.degrees_of_freedom), n=len(t), groups=labels)
