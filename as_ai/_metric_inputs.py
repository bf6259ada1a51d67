"""Checks on what metric functions are given, shared by :mod:`as_ai.metrics` and :mod:`as_ai.agreement`:
one value per case, no missing values, 0/1 labels, finite scores; each error says what to pass instead."""
from __future__ import annotations

from typing import Any

import numpy as np


def vector(name: str, value: Any) -> np.ndarray:
    arr = np.asarray(value)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D sequence, got shape {arr.shape}; pass one value per case.")
    if len(arr) == 0:
        raise ValueError(f"{name} is empty; pass at least one value per class.")
    return arr


def labels(y: Any) -> np.ndarray:
    arr = vector("y", y)
    try:
        yf = arr.astype(float)
    except (TypeError, ValueError):
        raise ValueError(f"y must hold 0/1 (or bool) labels, got values such as {arr[:3].tolist()}; "
                         "encode the positive class as 1.") from None
    if np.any(np.isnan(yf)):
        raise ValueError("y has missing values; drop or label those cases first.")
    bad = ~np.isin(yf, (0.0, 1.0))
    if np.any(bad):
        raise ValueError(f"y must hold 0/1 labels (1 = positive), got {np.unique(arr[bad])[:5].tolist()}.")
    return yf.astype(np.int64)


def scores(name: str, value: Any, n: int) -> np.ndarray:
    arr = vector(name, value)
    if len(arr) != n:
        raise ValueError(f"{name} must have one value per label: got {len(arr)} values for {n} labels.")
    try:
        out = arr.astype(float)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be numeric, got values such as {arr[:3].tolist()}.") from None
    if not np.all(np.isfinite(out)):
        raise ValueError(f"{name} has missing or infinite values ({int((~np.isfinite(out)).sum())} of {n}); "
                         "scores must be finite numbers.")
    return out


def two_classes(y: np.ndarray, *, minimum: int = 1) -> None:
    n_pos, n_neg = int(y.sum()), int(len(y) - y.sum())
    if n_pos < minimum or n_neg < minimum:
        raise ValueError(f"y needs at least {minimum} positive (1) and {minimum} negative (0) case(s), got "
                         f"{n_pos} positive and {n_neg} negative; an AUC compares the two classes.")


def level(level: float) -> float:
    if not (isinstance(level, (int, float)) and 0 < level < 1):
        raise ValueError(f"level must be in (0, 1), got {level!r}; 0.95 gives a 95% interval.")
    return float(level)
