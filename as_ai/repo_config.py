"""What a diagnosis repository's ``as_ai.json`` says, typed: :class:`DiagnosisRepoConfig`, read and written here.

``as_ai.json`` (DESIGN.md, "Model repo formats") lists the ensemble's members with their weights and
cross-validated AUCs, the combine rule, the preprocessing, the calibration, the decision threshold, the
input gate's file, the evaluation metrics and the training provenance. :meth:`DiagnosisRepoConfig.from_json`
checks all of it before any weight is read and names what is wrong (a :class:`~as_ai.errors.ModelLoadError`
that says which model); :meth:`DiagnosisRepoConfig.to_json` writes the same layout back, keys in the same
order, entries written by newer tools kept as they were. The member files themselves (timm configs and
safetensors weights) are :mod:`as_ai._repo_io`'s.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from .ensemble import Calibration
from .errors import ModelLoadError
from .preprocess import Preprocess

FORMAT_VERSION = 1
LABELS = ("non-AS", "AS")
WEIGHTS_NAME = "model.safetensors"
MEMBER_CONFIG = "config.json"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
KNOWN_KEYS = ("kind", "format_version", "labels", "members", "combine", "preprocess", "calibration", "threshold",
              "input_gate", "metrics", "training")   # what this version reads; "files" is hub's (checksums)

__all__ = ["DiagnosisRepoConfig", "MemberEntry", "LABELS", "FORMAT_VERSION", "WEIGHTS_NAME", "MEMBER_CONFIG",
           "repo_error", "extra_entries", "check_member_name"]


def check_member_name(name: str) -> str:
    """Member names become folder names: letters, digits, ``_.-``, at most 64 characters."""
    if not isinstance(name, str) or not _NAME_RE.match(name) or name in {".", ".."}:
        raise ValueError(f"member name {name!r} is not allowed: use letters, digits, '_', '.', '-' "
                         "(at most 64 characters, not starting with a symbol)")
    return name


def repo_error(model_id: str, revision: str | None, msg: str) -> ModelLoadError:
    """The error for a bad ``as_ai.json`` of ``model_id``: ``"as_ai.json of '<id>': <msg>"``."""
    return ModelLoadError(f"as_ai.json of {model_id!r}: {msg}", model_id=model_id, revision=revision)


def extra_entries(config: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of an ``as_ai.json`` this version does not read (written by newer tools), in their order."""
    return {k: v for k, v in config.items() if k not in KNOWN_KEYS and k != "files"}


@dataclass(frozen=True)
class MemberEntry:
    """One member of ``as_ai.json["members"]``: its name (a folder name), folder, architecture, weight, CV AUC."""

    name: str
    path: str
    arch: Any = None               # as written; checked against the member's own config.json when loaded
    weight: float = 1.0
    cv_auc: float | None = None

    @property
    def files(self) -> tuple[str, str]:
        """The member's weights and timm config, relative to the repository."""
        return f"{self.path}/{WEIGHTS_NAME}", f"{self.path}/{MEMBER_CONFIG}"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "arch": self.arch, "path": self.path, "weight": float(self.weight),
                "cv_auc": self.cv_auc}


