"""How a :class:`~as_ai.diagnoser.Diagnoser` carries a joint reader (private): :class:`JointReaderMixin`.

Kept apart from the diagnoser so that it stays one concept per module: the diagnoser's results gain ``sides``
(:func:`as_ai.result.with_sides`) and, when the model has a cross-view rule (:mod:`as_ai.cross_view`), the
probability read across both views; saving writes the reader into the repository beside the members.
"""
from __future__ import annotations

import os
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Sequence

from ..cross_view import CrossViewRule
from ..result import Diagnosis, with_sides
from .reader import CONFIG_NAME, JointReader, reader_from_entry

READER_FOLDER = "joints"  # where save_pretrained writes the reader inside a diagnosis repository


class JointReaderMixin:
    """``attach_joint_reader`` and the step that adds a reading to a result; ``joint_reader`` is None by default."""

    joint_reader: JointReader | None = None
    cross_view: CrossViewRule | None = None

    def attach_joint_reader(self, reader: Any = "bundled", *, base: str | os.PathLike | None = None) -> Any:
        """Give every result ``sides`` (both sacroiliac joints found and graded, :mod:`as_ai.joints`).

        ``reader``: a :class:`~as_ai.joints.JointReader`, a reader folder (relative to ``base`` when not absolute),
        ``"bundled"`` (the phantom-trained demo reader; warns once) or None (stop reading joints). A joint not
        found plausibly makes a result ``indeterminate`` with the reason. When the model has a cross-view rule
        (``cross_view``), ``probability`` and the label are the rule's, read from both views; otherwise, and
        always without a reader, they are the whole-image ensemble's. Returns ``self``.

        Raises:
            ModelLoadError: the folder is not a valid joint reader.
        """
        self.joint_reader = reader_from_entry(reader, base=base)
        return self

    def _read_joints(self, images: Sequence[Any]) -> list[Future | None]:
        """Start reading each image's joints on the diagnoser's worker threads (None each without a reader)."""
        if self.joint_reader is None:
            return [None] * len(images)
        pool = self._executor()  # type: ignore[attr-defined]
        return [pool.submit(self.joint_reader, im) for im in images]

    def _with_sides(self, d: Diagnosis, job: Future | None) -> Diagnosis:
        if job is None:
            return d
        reading = job.result()
        if self.cross_view is not None:
            d = self.cross_view.applied(d, reading.mny_probability)
        return with_sides(d, reading)

    def _save_joint_reader(self, folder: Path) -> list[str]:
        """Write the attached reader to ``folder/joints`` (so a pushed repository carries it) and return its
        files, relative to ``folder``, for the checksums; nothing without a reader."""
        if self.joint_reader is None:
            return []
        sub = folder / READER_FOLDER
        self.joint_reader.save(sub)
        return [f"{READER_FOLDER}/{CONFIG_NAME}", *(f"{READER_FOLDER}/{f}" for f in self.joint_reader.config["files"])]
