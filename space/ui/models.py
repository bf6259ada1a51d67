"""The two models the Space serves, loaded once through the library's cache."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import as_ai


@dataclass
class Models:
    """The two loaded models and what the UI needs to describe them."""

    diagnoser: Any
    triager: Any
    explain_available: bool
    explain_note: str = ""

    @property
    def synthetic(self) -> bool:
        """True when any loaded model says it was trained on synthetic data (the bundled ones do)."""
        return bool(self.diagnoser.synthetic or self.triager.synthetic)


def _explain_status() -> tuple[bool, str]:
    try:
        import as_ai.explain  # noqa: F401
    except ImportError as exc:
        return False, f"Heatmaps are not available in this installation of as-ai ({exc})."
    return True, ""


def load_models(diagnosis_model: str | None = None, triage_model: str | None = None) -> Models:
    """Load the diagnosis and triage models once (arguments, else env variables, else the bundled demos).

    The library's :func:`as_ai.load_diagnoser` / :func:`as_ai.load_triager`, so ``as_ai.diagnose`` /
    ``as_ai.triage`` in the same process share the instances; a phantom-trained model warns once.

    Raises:
        ModelLoadError: a model cannot be found or verified (the Space does not start without both).
    """
    diagnoser = as_ai.load_diagnoser(diagnosis_model or None)
    triager = as_ai.load_triager(triage_model or None)
    ok, note = _explain_status()
    return Models(diagnoser=diagnoser, triager=triager, explain_available=ok, explain_note=note)
