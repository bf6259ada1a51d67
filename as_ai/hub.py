"""Resolve a model id (local folder or Hub repo id) to a verified local folder.

A model repository looks the same on disk and on the Hub: ``as_ai.json`` describes it, and its
``"files"`` entry maps every weight / skops / statistics file to its sha256, checked on load.
Results carry ``provenance`` ("org/name@<commit sha>" or "<path>@<content hash>") so every
prediction can say which model produced it.

Hub repos are fetched with ``huggingface_hub`` (so ``HF_ENDPOINT``, ``HF_TOKEN``, ``HF_HUB_CACHE`` and
``HF_HUB_OFFLINE`` apply as usual), pinned to the commit a tag or branch points at when asked, and
limited to the files ``as_ai.json`` names. Pickle-based files are never downloaded or loaded.
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, TypeVar

from .errors import ModelLoadError, SyntheticModelWarning, UntrustedModelError

CONFIG_NAME = "as_ai.json"
SUPPORTED_FORMAT_VERSIONS = {1}
KINDS = ("diagnosis", "triage")
ENV_VARS = {"diagnosis": "AS_AI_DIAGNOSIS_MODEL", "triage": "AS_AI_TRIAGE_MODEL"}
DEMO_DIR = Path(__file__).resolve().parent / "demo_models"
README_NAME = "README.md"
# Formats that can run code when loaded (pickle and its wrappers): never fetched, never loaded.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".joblib", ".ckpt", ".tar")
_SHA_LEN = 40

T = TypeVar("T")


@dataclass(frozen=True)
class ResolvedModel:
    """A model repository available as a local, verified folder."""

    path: Path
    model_id: str
    revision: str | None
    provenance: str
    config: dict[str, Any] = field(repr=False)
    requested_revision: str | None = None

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


def is_pickle_based(relpath: str) -> bool:
    """True for file names whose format is pickle-based (``*.bin``, ``*.pt``, ``*.pkl``, ...)."""
    return relpath.lower().endswith(PICKLE_SUFFIXES)


def listed_files(cfg: dict[str, Any], *, model_id: str, revision: str | None = None) -> dict[str, str]:
    """Return ``cfg["files"]`` (relative path -> sha256), refusing empty lists and pickle-based files.

    Raises:
        ModelLoadError: no ``"files"`` mapping of paths to 64-hex sha256 strings.
        UntrustedModelError: a listed file is pickle-based; such files can run code when loaded.
    """
    files = cfg.get("files")
    if not isinstance(files, dict) or not files:
        raise ModelLoadError(f"{CONFIG_NAME} of {model_id!r} lists no files with checksums; refusing to load "
                             "unverifiable weights.", model_id=model_id, revision=revision)
    bad = {k: v for k, v in files.items()
           if not (isinstance(k, str) and isinstance(v, str) and len(v) == 64
                   and all(c in "0123456789abcdef" for c in v))}
    if bad:
        raise ModelLoadError(f"{CONFIG_NAME} of {model_id!r} must map each file to its lowercase hex sha256; "
                             f"got {bad!r}.", model_id=model_id, revision=revision)
    pickles = sorted(k for k in files if is_pickle_based(k))
    if pickles:
        raise UntrustedModelError(
            f"{model_id!r} lists pickle-based files {pickles}; these can execute code when loaded, so as-ai never "
            "downloads or loads them. Re-save the weights as .safetensors (tensors) or .skops (scikit-learn).",
            untrusted=pickles, model_id=model_id, revision=revision)
    return files


def verify_files(folder: Path, cfg: dict[str, Any], *, model_id: str, revision: str | None = None) -> None:
    """Check that every file listed in ``cfg["files"]`` exists inside ``folder`` with its sha256.

    Raises:
        ModelLoadError: no file list, a path outside the repository, a missing file or a checksum mismatch.
        UntrustedModelError: a listed file is pickle-based.
    """
    files = listed_files(cfg, model_id=model_id, revision=revision)
    for rel, expected in files.items():
        # Checked on the name, not the resolved path: the Hub cache links snapshot files to shared blobs.
        parts = Path(rel).parts
        if not parts or Path(rel).is_absolute() or ".." in parts or "\\" in rel:
            raise ModelLoadError(f"{model_id!r} lists a file outside the repository: {rel!r}.",
                                 model_id=model_id, revision=revision)
        p = folder / rel
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
    ``org/name`` (or ``org/name@revision``) is fetched from the Hub at ``revision`` - a tag, branch or
    commit sha - and recorded as ``org/name@<commit sha>`` (see :func:`_snapshot`).

    Raises:
        ModelLoadError: not found, wrong kind, unsupported format version, missing file, checksum mismatch,
            offline and not cached.
        UntrustedModelError: the repository lists pickle-based files.

    Example::

        >>> r = resolve_model("org/pxr", "v1", kind="diagnosis")      # doctest: +SKIP
        >>> r.provenance                                                # doctest: +SKIP
        'org/pxr@5f0c3e...'
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    mid = os.fspath(model_id)
    local = Path(mid).expanduser()
    if not local.is_dir() and "@" in mid and not mid.startswith(("/", ".", "~")):
        mid, _, pinned = mid.partition("@")
        if revision is not None and revision != pinned:
            raise ModelLoadError(f"{model_id!r} pins revision {pinned!r} but revision={revision!r} was also "
                                 "given; pass one of them.", model_id=mid, revision=revision)
        revision = pinned or None
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
    """Fetch a Hub repo at a pinned revision and verify it.

    First ``as_ai.json`` is fetched at ``revision`` (default ``main``); the snapshot folder it lands in
    is named by the commit the revision points at, and everything else is fetched at that commit, so a
    tag or branch moving meanwhile cannot mix two versions. Only ``as_ai.json``, ``README.md``, the
    files listed in ``as_ai.json["files"]`` and timm ``config.json`` files are downloaded.
    """
    from huggingface_hub import constants, hf_hub_download, snapshot_download
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        raise ModelLoadError(
            f"{repo_id!r} is neither an existing local folder nor a valid Hub repo id ('org/name'). "
            "Check the path, or pass a Hub id such as 'org/as-ai-pxr'.", model_id=repo_id,
            revision=revision) from exc
    asked = revision or "main"
    try:
        cfg_path = Path(hf_hub_download(repo_id, CONFIG_NAME, revision=asked))
    except Exception as exc:
        raise _hub_error(exc, repo_id, asked, fetching=CONFIG_NAME) from exc
    sha = cfg_path.parent.name
    if len(sha) != _SHA_LEN:  # not in the standard cache layout: ask the Hub
        sha = _commit_of(repo_id, asked)
    cfg = read_config(cfg_path.parent, kind=kind, model_id=repo_id, revision=asked)
    files = listed_files(cfg, model_id=repo_id, revision=asked)
    try:
        folder = Path(snapshot_download(repo_id, revision=sha, allow_patterns=_needed_patterns(files)))
    except Exception as exc:
        raise _hub_error(exc, repo_id, asked, fetching="the files listed in as_ai.json") from exc
    missing = [rel for rel in files if not (folder / rel).is_file()]
    if missing and constants.HF_HUB_OFFLINE:
        raise ModelLoadError(
            f"HF_HUB_OFFLINE is set and {repo_id}@{sha[:12]} is only partly in the local cache (missing "
            f"{missing}). Run once with network access to download it, or unset HF_HUB_OFFLINE.",
            model_id=repo_id, revision=asked)
    verify_files(folder, cfg, model_id=repo_id, revision=asked)
    return ResolvedModel(path=folder, model_id=repo_id, revision=sha, provenance=f"{repo_id}@{sha}",
                         config=cfg, requested_revision=revision)


def _glob_escape(relpath: str) -> str:
    """Escape fnmatch wildcards so a path matches only itself."""
    return "".join(f"[{c}]" if c in "*?[]" else c for c in relpath)


def _needed_patterns(files: Iterable[str]) -> list[str]:
    """allow_patterns for a snapshot: as_ai.json, the card, the listed files, timm config.json files."""
    return [CONFIG_NAME, README_NAME, "config.json", "*/config.json", *(_glob_escape(f) for f in files)]


def _commit_of(repo_id: str, revision: str) -> str:
    """The commit sha that ``revision`` points at (an API call; used outside the cache layout)."""
    from huggingface_hub import HfApi

    try:
        return HfApi().model_info(repo_id, revision=revision).sha
    except Exception as exc:
        raise _hub_error(exc, repo_id, revision, fetching="the revision's commit") from exc


def _available_refs(repo_id: str) -> list[str] | None:
    """Branch and tag names of ``repo_id``, or None when the repo cannot be listed (absent / no access)."""
    from huggingface_hub import HfApi

    try:
        refs = HfApi().list_repo_refs(repo_id)
    except Exception:
        return None
    return [r.name for r in refs.branches] + [r.name for r in refs.tags]


def _revision_exists(repo_id: str, revision: str, refs: list[str]) -> bool:
    """Whether ``revision`` names a branch, tag or commit of ``repo_id``."""
    from huggingface_hub import HfApi

    if revision in refs:
        return True
    try:
        HfApi().model_info(repo_id, revision=revision)
    except Exception:
        return False
    return True


def _hub_error(exc: Exception, repo_id: str, revision: str, *, fetching: str) -> ModelLoadError:
    """Translate a huggingface_hub error into a ModelLoadError that says what to do."""
    from huggingface_hub import constants
    from huggingface_hub.errors import (
        EntryNotFoundError, GatedRepoError, HfHubHTTPError, HFValidationError, LocalEntryNotFoundError,
        OfflineModeIsEnabled, RepositoryNotFoundError, RevisionNotFoundError)

    endpoint = constants.ENDPOINT
    where = f"{repo_id}@{revision}"
    if isinstance(exc, (LocalEntryNotFoundError, OfflineModeIsEnabled)):
        if constants.HF_HUB_OFFLINE:
            msg = (f"HF_HUB_OFFLINE is set and {where} is not in the local cache ({constants.HF_HUB_CACHE}). "
                   "Run once with network access to download it, or unset HF_HUB_OFFLINE.")
        else:
            msg = (f"Could not reach {endpoint} to fetch {fetching} of {where}, and it is not in the local "
                   f"cache ({constants.HF_HUB_CACHE}). Check the network and HF_ENDPOINT, or pre-download it.")
        return ModelLoadError(msg, model_id=repo_id, revision=revision)
    if isinstance(exc, GatedRepoError):
        return ModelLoadError(f"{repo_id!r} on {endpoint} is gated: accept its conditions on the model page and "
                              "set HF_TOKEN to a token of that account.", model_id=repo_id, revision=revision)
    if isinstance(exc, (RepositoryNotFoundError, RevisionNotFoundError)):
        # Some servers (mirrors) answer "repository not found" for an unknown revision or file: ask what exists.
        refs = _available_refs(repo_id)
        if refs is None and not isinstance(exc, RevisionNotFoundError):
            return ModelLoadError(
                f"Model repository {repo_id!r} was not found on {endpoint}. Check the spelling; for a private "
                "repository set HF_TOKEN; or pass a local folder instead.", model_id=repo_id, revision=revision)
        if not _revision_exists(repo_id, revision, refs or []):
            known = f" Available branches and tags: {sorted(refs)}." if refs else ""
            return ModelLoadError(
                f"Revision {revision!r} was not found in {repo_id!r} on {endpoint}.{known} Pass a tag, branch or "
                "full commit sha that exists.", model_id=repo_id, revision=revision)
    if isinstance(exc, (EntryNotFoundError, RepositoryNotFoundError)):  # repo and revision exist: the file doesn't
        return ModelLoadError(
            f"{where} has no {fetching}: it is not an as-ai model repository (or this revision predates it). "
            "Point model= at a repository published with train/publish.py.", model_id=repo_id, revision=revision)
    if isinstance(exc, HFValidationError):
        return ModelLoadError(f"Invalid Hub repo id or revision {where!r}: {exc}", model_id=repo_id,
                              revision=revision)
    if isinstance(exc, HfHubHTTPError):
        status = getattr(getattr(exc, "response", None), "status_code", "?")
        return ModelLoadError(f"{endpoint} answered HTTP {status} while fetching {fetching} of {where}: "
                              f"{str(exc).splitlines()[0]}. Retry later or check HF_ENDPOINT / HF_TOKEN.",
                              model_id=repo_id, revision=revision)
    return ModelLoadError(f"Could not fetch {fetching} of {where} from {endpoint}: {type(exc).__name__}: {exc}",
                          model_id=repo_id, revision=revision)


def default_model_id(kind: str) -> str:
    """The model used when ``model=None``: the env variable, else the bundled phantom-trained demo."""
    env = os.environ.get(ENV_VARS[kind])
    if env:
        return env
    return str(DEMO_DIR / kind)


_warned_demo: set[str] = set()


def warn_if_demo(resolved: ResolvedModel, *, stacklevel: int = 3) -> None:
    """Warn once per process and model that a synthetic / phantom-trained model is in use.

    ``stacklevel`` is ``warnings.warn``'s, counted from here: the default 3 names the caller of the function
    that called this one."""
    training = resolved.config.get("training", {})
    synthetic = bool(training.get("synthetic", False)) or resolved.path.resolve().is_relative_to(DEMO_DIR)
    if synthetic and resolved.provenance not in _warned_demo:
        _warned_demo.add(resolved.provenance)
        warnings.warn(
            f"The {resolved.kind} model {resolved.provenance} was trained on synthetic / phantom data. It is for "
            "demonstration and research only, not for clinical use. Pass model= or set "
            f"{ENV_VARS[resolved.kind]} to use a model trained on real data.",
            SyntheticModelWarning, stacklevel=stacklevel)


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


def load_cached(kind: str, model: str | os.PathLike | None, revision: str | None,
                load: Callable[[str, str | None], T], *, stacklevel: int = 2) -> T:
    """The model of ``kind`` for (``model``, ``revision``), loaded once per process with ``load(model_id, revision)``.

    ``model=None`` is :func:`default_model_id` (the env variable, else the bundled demo); a model trained on
    synthetic data warns once (:func:`warn_if_demo`), naming the code ``stacklevel`` frames above the caller
    of this function as ``warnings.warn`` counts (2: the caller's caller). What :func:`as_ai.load_diagnoser`,
    :func:`as_ai.load_triager`, :func:`as_ai.diagnose` and :func:`as_ai.triage` share.
    """
    model_id = os.fspath(model) if model is not None else default_model_id(kind)
    loaded = cached(kind, model_id, revision, lambda: load(model_id, revision))
    resolved = getattr(loaded, "resolved", None)
    if resolved is not None:
        warn_if_demo(resolved, stacklevel=stacklevel + 2)
    return loaded


def clear_cache() -> None:
    """Forget every model loaded by :func:`as_ai.diagnose` / :func:`as_ai.triage`."""
    with _cache_lock:
        _cache.clear()
