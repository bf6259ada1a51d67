"""as-ai: open, checkable AI for ankylosing spondylitis (AS). Research use only.

Public API::

    import as_ai
    d = as_ai.diagnose("pelvis.png")            # CNN ensemble on an AP pelvic radiograph -> Diagnosis
    t = as_ai.triage({"age": 41, "crp": 12.0})  # BASFI / BASDAI and surgical-risk group -> Triage
    diagnoser = as_ai.load_diagnoser()          # the same cached models, for batches, explanations, a server
    triager = as_ai.load_triager()

The bundled models are trained on synthetic phantoms and are for demonstration only.
Heavy modules (torch, scikit-learn) are imported on first use, so ``import as_ai`` stays light.
"""
from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from .errors import (
    AsAiError,
    AsAiWarning,
    InvalidImageError,
    InvalidPatientError,
    ModelLoadError,
    NoInputGateWarning,
    SyntheticModelWarning,
    UntrustedModelError,
)

__version__ = "0.1.0"

_LAZY = {
    "diagnose": "as_ai.diagnosis",
    "load_diagnoser": "as_ai.diagnosis",
    "Diagnoser": "as_ai.diagnoser",
    "Diagnosis": "as_ai.result",
    "triage": "as_ai.clinical",
    "load_triager": "as_ai.clinical",
    "Triager": "as_ai.clinical",
    "Triage": "as_ai.clinical",
    "load_radiograph": "as_ai.decoding",
    "Radiograph": "as_ai.radiograph",
    "clear_cache": "as_ai.hub",
}

__all__ = [
    "diagnose", "load_diagnoser", "Diagnoser", "Diagnosis", "triage", "load_triager", "Triager", "Triage",
    "load_radiograph", "Radiograph",
    "clear_cache", "AsAiError", "InvalidImageError", "InvalidPatientError", "ModelLoadError",
    "UntrustedModelError", "AsAiWarning", "SyntheticModelWarning", "NoInputGateWarning", "__version__",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'as_ai' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # pragma: no cover
    from .clinical import Triage, Triager, load_triager, triage
    from .decoding import load_radiograph
    from .diagnoser import Diagnoser
    from .diagnosis import diagnose, load_diagnoser
    from .hub import clear_cache
    from .radiograph import Radiograph
    from .result import Diagnosis
