"""Simulated radiologists: graded readings with realistic disagreement.

Radiologists agree only moderately on modified New York grades: Cohen's kappa about 0.4-0.6 for
the five grades and about 0.7-0.8 for the binary AS criterion (Christiansen 2017; DESIR 2014).
A :class:`Reader` turns true per-side grades into read grades through a confusion model (most
errors are one grade, grades 1-2 are the most confused) plus a per-patient tendency to over- or
under-call both sides, so labels carry the noise real labels carry.

Example::

    >>> from as_ai.synthetic.readers import REFERENCE, new_york
    >>> g = REFERENCE.read((3, 2), seed=7)
    >>> new_york(*g) in ("AS", "non-AS")
    True
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# P(read grade | true grade) of an average reader (rows: true 0..4)
_BASE = np.array([
    [0.82, 0.14, 0.04, 0.00, 0.00],
    [0.20, 0.56, 0.20, 0.04, 0.00],
    [0.03, 0.20, 0.57, 0.18, 0.02],
    [0.00, 0.02, 0.13, 0.73, 0.12],
    [0.00, 0.00, 0.02, 0.16, 0.82],
])


def new_york(left: int, right: int) -> str:
    """The modified New York radiological criterion: AS if both sides >= 2 or one side >= 3."""
    if (left >= 2 and right >= 2) or max(left, right) >= 3:
        return "AS"
    return "non-AS"


@dataclass(frozen=True)
class Reader:
    """A simulated reader: ``bias`` > 0 over-calls (grades up), < 0 under-calls; ``noise`` scales errors."""

    name: str
    stream: int
    bias: float = 0.0
    noise: float = 1.0
    patient_sd: float = 0.3

    def confusion(self, shift: float = 0.0) -> np.ndarray:
        """The reader's P(read | true) for a patient-level tendency ``shift`` (in grades)."""
        M = _BASE.copy()
        eye = np.eye(5)
        M = eye + self.noise * (M - eye)
        M = np.clip(M, 0, None)
        b = self.bias + shift
        if b:
            # move probability mass one grade up (b > 0) or down (b < 0)
            up = np.zeros_like(M)
            up[:, 1:] = M[:, :-1]
            up[:, 4] += M[:, 4]
            dn = np.zeros_like(M)
            dn[:, :-1] = M[:, 1:]
            dn[:, 0] += M[:, 0]
            w = min(abs(b), 1.0)
            M = (1 - w) * M + w * (up if b > 0 else dn)
        return M / M.sum(axis=1, keepdims=True)

    def read(self, grades: tuple[int, int], *, seed: int) -> tuple[int, int]:
        """Read grades (left, right) of the patient with ``seed``; deterministic."""
        rng = np.random.default_rng([int(seed), 4, self.stream])
        shift = float(rng.normal(0.0, self.patient_sd))
        M = self.confusion(shift)
        out = []
        for g in grades:
            out.append(int(rng.choice(5, p=M[int(g)])))
        return out[0], out[1]

    def label(self, grades: tuple[int, int], *, seed: int) -> str:
        """The reader's AS / non-AS call for the patient with ``seed``."""
        return new_york(*self.read(grades, seed=seed))


REFERENCE = Reader("reference", 0)
EXPERT1 = Reader("expert1", 1, bias=0.10, noise=1.3)
EXPERT2 = Reader("expert2", 2, bias=-0.12, noise=1.35)
READERS = {r.name: r for r in (REFERENCE, EXPERT1, EXPERT2)}


def cohen_kappa(a, b) -> float:
    """Unweighted Cohen's kappa of two label sequences."""
    a = np.asarray(a); b = np.asarray(b)
    cats = np.unique(np.concatenate([a, b]))
    po = float(np.mean(a == b))
    pe = float(sum(np.mean(a == c) * np.mean(b == c) for c in cats))
    return (po - pe) / (1 - pe) if pe < 1 else 1.0
