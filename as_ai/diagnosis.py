"""Diagnosing a radiograph in one call: :func:`diagnose` and :func:`load_diagnoser`, with the process's model cache.

``as_ai.diagnose(src)`` loads the diagnosis model once per (model, revision) -- the one piece of module
state, :func:`as_ai.hub.load_cached` -- warns once when that model was trained on synthetic phantoms, and
returns the :class:`~as_ai.result.Diagnosis` of one image; :func:`load_diagnoser` hands out the same cached
:class:`~as_ai.diagnoser.Diagnoser` for batches, explanations or a server. The class lives in
:mod:`as_ai.diagnoser`, the result in :mod:`as_ai.result`; their names are importable from here as well
(``from as_ai.diagnosis import Diagnoser, Diagnosis``), as they were when all of it lived in this module.
"""
from __future__ import annotations

import os
from typing import Any

from . import hub
from .diagnoser import EXPLAIN_METHODS, LABELS, SOFTNESS_CAUTION_RISE, Diagnoser, explain_function
from .result import INDETERMINATE, Diagnosis

__all__ = ["diagnose", "load_diagnoser", "Diagnoser", "Diagnosis", "LABELS", "EXPLAIN_METHODS", "INDETERMINATE",
           "SOFTNESS_CAUTION_RISE"]


def load_diagnoser(model: str | os.PathLike | None = None, revision: str | None = None) -> Diagnoser:
    """The :class:`Diagnoser` for (``model``, ``revision``), loaded once per process and kept.

    ``model=None`` uses ``AS_AI_DIAGNOSIS_MODEL`` or else the bundled phantom-trained demo ensemble,
    which warns once (:class:`~as_ai.errors.SyntheticModelWarning`) that it is not for clinical use.
    :func:`diagnose` uses the same instance; :func:`as_ai.clear_cache` forgets it.

    Raises:
        ModelLoadError: the model cannot be found or verified.

    Example:
        >>> import as_ai, warnings
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore")
        ...     d = as_ai.load_diagnoser()
        >>> d is as_ai.load_diagnoser(), d.labels
        (True, ('non-AS', 'AS'))
    """
    return hub.load_cached("diagnosis", model, revision, Diagnoser.from_pretrained)


def diagnose(src: Any, *, model: str | os.PathLike | None = None, revision: str | None = None,
             explain: str | None = None) -> Diagnosis:
    """Diagnose one radiograph with the cached :class:`Diagnoser` of :func:`load_diagnoser`.

    ``model=None`` uses ``AS_AI_DIAGNOSIS_MODEL`` or else the bundled phantom-trained demo ensemble,
    which warns once (:class:`~as_ai.errors.SyntheticModelWarning`) that it is not for clinical use.
    Loaded models are kept per (model, revision); :func:`as_ai.clear_cache` forgets them.

    Raises:
        InvalidImageError: ``src`` cannot be read as a radiograph.
        ModelLoadError: the model cannot be found or verified.
        ValueError: unknown ``explain`` method.

    Example:
        >>> import as_ai, numpy as np, warnings
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore")
        ...     d = as_ai.diagnose(np.zeros((256, 256), np.uint8))
        >>> 0.0 <= d.probability <= 1.0
        True
    """
    explain_function(explain)  # fail fast, before loading anything
    # load_diagnoser's one line, called from here so that the demo warning names the caller of diagnose()
    diagnoser = hub.load_cached("diagnosis", model, revision, Diagnoser.from_pretrained)
    return diagnoser(src, explain=explain)
