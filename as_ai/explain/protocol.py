"""What an explanation needs from a diagnoser: the :class:`Explainable` protocol, and the two ways it is read.

The explanation methods never import :mod:`as_ai.diagnoser` (or :mod:`as_ai.diagnosis`); they take any object
with these public members (a :class:`~as_ai.diagnoser.Diagnoser` has them all), so the dependency runs one way
only: ``as_ai.diagnoser`` imports ``as_ai.explain`` on request, never the reverse. :func:`ensemble_view` lists the
members with their weights and input sizes next to the view each size reads; :func:`read_view` gives an
image as the members read it.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Protocol, Sequence, runtime_checkable

from ..decoding import load_radiograph
from ..preprocess import Preprocess
from ..radiograph import Radiograph

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import torch

    from ..ensemble import Calibration, Ensemble

__all__ = ["Explainable", "Member", "ensemble_view", "read_view"]

Member = tuple[str, Any, float, int]   # (name, torch module, ensemble weight, input size)


@runtime_checkable
class Explainable(Protocol):
    """The public members of a diagnoser that Grad-CAM, LIME, NormLIME and the faithfulness checks use."""

    ensemble: "Ensemble"            # the members (``items()``, ``input_sizes``, ``sizes``; eval/train mode)
    calibration: "Calibration"      # applied to the combined probability (the scoring copy needs it)

    @property
    def preprocess_by_size(self) -> dict[int, Preprocess]:
        """The view each member input size reads."""

    @property
    def device(self) -> "torch.device":
        """Where the members run."""

    def model_views(self, images: Sequence[Radiograph | "np.ndarray"], photos: Sequence[Any] | None = None
                    ) -> list[Radiograph]:
        """The radiographs as the members read them (a photo of a screen stretched when the model says so)."""

    def model_input(self, images: Sequence[Radiograph | "np.ndarray"]) -> dict[int, "torch.Tensor"]:
        """One normalised batch per member input size."""

    def predict_tensor(self, x: "torch.Tensor | Mapping[int, torch.Tensor]"
                       ) -> tuple["torch.Tensor", "torch.Tensor"]:
        """(calibrated ensemble P(AS), member P(AS)) of preprocessed input, with gradients when enabled."""

    def predict_proba(self, images: Sequence[Any], *, batch_size: int = 16) -> "np.ndarray":
        """Calibrated P(AS) of many images."""


def ensemble_view(diagnoser: Explainable) -> tuple[list[Member], dict[int, Preprocess]]:
    """Members as (name, module, weight, input size) and the preprocessing of each input size."""
    ens = diagnoser.ensemble
    members = [(name, module, float(w), ens.input_sizes[name]) for name, module, w in ens.items()]
    return members, diagnoser.preprocess_by_size


def read_view(diagnoser: Explainable, image: Any) -> Radiograph:
    """The image as the members read it (``model_views``: a photo stretched when the model says so)."""
    return diagnoser.model_views([load_radiograph(image)])[0]
