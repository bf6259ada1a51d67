"""Read both sacroiliac joints of a radiograph: :class:`JointReader` -> :class:`JointReading`.

The reader finds the two joints (:class:`~as_ai.joints.localiser.JointLocaliser`), grades each from its
native-resolution crop (:class:`~as_ai.joints.grader.JointGrader`) and combines the two grade distributions
into P(modified New York criterion met) by the rule (:func:`~as_ai.joints.criteria.mny_probability`).

A reader folder holds ``joints.json`` (kind, the files with their sha256, the confidence below which a joint
is "not found", provenance and measured figures), the localiser's and the grader's safetensors + JSON, and a
model card. :func:`load_joint_reader` with no path reads the bundled phantom-trained reader
(``as_ai/demo_models/joints``) and warns once that it is not for clinical use.

Example::

    >>> import warnings, numpy as np
    >>> from as_ai.synthetic import pelvis
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     reader = load_joint_reader()
    >>> r = reader(pelvis.render(7, (3, 3), size=384).image)
    >>> [s.side for s in r.sides], 0.0 <= r.mny_probability <= 1.0
    (['left', 'right'], True)
"""
from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..decoding import load_radiograph
from ..errors import ModelLoadError, SyntheticModelWarning
from ..hub import DEMO_DIR, sha256_file
from .criteria import mny_probability
from .grader import JointGrader
from .localiser import SIDES, JointLocaliser

CONFIG_NAME = "joints.json"
DEFAULT_PATH = DEMO_DIR / "joints"
_warned: set[str] = set()

__all__ = ["SideReading", "JointReading", "JointReader", "load_joint_reader", "reader_from_entry", "DEFAULT_PATH"]


@dataclass(frozen=True)
class SideReading:
    """One sacroiliac joint: where it is, how sure the localiser is, and its modified New York grade.

    Attributes:
        side: ``"left"`` / ``"right"``, the patient's (left is on the image's right).
        box: (x0, y0, x1, y1) in the image's pixels.
        confidence: the localiser's confidence that a joint is there, in [0, 1].
        found: ``confidence`` >= the reader's ``min_confidence``.
        grade: the most probable grade 0-4.
        probabilities: P(grade = 0..4), calibrated on held-out phantom crops.
    """

    side: str
    box: tuple[float, float, float, float]
    confidence: float
    found: bool
    grade: int
    probabilities: tuple[float, float, float, float, float]

    def to_dict(self) -> dict[str, Any]:
        return {"side": self.side, "box": [round(float(v), 2) for v in self.box],
                "confidence": float(self.confidence), "found": bool(self.found), "grade": int(self.grade),
                "probabilities": [float(p) for p in self.probabilities]}


@dataclass(frozen=True)
class JointReading:
    """Both joints of one radiograph and what the rule makes of them.

    Attributes:
        sides: (left, right) :class:`SideReading`.
        mny_probability: P(both grades >= 2 or one >= 3) from the two distributions (sides independent).
        found: both joints found (confidence >= ``min_confidence``); when False the grades are not to be
            trusted and a diagnosis is indeterminate.
        min_confidence: the reader's threshold on the localiser's confidence.
        model: where the reader came from ("<path>@<sha256 of joints.json, 12 chars>").
        synthetic: the reader was trained on synthetic phantoms (not for clinical use).
    """

    sides: tuple[SideReading, SideReading]
    mny_probability: float
    found: bool
    min_confidence: float
    model: str = ""
    synthetic: bool = True
    reasons: tuple[str, ...] = field(default=())

    def side(self, name: str) -> SideReading:
        """The reading of side ``name`` (``"left"`` or ``"right"``)."""
        for s in self.sides:
            if s.side == name:
                return s
        raise ValueError(f"side must be one of {SIDES}, got {name!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"sides": {s.side: s.to_dict() for s in self.sides}, "mny_probability": float(self.mny_probability),
                "found": bool(self.found), "min_confidence": float(self.min_confidence),
                "reasons": list(self.reasons), "model": self.model, "synthetic": bool(self.synthetic)}


