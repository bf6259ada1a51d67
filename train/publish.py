"""Publish a staged as-ai model folder to the Hugging Face Hub, pinned by a commit and a tag.

    python -m train.publish runs/pxr/model --repo-id org/as-ai-pxr --tag v1 [--private] [--message TEXT]

The folder is checked first (``as_ai.json`` kind and format, sha256 of every listed file, no
pickle-based files, a model card with YAML front-matter), then ``create_repo`` → ``upload_folder`` with
an allow-list of exactly the files the model needs (never optimizer states, checkpoints or pickles) →
``create_tag``. The commit sha is printed last: pin it (or the tag) with ``revision=``.
Needs ``HF_TOKEN`` (write access) and network; ``HF_ENDPOINT`` selects another Hub.
Training scripts call :func:`publish` for ``--push-to-hub org/name``.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import yaml

from as_ai.errors import ModelLoadError
from as_ai.hub import CONFIG_NAME, KINDS, README_NAME, is_pickle_based, read_config, verify_files

REQUIRED_CARD_FIELDS = ("library_name", "license", "tags")
_TAG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class PublishError(RuntimeError):
    """A staged folder cannot be published, or the Hub refused part of the publication."""


@dataclass(frozen=True)
class StagedRepo:
    """A checked model folder and exactly the files that go to the Hub."""

    folder: Path
    kind: str
    files: tuple[str, ...]
    card: dict[str, Any]


@dataclass(frozen=True)
class PublishResult:
    """Where a model was published: pin ``repo_id`` at ``commit_sha`` (or ``tag``)."""

    repo_id: str
    commit_sha: str
    tag: str | None
    url: str

    @property
    def pinned(self) -> str:
        """``org/name@<commit sha>``, as predictions record it."""
        return f"{self.repo_id}@{self.commit_sha}"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "pinned": self.pinned}


def read_card(folder: Path) -> dict[str, Any]:
    """Parse the YAML front-matter of ``folder/README.md`` and check the fields the Hub card needs.

    Raises:
        PublishError: no README.md, no front-matter, invalid YAML, or a required field missing/empty.
    """
    path = folder / README_NAME
    if not path.is_file():
        raise PublishError(f"{folder} has no {README_NAME} model card. Write one (model_cards/ has templates) "
                           "with YAML front-matter giving library_name, license and tags.")
    text = path.read_text(encoding="utf-8")
    match = re.match(r"\A---\s*\n(.*?)\n---\s*(\n|\Z)", text, flags=re.S)
    if not match:
        raise PublishError(f"{path} does not start with YAML front-matter ('---' ... '---'); the Hub reads "
                           "library_name, license and tags from it.")
    try:
        card = yaml.safe_load(match.group(1)) or {}
    except yaml.YAMLError as exc:
        raise PublishError(f"The front-matter of {path} is not valid YAML: {exc}") from exc
    if not isinstance(card, dict):
        raise PublishError(f"The front-matter of {path} must be a mapping, got {type(card).__name__}.")
    missing = [k for k in REQUIRED_CARD_FIELDS if not card.get(k)]
    if missing:
        raise PublishError(f"The model card {path} lacks {missing} in its front-matter; add them "
                           "(e.g. library_name: as-ai, license: apache-2.0, tags: [ankylosing-spondylitis]).")
    if not isinstance(card["tags"], list):
        raise PublishError(f"tags in {path} must be a YAML list, got {card['tags']!r}.")
    return {"card": card, "text": text}


def check_staged(folder: str | Path) -> StagedRepo:
    """Check a folder before publishing and list the files to upload.

    Checks: ``as_ai.json`` of a known kind and format version, every listed file present with its sha256,
    no pickle-based file listed, a model card with ``library_name``, ``license`` and ``tags``; a model
    trained on synthetic data must say so in its card.

    Raises:
        PublishError: anything that would make the published repo unusable or misleading.
        as_ai.errors.UntrustedModelError: ``as_ai.json`` lists pickle-based files.

    Example::

        >>> staged = check_staged("runs/pxr/model")       # doctest: +SKIP
        >>> staged.files                                    # doctest: +SKIP
        ('README.md', 'as_ai.json', 'input_gate.safetensors', 'members/m0/config.json', ...)
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise PublishError(f"{folder} is not a folder; pass the model folder a training run wrote.")
    try:
        raw = json.loads((folder / CONFIG_NAME).read_text(encoding="utf-8"))
        kind = raw.get("kind") if isinstance(raw, dict) else None
    except (OSError, ValueError) as exc:
        raise PublishError(f"{folder} has no readable {CONFIG_NAME} ({exc}); it is not an as-ai model folder.") from exc
    if kind not in KINDS:
        raise PublishError(f"{folder / CONFIG_NAME} has kind {kind!r}; expected one of {list(KINDS)}.")
    try:
        cfg = read_config(folder, kind=kind, model_id=str(folder))
        verify_files(folder, cfg, model_id=str(folder))
    except ModelLoadError as exc:
        if type(exc) is not ModelLoadError:  # UntrustedModelError: keep its class and fields
            raise
        raise PublishError(f"Refusing to publish: {exc}") from exc
    card = read_card(folder)
    if cfg.get("training", {}).get("synthetic") and "synthetic" not in card["text"].lower():
        raise PublishError(f"{folder} was trained on synthetic data (as_ai.json training.synthetic) but its model "
                           "card does not say so; state it in the card (and add a 'synthetic-data' tag).")
    configs = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("config.json") if p.is_file())
    files = sorted({CONFIG_NAME, README_NAME, *cfg["files"], *configs})
    unsafe = [f for f in files if is_pickle_based(f)]
    if unsafe:  # config.json / README can't be, but keep the invariant explicit
        raise PublishError(f"Refusing to upload pickle-based files {unsafe}.")
    return StagedRepo(folder=folder, kind=kind, files=tuple(files), card=card["card"])


