"""``as_ai.imaging``: reading images and the model's view of them, under one name (as before round 2).

The code lives in modules named for each step: :mod:`as_ai.decoding` (``load_radiograph``: files, bytes,
arrays and DICOM in), :mod:`as_ai.radiograph` (the :class:`Radiograph` it returns) and
:mod:`as_ai.transforms` (``Preprocess`` and the model's view). This module re-exports their public names,
so ``from as_ai.imaging import load_radiograph, Preprocess`` keeps working.
"""
from __future__ import annotations

from .decoding import BIT_DEPTHS, PHOTOMETRIC, load_radiograph
from .radiograph import Radiograph
from .transforms import (IMAGENET_MEAN, IMAGENET_STD, Preprocess, eval_transform, soften_input, to_model_input,
                         train_transform)

__all__ = ["Radiograph", "load_radiograph", "BIT_DEPTHS", "PHOTOMETRIC", "Preprocess", "eval_transform",
           "train_transform", "to_model_input", "soften_input", "IMAGENET_MEAN", "IMAGENET_STD"]
