"""How a :class:`~as_ai.diagnoser.Diagnoser` carries a joint reader (private): :class:`JointReaderMixin`.

Kept apart from the diagnoser so that it stays one concept per module: the diagnoser's results gain ``sides``
(:func:`as_ai.result.with_sides`), and nothing else about them changes.
"""
from __future__ import annotations

import os
from concurrent.futures import Future
from typing import Any, Sequence

from ..result import Diagnosis, with_sides
from .reader import JointReader, reader_from_entry


class JointReaderMixin:
    """``attach_joint_reader`` and the step that adds a reading to a result; ``joint_reader`` is None by default."""

    joint_reader: JointReader | None = None

    def attach_joint_reader(self, reader: Any = "bundled", *, base: str | os.PathLike | None = None) -> Any:
        """Give every result ``sides`` (both sacroiliac joints found and graded, :mod:`as_ai.joints`).

        ``reader``: a :class:`~as_ai.joints.JointReader`, a reader folder (relative to ``base`` when not absolute),
        ``"bundled"`` (the phantom-trained demo reader; warns once) or None (stop reading joints). A joint not
        found plausibly makes a result ``indeterminate`` with the reason; ``probability`` never changes.
        Returns ``self``.

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
        return d if job is None else with_sides(d, job.result())