def _allow_patterns(files: Sequence[str]) -> list[str]:
    """fnmatch patterns that match exactly these relative paths."""
    return ["".join(f"[{c}]" if c in "*?[]" else c for c in f) for f in files]


def publish(folder: str | Path, repo_id: str, *, tag: str | None = None, private: bool = False,
            api: Any = None, commit_message: str | None = None) -> PublishResult:
    """Upload a checked model folder to ``repo_id`` and tag the commit.

    ``api`` is a ``huggingface_hub.HfApi`` (default: a new one, which reads ``HF_TOKEN`` and
    ``HF_ENDPOINT``). Only the files :func:`check_staged` lists are uploaded.

    Raises:
        PublishError: the folder fails the checks, ``repo_id``/``tag`` is malformed, or the tag exists.

    Example::

        >>> r = publish("runs/pxr/model", "org/as-ai-pxr", tag="v1")    # doctest: +SKIP
        >>> r.commit_sha                                                 # doctest: +SKIP
        '5f0c3e...'
    """
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        raise PublishError(f"--repo-id {repo_id!r} is not a Hub repo id like 'org/name': {exc}") from exc
    if "/" not in repo_id:
        raise PublishError(f"--repo-id {repo_id!r} needs an owner: use 'org/name' or 'user/name'.")
    if tag is not None and not _TAG_RE.match(tag):
        raise PublishError(f"--tag {tag!r} is not a valid tag: use letters, digits, '.', '_' or '-' (e.g. v1).")
    staged = check_staged(folder)
    api = api if api is not None else HfApi()
    message = commit_message or f"Publish as-ai {staged.kind} model"
    repo_url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    info = api.upload_folder(repo_id=repo_id, folder_path=str(staged.folder), repo_type="model",
                             allow_patterns=_allow_patterns(staged.files), commit_message=message)
    sha = info.oid
    if tag is not None:
        try:
            api.create_tag(repo_id, tag=tag, revision=sha, tag_message=message, repo_type="model")
        except HfHubHTTPError as exc:
            status = getattr(getattr(exc, "response", None), "status_code", None)
            if status == 409:
                raise PublishError(
                    f"Uploaded commit {sha} to {repo_id}, but tag {tag!r} already exists there. Tags are pins that "
                    f"users rely on, so they are never moved: choose a new tag, or pin revision={sha!r}.") from exc
            raise
    return PublishResult(repo_id=repo_id, commit_sha=sha, tag=tag, url=str(repo_url))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m train.publish", description=__doc__.split("\n\n")[0])
    p.add_argument("folder", type=Path, help="model folder written by a training run (as_ai.json, README.md, ...)")
    p.add_argument("--repo-id", required=True, help="Hub repository, 'org/name'")
    p.add_argument("--tag", default=None, help="tag to create on the uploaded commit, e.g. v1")
    p.add_argument("--private", action="store_true", help="create the repository as private")
    p.add_argument("--message", "--revision-message", dest="message", default=None,
                   help="commit (and tag) message")
    p.add_argument("--dry-run", action="store_true", help="check the folder and list the files; upload nothing")
    return p


def main(argv: Sequence[str] | None = None, *, api: Any = None) -> int:
    """Command line entry point; returns the exit code (0 ok, 2 refused)."""
    args = build_parser().parse_args(argv)
    try:
        if args.dry_run:
            staged = check_staged(args.folder)
            print(f"{args.folder} is a valid {staged.kind} model; would upload to {args.repo_id}:")
            for f in staged.files:
                print(f"  {f}")
            return 0
        result = publish(args.folder, args.repo_id, tag=args.tag, private=args.private, api=api,
                         commit_message=args.message)
    except (PublishError, ModelLoadError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    kind = json.loads((args.folder / CONFIG_NAME).read_text(encoding="utf-8"))["kind"]
    var = "AS_AI_DIAGNOSIS_MODEL" if kind == "diagnosis" else "AS_AI_TRIAGE_MODEL"
    pin = result.tag or result.commit_sha
    print(f"Published {result.repo_id} ({result.url}) at commit {result.commit_sha}"
          + (f", tagged {result.tag}" if result.tag else "") + ".")
    print(f"Use it pinned: model={result.repo_id!r}, revision={pin!r}  or  {var}={result.repo_id}@{pin}")
    print(result.commit_sha)
    return 0


if __name__ == "__main__":
    sys.exit(main())
