"""Agreement between raters: Cohen's kappa (unweighted, linear or quadratic weights) and its Landis & Koch band.

Used for reader studies (two radiologists, a model against a panel) and for ordinal grades such as the
sacroiliitis grade 0–4 (quadratic weights). Matches scikit-learn's ``cohen_kappa_score``.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ._metric_inputs import vector as _vector

__all__ = ["cohen_kappa", "Kappa", "kappa_band"]


_BANDS = ((0.20, "slight"), (0.40, "fair"), (0.60, "moderate"), (0.80, "substantial"), (1.0, "almost perfect"))


def kappa_band(kappa: float) -> str:
    """Landis & Koch (1977) agreement band of a kappa value.

    <0 poor, 0–0.20 slight, 0.21–0.40 fair, 0.41–0.60 moderate, 0.61–0.80 substantial,
    0.81–1 almost perfect (upper bounds inclusive).

    Example:
        >>> kappa_band(0.348), kappa_band(0.8013)
        ('fair', 'almost perfect')
    """
    if not math.isfinite(kappa):
        raise ValueError(f"kappa must be a finite number, got {kappa!r}.")
    if kappa < 0:
        return "poor"
    for upper, name in _BANDS:
        if kappa <= upper:
            return name
    return "almost perfect"


@dataclass(frozen=True)
class Kappa:
    """Cohen's kappa between two raters, its weighting and its Landis & Koch band."""

    kappa: float
    weights: str | None
    band: str
    n: int
    observed_agreement: float = float("nan")

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return asdict(self)


_WEIGHTS = (None, "linear", "quadratic")


def cohen_kappa(a: Any, b: Any, *, weights: str | None = None) -> Kappa:
    """Cohen's kappa of two raters' labels on the same cases, optionally weighted for ordered grades.

    ``kappa = 1 − Σ w·O / Σ w·E`` over the confusion matrix O and the chance matrix E (outer product of
    the marginals); ``w`` is 0 on the diagonal and 1 off it (unweighted), ``|i−j|`` (linear) or
    ``(i−j)²`` (quadratic), with i, j the positions of the labels in sorted order — as scikit-learn's
    ``cohen_kappa_score``. Use weights for ordinal grades such as the sacroiliitis grade 0–4.

    Raises:
        ValueError: mismatched lengths, missing labels, unknown ``weights``, or both raters giving one
            and the same label to every case (kappa undefined).

    Example:
        >>> k = cohen_kappa([0, 1, 2, 2, 1, 0], [0, 1, 2, 1, 1, 0])
        >>> round(k.kappa, 3), k.band
        (0.75, 'substantial')
    """
    if weights not in _WEIGHTS:
        raise ValueError(f"weights must be one of {_WEIGHTS}, got {weights!r}.")
    ra, rb = _vector("a", a), _vector("b", b)
    if len(ra) != len(rb):
        raise ValueError(f"a and b must rate the same cases: got {len(ra)} and {len(rb)} labels.")
    import pandas as pd

    if np.any(pd.isna(ra)) or np.any(pd.isna(rb)):
        raise ValueError("a or b has missing labels; kappa needs both raters' label for every case.")
    labels, codes = np.unique(np.concatenate([ra, rb]), return_inverse=True)
    k, n = len(labels), len(ra)
    obs = np.zeros((k, k))
    np.add.at(obs, (codes[:n], codes[n:]), 1.0)
    obs /= n
    exp = np.outer(obs.sum(axis=1), obs.sum(axis=0))
    i, j = np.indices((k, k))
    if weights is None:
        w = (i != j).astype(float)
    elif weights == "linear":
        w = np.abs(i - j).astype(float)
    else:
        w = (i - j).astype(float) ** 2
    den = float(np.sum(w * exp))
    if den == 0:
        raise ValueError(f"kappa is undefined: both raters gave every case the same label ({labels.tolist()}), "
                         "so chance agreement is 1. Report the raw agreement instead.")
    kappa = 1.0 - float(np.sum(w * obs)) / den
    return Kappa(kappa=kappa, weights=weights, band=kappa_band(kappa), n=n,
                 observed_agreement=float(np.trace(obs)))
