"""train/publish.py: check a staged model folder, then create_repo -> upload_folder -> create_tag.

Publishing goes through ``MirrorHfApi``: every call is bound to the real ``HfApi`` signature, then
committed and tagged in the olah mirror's git repos, so what was published is then pulled over HTTP.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

pytest.register_assert_rewrite("olah_mirror")  # imported here before pytest loads it as a plugin

from as_ai.errors import UntrustedModelError  # noqa: E402
from olah_mirror import REPO_ROOT, MirrorHfApi, git, write_triage_repo  # noqa: E402
from train.publish import PublishError, PublishResult, check_staged, main, publish  # noqa: E402

pytest_plugins = ["olah_mirror"]


@pytest.fixture(scope="module")
def triage_repo(tmp_path_factory):
    return write_triage_repo(tmp_path_factory.mktemp("staged") / "triage")


@pytest.fixture
def stage(triage_repo, tmp_path):
    """A fresh copy of a valid staged folder, with training leftovers that must never be uploaded."""
    folder = shutil.copytree(triage_repo, tmp_path / "stage")
    (folder / "optimizer.pt").write_bytes(b"\x80\x04 optimizer state")
    (folder / "checkpoint-100").mkdir()
    (folder / "checkpoint-100" / "model.safetensors").write_bytes(b"old")
    (folder / "train_log.txt").write_text("loss 0.1\n")
    return folder


@pytest.fixture
def repo_id():
    return f"as-ai-test/p-{uuid.uuid4().hex[:10]}"


def _card(folder: Path, front: str, body: str = "Trained on synthetic data.\n") -> None:
    (folder / "README.md").write_text(f"---\n{front}---\n{body}")


def _set_cfg(folder: Path, **changes) -> None:
    cfg = json.loads((folder / "as_ai.json").read_text())
    cfg.update(changes)
    (folder / "as_ai.json").write_text(json.dumps(cfg))


STAGING_ERRORS = [
    (lambda f: (f / "README.md").unlink(), PublishError, "has no README.md model card"),
    (lambda f: (f / "README.md").write_text("# no front-matter\n"), PublishError,
     "does not start with YAML front-matter"),
    (lambda f: _card(f, "library_name: as-ai\ntags: [x]\n"), PublishError, "lacks ['license']"),
    (lambda f: _card(f, "library_name: as-ai\nlicense: mit\ntags: x\n"), PublishError, "tags in"),
    (lambda f: _card(f, "library_name: [unclosed\n"), PublishError, "not valid YAML"),
    (lambda f: _card(f, "library_name: as-ai\nlicense: mit\ntags: [x]\n", body="A model.\n"), PublishError,
     "trained on synthetic data (as_ai.json training.synthetic) but its model card does not say so"),
    (lambda f: (f / "basfi.skops").write_bytes(b"changed after training"), PublishError,
     "Checksum mismatch for 'basfi.skops'"),
    (lambda f: _set_cfg(f, kind="segmentation"), PublishError, "has kind 'segmentation'"),
    (lambda f: _set_cfg(f, format_version=99), PublishError, "format_version 99"),
    (lambda f: (f / "as_ai.json").unlink(), PublishError, "has no readable as_ai.json"),
    (lambda f: _set_cfg(f, files={"basfi.pkl": "0" * 64}), UntrustedModelError, "pickle-based files ['basfi.pkl']"),
]


@pytest.mark.parametrize("breaker, error, words", STAGING_ERRORS)
def test_staging_checks(stage, breaker, error, words):
    breaker(stage)
    with pytest.raises(error) as info:
        check_staged(stage)
    assert words in str(info.value)


def test_staged_files_are_exactly_what_the_model_needs(stage):
    staged = check_staged(stage)
    assert staged.kind == "triage" and staged.card["library_name"] == "as-ai"
    assert staged.files == ("README.md", "as_ai.json", "basdai.skops", "basfi.skops")


def test_publish_uploads_only_the_allow_list_and_tags_the_commit(olah_mirror, stage, repo_id):
    api = MirrorHfApi(olah_mirror)
    result = publish(stage, repo_id, tag="v1", private=True, api=api)
    assert isinstance(result, PublishResult) and result.repo_id == repo_id and result.tag == "v1"
    repo = olah_mirror.repo_dir(repo_id)
    assert git(repo, "rev-parse", "HEAD") == result.commit_sha == olah_mirror.rev_parse(repo_id, "v1")
    assert sorted(git(repo, "ls-tree", "-r", "--name-only", "v1").splitlines()) == [
        ".gitattributes", "README.md", "as_ai.json", "basdai.skops", "basfi.skops"]
    assert [name for name, _ in api.calls] == ["create_repo", "upload_folder", "create_tag"]
    create, upload, tag = (args for _, args in api.calls)
    assert create["exist_ok"] is True and create["private"] is True
    assert not any("optimizer" in p or "checkpoint" in p for p in upload["allow_patterns"])
    assert tag["revision"] == result.commit_sha  # the tag names the uploaded commit, not whatever main is
    assert result.to_dict()["pinned"] == f"{repo_id}@{result.commit_sha}"
    json.dumps(result.to_dict())


def test_tags_are_never_moved(olah_mirror, stage, repo_id):
    api = MirrorHfApi(olah_mirror)
    first = publish(stage, repo_id, tag="v1", api=api)
    _set_cfg(stage, note="second version")
    with pytest.raises(PublishError, match="tag 'v1' already exists") as info:
        publish(stage, repo_id, tag="v1", api=api)
    assert "never moved" in str(info.value)
    assert olah_mirror.rev_parse(repo_id, "v1") == first.commit_sha
    second = publish(stage, repo_id, tag="v2", api=api)
    assert olah_mirror.rev_parse(repo_id, "v2") == second.commit_sha != first.commit_sha
    assert olah_mirror.rev_parse(repo_id, "v1") == first.commit_sha


@pytest.mark.parametrize("repo_id, tag, words", [
    ("no-owner", None, "needs an owner"),
    ("org/bad name", None, "is not a Hub repo id"),
    ("org/name", "v1 final", "is not a valid tag"),
    ("org/name", "../v1", "is not a valid tag"),
])
def test_bad_repo_ids_and_tags_are_refused_before_any_call(olah_mirror, stage, repo_id, tag, words):
    api = MirrorHfApi(olah_mirror)
    with pytest.raises(PublishError) as info:
        publish(stage, repo_id, tag=tag, api=api)
    assert words in str(info.value) and api.calls == []


def test_stand_in_rejects_arguments_the_real_hfapi_would(olah_mirror):
    api = MirrorHfApi(olah_mirror)
    with pytest.raises(TypeError):
        api.upload_folder("org/name", "folder")  # upload_folder's arguments are keyword-only in HfApi
    with pytest.raises(TypeError):
        api.create_tag("org/name", "v1")  # tag= is keyword-only
    with pytest.raises(TypeError):
        api.create_repo("org/name", exists_ok=True)  # misspelled keyword


def test_cli_publishes_and_prints_the_commit_to_pin(olah_mirror, stage, repo_id, capsys):
    api = MirrorHfApi(olah_mirror)
    code = main([str(stage), "--repo-id", repo_id, "--tag", "v1", "--message", "first release"], api=api)
    out = capsys.readouterr().out.strip().splitlines()
    sha = olah_mirror.rev_parse(repo_id, "v1")
    assert code == 0 and out[-1] == sha
    assert f"AS_AI_TRIAGE_MODEL={repo_id}@v1" in out[-2]
    assert git(olah_mirror.repo_dir(repo_id), "log", "-1", "--format=%s") == "first release"


def test_cli_dry_run_lists_files_and_uploads_nothing(olah_mirror, stage, repo_id, capsys):
    api = MirrorHfApi(olah_mirror)
    assert main([str(stage), "--repo-id", repo_id, "--dry-run"], api=api) == 0
    out = capsys.readouterr().out
    assert "basfi.skops" in out and "optimizer.pt" not in out
    assert api.calls == [] and not olah_mirror.repo_dir(repo_id).exists()


def test_cli_refuses_a_bad_folder_with_exit_code_2(tmp_path):
    """Run as users do (python -m train.publish): no traceback, the reason on stderr."""
    proc = subprocess.run([sys.executable, "-m", "train.publish", str(tmp_path / "nope"), "--repo-id", "org/x"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 2
    assert "is not a folder" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.hub_real
def test_real_hub_round_trip(stage, tmp_path):
    """Publish to huggingface.co and pull it back pinned (opt-in: pytest -m hub_real, needs HF_TOKEN)."""
    token = os.environ.get("HF_TOKEN")
    if not token:
        pytest.skip("HF_TOKEN is not set")
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    repo_id = f"{api.whoami()['name']}/as-ai-test-{uuid.uuid4().hex[:8]}"
    try:
        result = publish(stage, repo_id, tag="v1", private=True, api=api)
        code = (f"from as_ai.hub import resolve_model\n"
                f"print(resolve_model({repo_id!r}, 'v1', kind='triage').provenance)\n")
        env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "cache")}
        proc = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True,
                              text=True, timeout=300)
        assert proc.stdout.strip() == f"{repo_id}@{result.commit_sha}", proc.stderr
        files = {s.rfilename for s in api.model_info(repo_id, revision="v1").siblings}
        assert "optimizer.pt" not in files and "as_ai.json" in files
    finally:
        api.delete_repo(repo_id, missing_ok=True)
