"""``as_ai.imaging``: the old single address of reading images and of the model's view of them.

The code lives in modules named for each step: :mod:`as_ai.decoding` (``load_radiograph``: files, bytes,
arrays and DICOM in), :mod:`as_ai.radiograph` (the :class:`Radiograph` it returns), :mod:`as_ai.preprocess`
(``Preprocess``, the view's parameters) and :mod:`as_ai.transforms` (the view itself). This module only
re-exports their public names, so ``from as_ai.imaging import load_radiograph, Preprocess`` keeps working.
"""
from __future__ import annotations

from .decoding import BIT_DEPTHS, PHOTOMETRIC, load_radiograph
from .preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocess
from .radiograph import Radiograph
from .transforms import eval_transform, soften_input, to_model_input, train_transform

__all__ = ["Radiograph", "load_radiograph", "BIT_DEPTHS", "PHOTOMETRIC", "Preprocess", "eval_transform",
           "train_transform", "to_model_input", "soften_input", "IMAGENET_MEAN", "IMAGENET_STD"]