class JointReader:
    """Localiser + grader + the rule: ``reader(image) -> JointReading``.

    ``image`` is anything :func:`as_ai.load_radiograph` accepts (path, bytes, numpy array, PIL image,
    Radiograph); it is decoded once and both views are made from the same Radiograph.

    Raises (when called):
        InvalidImageError: the input cannot be read as an image.
    """

    def __init__(self, localiser: JointLocaliser, grader: JointGrader, *, min_confidence: float = 0.3,
                 config: dict[str, Any] | None = None, provenance: str = "unsaved") -> None:
        if not 0.0 <= float(min_confidence) < 1.0:
            raise ValueError(f"min_confidence must be in [0, 1), got {min_confidence!r}")
        self.localiser, self.grader = localiser, grader
        self.min_confidence = float(min_confidence)
        self.config = dict(config or {})
        self.provenance = provenance

    @property
    def synthetic(self) -> bool:
        return bool(self.config.get("training", {}).get("synthetic", True))

    def __call__(self, image: Any) -> JointReading:
        rg = load_radiograph(image)
        boxes = self.localiser(rg)
        probs = self.grader(rg.pixels, [b.box for b in boxes], [b.side for b in boxes])
        sides, reasons = [], []
        for b, p in zip(boxes, probs):
            found = b.confidence >= self.min_confidence
            if not found:
                reasons.append(f"the {b.side} sacroiliac joint was not found plausibly (localiser confidence "
                               f"{b.confidence:.2f} < {self.min_confidence:.2f}): is this an AP pelvic radiograph "
                               "with both joints in view?")
            sides.append(SideReading(b.side, tuple(float(v) for v in b.box), float(b.confidence), found,
                                     int(np.argmax(p)), tuple(float(v) for v in p)))
        return JointReading(sides=(sides[0], sides[1]), mny_probability=float(mny_probability(probs[0], probs[1])),
                            found=not reasons, min_confidence=self.min_confidence, model=self.provenance,
                            synthetic=self.synthetic, reasons=tuple(reasons))

    def save(self, folder: str | os.PathLike, *, card: str | None = None) -> Path:
        """Write the reader folder (localiser, grader, ``joints.json`` with checksums, ``README.md``)."""
        folder = Path(folder)
        files = self.localiser.save(folder) + self.grader.save(folder)
        cfg = {"kind": "joint_reader", "format_version": 1, "min_confidence": self.min_confidence,
               **{k: v for k, v in self.config.items() if k not in ("kind", "format_version", "min_confidence",
                                                                    "files")},
               "files": {f: sha256_file(folder / f) for f in sorted(files)}}
        (folder / CONFIG_NAME).write_text(json.dumps(cfg, indent=2) + "\n", encoding="utf-8")
        if card is not None:
            (folder / "README.md").write_text(card, encoding="utf-8")
        self.config = cfg
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike) -> "JointReader":
        """Read a reader folder written by :meth:`save`, every file checked against its sha256 first.

        Raises:
            ModelLoadError: no ``joints.json``, another kind, a file missing or changed, bad weights.
        """
        folder = Path(folder)
        try:
            cfg = json.loads((folder / CONFIG_NAME).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"{folder} is not a joint reader folder: {CONFIG_NAME} missing or unreadable "
                                 f"({exc}). Pass the folder JointReader.save wrote, or None for the bundled one.",
                                 model_id=str(folder)) from exc
        if cfg.get("kind") != "joint_reader":
            raise ModelLoadError(f"{folder / CONFIG_NAME} has kind {cfg.get('kind')!r}, expected 'joint_reader'.",
                                 model_id=str(folder))
        for rel, digest in (cfg.get("files") or {}).items():
            path = folder / rel
            if not path.is_file() or sha256_file(path) != digest:
                raise ModelLoadError(f"{path} is missing or does not match its sha256 in {CONFIG_NAME}; "
                                     "the reader folder is damaged.", model_id=str(folder))
        loc, grader = JointLocaliser.load(folder), JointGrader.load(folder)
        provenance = f"{folder}@{sha256_file(folder / CONFIG_NAME)[:12]}"
        return cls(loc, grader, min_confidence=float(cfg.get("min_confidence", 0.3)), config=cfg,
                   provenance=provenance)


def load_joint_reader(path: str | os.PathLike | None = None) -> JointReader:
    """The joint reader in ``path``, or the bundled phantom-trained one (warns once: not for clinical use).

    Raises:
        ModelLoadError: see :meth:`JointReader.load`.
    """
    reader = JointReader.load(DEFAULT_PATH if path is None else path)
    if reader.synthetic and reader.provenance not in _warned:
        _warned.add(reader.provenance)
        warnings.warn(f"The joint reader {reader.provenance} was trained on synthetic phantoms; it is for "
                      "demonstration and research only, not for clinical use.", SyntheticModelWarning, stacklevel=2)
    return reader


def reader_from_entry(entry: Any, *, base: str | os.PathLike | None = None) -> JointReader | None:
    """The joint reader a diagnosis repository's ``as_ai.json["joint_reader"]`` (or a caller) names.

    ``None`` / empty: none. A :class:`JointReader`: itself. ``"bundled"``: the phantom-trained demo reader. A
    path, or ``{"path": ...}``: that reader folder, relative to ``base`` (the diagnosis repository) when not
    absolute.

    Raises:
        ModelLoadError: the entry is malformed, or the folder is not a valid reader (:meth:`JointReader.load`).
    """
    if not entry:
        return None
    if isinstance(entry, JointReader):
        return entry
    path = entry.get("path") if isinstance(entry, dict) else entry
    if not isinstance(path, (str, os.PathLike)):
        raise ModelLoadError(f"joint_reader must be 'bundled', a folder, or {{'path': folder}}; got {entry!r}.")
    if os.fspath(path) == "bundled":
        return load_joint_reader()
    folder = Path(path)
    if not folder.is_absolute() and base is not None:
        folder = Path(base) / folder
    return JointReader.load(folder)
