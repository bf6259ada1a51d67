"""The synthetic data engine: phantom AP pelvic radiographs, simulated readers, smartphone capture.

Everything produced here is synthetic and says so (``meta["synthetic"] = True``, dataset READMEs,
DICOM ImageComments). Modules: :mod:`.pelvis` (render / sample phantoms), :mod:`.readers`
(simulated radiologists), :mod:`.phone` (smartphone photos of a monitor), :mod:`.datasets`
(imagefolder datasets, ``as-ai synth pxr``), :mod:`.preview` (contact sheet).

Example::

    >>> from as_ai.synthetic import render
    >>> render(1, (3, 3), size=256).meta["true_label"]
    'AS'
"""
from __future__ import annotations

from importlib import import_module
from typing import Any

from .pelvis import Phantom, describe, render, sample
from .phone import photograph

_LAZY = {"write_pxr_dataset": ".datasets", "read_split": ".datasets", "contact_sheet": ".preview"}

__all__ = ["Phantom", "render", "sample", "describe", "photograph", "write_pxr_dataset", "read_split",
           "contact_sheet"]


def __getattr__(name: str) -> Any:
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'as_ai.synthetic' has no attribute {name!r}")
    return getattr(import_module(mod, __name__), name)
