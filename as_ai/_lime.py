"""The LIME core's old address: ``from as_ai import _lime`` is :mod:`as_ai.explain._lime_core`.

Kept so tests, benchmarks and ``train/explain.py`` that import ``as_ai._lime`` keep working; new code imports
``as_ai.explain._lime_core``. Nothing is defined here.
"""
from __future__ import annotations

from .explain._lime_core import (N_SEGMENTS, SLIC_COMPACTNESS, SLIC_SIGMA, BatchedLimeImageExplainer, Grids,
                                 MaskPredictor, StopRule, mean_fill, run_lime, segment_radiograph)

__all__ = ["N_SEGMENTS", "SLIC_COMPACTNESS", "SLIC_SIGMA", "BatchedLimeImageExplainer", "Grids", "MaskPredictor",
           "StopRule", "mean_fill", "run_lime", "segment_radiograph"]
