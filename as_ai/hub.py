"""Resolve a model id (local folder or Hub repo id) to a verified local folder.

A model repository looks the same on disk and on the Hub: ``as_ai.json`` describes it, and its
``"files"`` entry maps every weight / skops / statistics file to its sha256, checked on load.
Results carry ``provenance`` ("org/name@<commit sha>" or "<path>@<content hash>") so every
prediction can say which model produced it.
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TypeVar

from .errors import ModelLoadError, SyntheticModelWarning

CONFIG_NAME = "as_ai.json"
SUPPORTED_FORMAT_VERSIONS = {1}
KINDS = ("diagnosis", "triage")
ENV_VARS = {"diagnosis": "AS_AI_DIAGNOSIS_MODEL", "triage": "AS_AI_TRIAGE_MODEL"}
DEMO_DIR = Path(__file__).resolve().parent / "demo_models"

T = TypeVar("T")


@dataclass(frozen=True)
class ResolvedModel:
    """A model repository available as a local, verified folder."""

    path: Path
    model_id: str
    revision: str | None
    provenance: str
    config: dict[str, Any] = field(repr=False)

    @property
    def kind(self) -> str:
        return self.config["kind"]


def sha256_file(path: str | os.PathLike) -> str:
    """Return the hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_config(folder: Path, *, kind: str, model_id: str, revision: str | None = None) -> dict[str, Any]:
    """Read and check ``as_ai.json`` in ``folder``: present, JSON, of the expected kind and version."""
    cfg_path = folder / CONFIG_NAME
    if not cfg_path.is_file():
        raise ModelLoadError(
            f"{model_id!r} has no {CONFIG_NAME}: it is not an as-ai model repository. "
            f"Point model= at a folder or Hub repo written by as-ai (save_pretrained / train scripts).",
            model_id=model_id, revision=revision)
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{CONFIG_NAME} of {model_id!r} is not valid JSON ({exc}).",
                             model_id=model_id, revision=revision) from exc
    if not isinstance(cfg, dict):
        raise ModelLoadError(f"{CONFIG_NAME} of {model_id!r} must hold a JSON object.", model_id=model_id,
                             revision=revision)
    if cfg.get("kind") != kind:
        raise ModelLoadError(
            f"{model_id!r} is a {cfg.get('kind')!r} model, but a {kind!r} model is needed here. "
            f"Use AS_AI_{kind.upper()}_MODEL / model= with a {kind} repository.",
            model_id=model_id, revision=revision)
    if cfg.get("format_version") not in SUPPORTED_FORMAT_VERSIONS:
        raise ModelLoadError(
            f"{model_id!r} uses format_version {cfg.get('format_version')!r}; this as-ai reads "
            f"{sorted(SUPPORTED_FORMAT_VERSIONS)}. Upgrade as-ai or pick an older revision.",
            model_id=model_id, revision=revision)
    return cfg


def verify_files(folder: Path, cfg: dict[str, Any], *, model_id: str, revision: str | None = None) -> None:
    """Check that every file listed in ``cfg["files"]`` exists inside ``folder`` with its sha256."""
    files = cfg.get("files")
    if not isinstance(files, dict) or not files:
        raise ModelLoadError(f"{CONFIG_NAME} of {model_id!r} lists no files with checksums; refusing to load "
                             "unverifiable weights.", model_id=model_id, revision=revision)
    root = folder.resolve()
    for rel, expected in files.items():
        p = (folder / rel).resolve()
        if root not in p.parents:
            raise ModelLoadError(f"{model_id!r} lists a file outside the repository: {rel!r}.",
                                 model_id=model_id, revision=revision)
        if not p.is_file():
            raise ModelLoadError(f"{model_id!r} is missing {rel!r}, listed in {CONFIG_NAME}.",
                                 model_id=model_id, revision=revision)
        actual = sha256_file(p)
        if actual != expected:
            raise ModelLoadError(
                f"Checksum mismatch for {rel!r} in {model_id!r}: expected sha256 {expected[:12]}…, got "
                f"{actual[:12]}…. The file was changed after the model was published; do not use it.",
                model_id=model_id, revision=revision)


def content_hash(folder: Path) -> str:
    """Short hash naming a local model's content (its as_ai.json, which pins every file's sha256)."""
    return hashlib.sha256((folder / CONFIG_NAME).read_bytes()).hexdigest()[:12]


def resolve_model(model_id: str | os.PathLike, revision: str | None = None, *, kind: str) -> ResolvedModel:
    """Resolve ``model_id`` to a verified local folder.

    A path that exists is used as is (``revision`` must then be None); anything else of the form
    ``org/name`` is fetched from the Hub at ``revision`` (see :func:`_snapshot`).

    Raises:
        ModelLoadError: not found, wrong kind, unsupported format version, missing file, checksum mismatch.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    mid = os.fspath(model_id)
    local = Path(mid).expanduser()
    if local.is_dir():
        if revision is not None:
            raise ModelLoadError(f"revision={revision!r} was given for the local folder {mid!r}; revisions "
                                 "apply to Hub repositories only.", model_id=mid, revision=revision)
        cfg = read_config(local, kind=kind, model_id=mid)
        verify_files(local, cfg, model_id=mid)
        return ResolvedModel(path=local, model_id=mid, revision=content_hash(local),
                             provenance=f"{local.resolve()}@{content_hash(local)}", config=cfg)
    return _snapshot(mid, revision, kind=kind)


def _snapshot(repo_id: str, revision: str | None, *, kind: str) -> ResolvedModel:
    """Fetch a Hub repo at a pinned revision (implemented in the Hub issue)."""
    raise ModelLoadError(f"{repo_id!r} is not a local folder, and loading from the Hub is not available yet.",
                         model_id=repo_id, revision=revision)


def default_model_id(kind: str) -> str:
    """The model used when ``model=None``: the env variable, else the bundled phantom-trained demo."""
    env = os.environ.get(ENV_VARS[kind])
    if env:
        return env
    return str(DEMO_DIR / kind)


_warned_demo: set[str] = set()


def warn_if_demo(resolved: ResolvedModel) -> None:
    """Warn once per process and model that a synthetic / phantom-trained model is in use."""
    training = resolved.config.get("training", {})
    synthetic = bool(training.get("synthetic", False)) or resolved.path.resolve().is_relative_to(DEMO_DIR)
    if synthetic and resolved.provenance not in _warned_demo:
        _warned_demo.add(resolved.provenance)
        warnings.warn(
            f"The {resolved.kind} model {resolved.provenance} was trained on synthetic / phantom data. It is for "
            "demonstration and research only, not for clinical use. Pass model= or set "
            f"{ENV_VARS[resolved.kind]} to use a model trained on real data.",
            SyntheticModelWarning, stacklevel=3)


# --- the one model cache: (kind, model id, revision) -> loaded object -------------------------------
_cache: dict[tuple[str, str, str | None], Any] = {}
_cache_lock = threading.Lock()


def cached(kind: str, model_id: str, revision: str | None, load: Callable[[], T]) -> T:
    """Return the loaded model for (kind, model_id, revision), loading it once."""
    key = (kind, model_id, revision)
    with _cache_lock:
        if key not in _cache:
            _cache[key] = load()
        return _cache[key]


def clear_cache() -> None:
    """Forget every model loaded by :func:`as_ai.diagnose` / :func:`as_ai.triage`."""
    with _cache_lock:
        _cache.clear()
