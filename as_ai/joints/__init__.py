"""Anatomy-aware reading (issue 20): find both sacroiliac joints, grade each 0-4, apply the modified New York rule.

- :mod:`as_ai.joints.criteria`: the rule on per-side grades and its exact probability from two distributions;
- :mod:`as_ai.joints.localiser`: :class:`JointLocaliser` (heatmap CNN on the whole image) -> :class:`JointBox`;
- :mod:`as_ai.joints.grader`: :class:`JointGrader` (ordinal CNN on each joint's native-resolution crop);
- :mod:`as_ai.joints.reader`: :class:`JointReader` -> :class:`JointReading`, and :func:`load_joint_reader`.

The bundled reader (``as_ai/demo_models/joints``) is trained on synthetic phantoms: research and demonstration
only, not for clinical use. Torch is imported with the submodules, not with ``as_ai``.
"""
from __future__ import annotations

from .criteria import mny_label, mny_positive, mny_probability
from .grader import JointGrader
from .localiser import JointBox, JointLocaliser
from .reader import JointReader, JointReading, SideReading, load_joint_reader

__all__ = ["mny_positive", "mny_label", "mny_probability", "JointBox", "JointLocaliser", "JointGrader",
           "JointReader", "JointReading", "SideReading", "load_joint_reader"]