@dataclass(frozen=True)
class DiagnosisRepoConfig:
    """The contents of a diagnosis repository's ``as_ai.json`` (without its ``files`` checksums when written).

    Attributes:
        members: the ensemble's members, in order.
        preprocess: the eval view the members read.
        combine: ``"mean"`` or ``"auc_weighted"`` (how the weights were set).
        calibration: the map of the combined probability.
        threshold: the decision threshold on the calibrated probability.
        input_gate: the input gate's entry (its file and limits), or None when the model has none.
        metrics, training: the evaluation's figures and the training provenance, as written.
        extra: entries this version does not read, kept so that saving again keeps them.
        files: relative path -> sha256 of every verified file (as read; written by ``write_config``).

    Example:
        >>> cfg = DiagnosisRepoConfig.from_json({"members": [{"name": "a", "path": "members/a"}],
        ...     "files": {"members/a/model.safetensors": "", "members/a/config.json": ""}}, model_id="demo")
        >>> cfg.members[0].files, cfg.threshold
        (('members/a/model.safetensors', 'members/a/config.json'), 0.5)
    """

    members: tuple[MemberEntry, ...]
    preprocess: Preprocess = field(default_factory=Preprocess)
    combine: str = "mean"
    calibration: Calibration = field(default_factory=Calibration)
    threshold: float = 0.5
    input_gate: Mapping[str, Any] | None = None
    metrics: Mapping[str, Any] = field(default_factory=dict)
    training: Mapping[str, Any] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)
    files: Mapping[str, str] = field(default_factory=dict)

    @property
    def weights(self) -> dict[str, float]:
        """Member name -> its weight in the combined probability."""
        return {m.name: m.weight for m in self.members}

    @property
    def cv_aucs(self) -> dict[str, float | None]:
        """Member name -> its mean cross-validated AUC (None when not recorded)."""
        return {m.name: m.cv_auc for m in self.members}

    @classmethod
    def from_json(cls, cfg: Mapping[str, Any], *, model_id: str, revision: str | None = None
                  ) -> "DiagnosisRepoConfig":
        """Read and check a parsed ``as_ai.json`` (its kind and format version are :mod:`as_ai.hub`'s to check).

        Raises:
            ModelLoadError: wrong labels; no members; a member entry without a valid name and path, or whose
                files have no checksum in ``files``; bad preprocessing; an input gate file without a checksum;
                a calibration or threshold that is not numbers.
        """
        def bad(msg: str) -> ModelLoadError:
            return repo_error(model_id, revision, msg)

        if list(cfg.get("labels", LABELS)) != list(LABELS):
            raise bad(f"labels must be {list(LABELS)}, got {cfg.get('labels')!r}")
        entries = cfg.get("members")
        if not isinstance(entries, list) or not entries:
            raise bad("'members' must be a non-empty list")
        files = cfg.get("files", {})
        listed = set(files)
        members = []
        for entry in entries:
            try:
                name, rel = check_member_name(entry["name"]), str(entry["path"])
                auc = entry.get("cv_auc")
                member = MemberEntry(name=name, path=rel, arch=entry.get("arch"),
                                     weight=float(entry.get("weight", 1.0)), cv_auc=None if auc is None else float(auc))
            except (KeyError, TypeError, ValueError) as exc:
                raise bad(f"member entry {entry!r} is invalid ({exc})") from exc
            for needed in member.files:
                if needed not in listed:
                    raise bad(f"{needed} is not listed in 'files' with a checksum; refusing unverified weights")
            members.append(member)
        preprocess = Preprocess.from_dict(cfg.get("preprocess", {}))
        gate_entry = cfg.get("input_gate") or None
        if gate_entry and gate_entry.get("file") not in listed:
            raise bad(f"input gate file {gate_entry.get('file')!r} is not listed in 'files' with a checksum")
        try:
            calibration = Calibration.from_dict(cfg.get("calibration"))
            threshold = float(cfg.get("threshold", 0.5))
        except (TypeError, ValueError, KeyError) as exc:
            raise bad(f"{type(exc).__name__}: {exc}") from exc
        return cls(members=tuple(members), preprocess=preprocess, combine=cfg.get("combine", "mean"),
                   calibration=calibration, threshold=threshold, input_gate=gate_entry,
                   metrics=cfg.get("metrics", {}), training=cfg.get("training", {}), extra=extra_entries(cfg),
                   files=dict(files) if isinstance(files, Mapping) else {})

    def to_json(self) -> dict[str, Any]:
        """The ``as_ai.json`` layout, keys in the order every as-ai version wrote them (``files`` is added by
        :func:`as_ai._repo_io.write_config`, which also hashes the files)."""
        out: dict[str, Any] = {
            "kind": "diagnosis",
            "format_version": FORMAT_VERSION,
            "labels": list(LABELS),
            "members": [m.to_json() for m in self.members],
            "combine": self.combine,
            "preprocess": self.preprocess.to_dict(),
            "calibration": self.calibration.to_dict(),
            "threshold": self.threshold,
            "input_gate": dict(self.input_gate or {}),
            "metrics": self.metrics,
            "training": self.training,
        }
        out.update(self.extra)
        return out
