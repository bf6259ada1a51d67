"""as_ai.hub: model repos resolved from local folders and, over real HTTP, from a Hub (a local olah mirror).

The Hub client runs in a fresh interpreter per check (``olah_mirror.python``) because huggingface_hub
reads HF_ENDPOINT / HF_HUB_CACHE / HF_HUB_OFFLINE when it is imported.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path

import pytest

pytest.register_assert_rewrite("olah_mirror")  # imported here before pytest loads it as a plugin

from as_ai.errors import ModelLoadError, UntrustedModelError  # noqa: E402
from as_ai.hub import resolve_model  # noqa: E402
from olah_mirror import REPO_ROOT, MirrorHfApi, evil_pipeline, write_diagnosis_repo, write_triage_repo  # noqa: E402
from train.publish import publish  # noqa: E402

pytest_plugins = ["olah_mirror"]


# --- local folders: the same checks a pulled snapshot goes through ---------------------------------------
def _tiny_repo(folder: Path, *, kind: str = "triage", files: dict[str, bytes] | None = None, **cfg_extra) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    files = files if files is not None else {"basfi.skops": b"not really skops", "basdai.skops": b"neither"}
    for rel, data in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
    cfg = {"kind": kind, "format_version": 1, "training": {"synthetic": True},
           "files": {rel: hashlib.sha256(data).hexdigest() for rel, data in files.items()}}
    cfg.update(cfg_extra)
    (folder / "as_ai.json").write_text(json.dumps(cfg))
    return folder


def _edit_cfg(folder: Path, **changes) -> None:
    cfg = json.loads((folder / "as_ai.json").read_text())
    cfg.update(changes)
    (folder / "as_ai.json").write_text(json.dumps(cfg))


def test_local_folder_resolves_with_content_hash(tmp_path):
    repo = _tiny_repo(tmp_path / "m")
    r = resolve_model(repo, kind="triage")
    assert r.path == repo and r.kind == "triage"
    assert r.provenance.endswith("@" + r.revision) and len(r.revision) == 12
    _edit_cfg(repo, note="changed")
    assert resolve_model(repo, kind="triage").revision != r.revision  # content hash follows as_ai.json


LOCAL_ERRORS = [
    # (how to break the folder, expected error class, words the message must contain)
    (lambda f: _edit_cfg(f, kind="diagnosis"), ModelLoadError, "'diagnosis' model, but a 'triage' model"),
    (lambda f: _edit_cfg(f, format_version=7), ModelLoadError, "format_version 7"),
    (lambda f: (f / "basfi.skops").unlink(), ModelLoadError, "missing 'basfi.skops'"),
    (lambda f: (f / "basfi.skops").write_bytes(b"tampered"), ModelLoadError, "Checksum mismatch for 'basfi.skops'"),
    (lambda f: _edit_cfg(f, files={}), ModelLoadError, "lists no files with checksums"),
    (lambda f: _edit_cfg(f, files={"../outside.skops": "0" * 64}), ModelLoadError, "outside the repository"),
    (lambda f: _edit_cfg(f, files={"basfi.skops": "abc"}), ModelLoadError, "lowercase hex sha256"),
    (lambda f: _edit_cfg(f, files={"model.pkl": "0" * 64, "w.PT": "1" * 64}), UntrustedModelError,
     "pickle-based files ['model.pkl', 'w.PT']"),
    (lambda f: (f / "as_ai.json").write_text("{not json"), ModelLoadError, "not valid JSON"),
    (lambda f: (f / "as_ai.json").unlink(), ModelLoadError, "not an as-ai model repository"),
]


@pytest.mark.parametrize("breaker, error, words", LOCAL_ERRORS)
def test_local_folder_errors(tmp_path, breaker, error, words):
    repo = _tiny_repo(tmp_path / "m")
    breaker(repo)
    with pytest.raises(error) as info:
        resolve_model(repo, kind="triage")
    assert words in str(info.value)
    assert type(info.value) is error and info.value.model_id == str(repo)


def test_pickle_refusal_names_the_files(tmp_path):
    repo = _tiny_repo(tmp_path / "m", files={"members/a/pytorch_model.bin": b"\x80\x04junk"})
    with pytest.raises(UntrustedModelError) as info:
        resolve_model(repo, kind="triage")
    assert info.value.untrusted == ["members/a/pytorch_model.bin"]


@pytest.mark.parametrize("model_id, revision, words", [
    ("org/pxr@v1", "v2", "pins revision 'v1' but revision='v2'"),
    ("not a repo id!", None, "neither an existing local folder nor a valid Hub repo id"),
    ("a/b/c", None, "neither an existing local folder nor a valid Hub repo id"),
])
def test_bad_model_ids_fail_before_any_download(model_id, revision, words):
    with pytest.raises(ModelLoadError) as info:
        resolve_model(model_id, revision, kind="diagnosis")
    assert words in str(info.value)


def test_revision_on_a_local_folder_is_refused(tmp_path):
    with pytest.raises(ModelLoadError, match="revisions apply to Hub repositories only"):
        resolve_model(_tiny_repo(tmp_path / "m"), "v1", kind="triage")


# --- hand-made repos of both kinds ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def staged(tmp_path_factory):
    """Hand-made repos of both kinds (written once per module)."""
    root = tmp_path_factory.mktemp("staged")
    return {"diagnosis": write_diagnosis_repo(root / "pxr"), "triage": write_triage_repo(root / "triage")}


# --- over HTTP through the olah mirror ---------------------------------------------------------------------
@pytest.fixture
def repo_id():
    return f"as-ai-test/m-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def hub(olah_mirror):
    return MirrorHfApi(olah_mirror)


def _resolve_snippet(*calls: str) -> str:
    """Client code: resolve each call and report provenance, revision, files (or the error)."""
    body = ", ".join(f"_one(lambda: resolve_model({c}))" for c in calls)
    return f"""
from as_ai.hub import resolve_model
def _one(fn):
    err = error_of(fn)
    if err:
        return err
    r = fn()
    return {{"provenance": r.provenance, "revision": r.revision, "requested": r.requested_revision,
            "threshold": r.config.get("threshold"), "path": str(r.path),
            "files": sorted(p.relative_to(r.path).as_posix() for p in r.path.rglob("*") if p.is_file())}}
emit([{body}])
"""


def test_pull_by_tag_records_commit_and_fetches_only_listed_files(olah_mirror, hub, staged, repo_id, tmp_path):
    folder = shutil.copytree(staged["diagnosis"], tmp_path / "stage")
    (folder / "optimizer.pt").write_bytes(b"\x80\x04 not for upload")
    pub = publish(folder, repo_id, tag="v1", api=hub)
    # a stray pickle pushed to the repo by hand must not be fetched either
    olah_mirror.commit_files(repo_id, {"extra/pytorch_model.bin": b"\x80\x04x"}, "stray file")
    [by_tag, by_sha, at_syntax] = olah_mirror.python(_resolve_snippet(
        f"{repo_id!r}, 'v1', kind='diagnosis'", f"{repo_id!r}, {pub.commit_sha!r}, kind='diagnosis'",
        f"{repo_id + '@v1'!r}, kind='diagnosis'"), cache=tmp_path / "cache")
    assert by_tag["provenance"] == f"{repo_id}@{pub.commit_sha}"
    assert by_tag["revision"] == pub.commit_sha and by_tag["requested"] == "v1"
    assert by_tag["files"] == ["README.md", "as_ai.json", "input_gate.safetensors", "members/m0/config.json",
                               "members/m0/model.safetensors"]
    assert by_sha["provenance"] == by_tag["provenance"] == at_syntax["provenance"]
    cached = [p.name for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    assert not any(n.endswith((".bin", ".pt")) for n in cached)


def test_tag_is_immutable_while_main_moves_and_tampering_is_refused(olah_mirror, hub, staged, repo_id, tmp_path):
    v1 = publish(staged["diagnosis"], repo_id, tag="v1", api=hub)
    # a legitimate new version on main (new threshold, consistent checksums)
    v2_folder = shutil.copytree(staged["diagnosis"], tmp_path / "v2")
    _edit_cfg(v2_folder, threshold=0.7)
    v2 = publish(v2_folder, repo_id, api=hub)
    assert v2.commit_sha != v1.commit_sha
    # then someone swaps a weight on main without updating as_ai.json
    weight = "members/m0/model.safetensors"
    tampered = olah_mirror.commit_files(
        repo_id, {weight: (staged["diagnosis"] / weight).read_bytes()[:-8] + b"\x00" * 8}, "swap weights")
    [at_v1, at_main] = olah_mirror.python(_resolve_snippet(
        f"{repo_id!r}, 'v1', kind='diagnosis'", f"{repo_id!r}, kind='diagnosis'"), cache=tmp_path / "cache")
    assert at_v1["provenance"] == f"{repo_id}@{v1.commit_sha}" and at_v1["threshold"] == 0.5
    assert at_main["type"] == "ModelLoadError"
    assert f"Checksum mismatch for '{weight}'" in at_main["message"]
    # the last good commit on main is still loadable by its sha
    [at_v2] = olah_mirror.python(_resolve_snippet(f"{repo_id!r}, {v2.commit_sha!r}, kind='diagnosis'"),
                                 cache=tmp_path / "cache")
    assert at_v2["threshold"] == 0.7 and tampered != v2.commit_sha


def test_offline_after_pull_loads_the_pinned_revision(olah_mirror, hub, staged, repo_id, tmp_path):
    pub = publish(staged["triage"], repo_id, tag="v1", api=hub)
    cache = tmp_path / "cache"
    [online] = olah_mirror.python(_resolve_snippet(f"{repo_id!r}, 'v1', kind='triage'"), cache=cache)
    olah_mirror.commit_files(repo_id, {"notes.md": b"moved on"}, "later commit")  # main moves after the pull
    [tag, sha, uncached_rev, uncached_repo] = olah_mirror.python(_resolve_snippet(
        f"{repo_id!r}, 'v1', kind='triage'", f"{repo_id!r}, {pub.commit_sha!r}, kind='triage'",
        f"{repo_id!r}, 'v2', kind='triage'", "'as-ai-test/never-pulled', 'v1', kind='triage'"),
        cache=cache, offline=True)
    assert tag["provenance"] == sha["provenance"] == online["provenance"] == f"{repo_id}@{pub.commit_sha}"
    for err in (uncached_rev, uncached_repo):
        assert err["type"] == "ModelLoadError"
        assert "HF_HUB_OFFLINE is set" in err["message"] and "not in the local cache" in err["message"]
    assert uncached_repo["model_id"] == "as-ai-test/never-pulled"


def test_hub_errors_say_what_went_wrong(olah_mirror, hub, staged, repo_id, tmp_path):
    publish(staged["diagnosis"], repo_id, tag="v1", api=hub)
    # a repo that is not an as-ai repo, and one whose as_ai.json lists a pickle / a file it lacks
    plain, pickled, holey = repo_id + "-plain", repo_id + "-pickle", repo_id + "-holey"
    hub.create_repo(plain)
    olah_mirror.commit_files(plain, {"config.json": b"{}"}, "timm-only repo")
    hub.create_repo(pickled)
    sha = hashlib.sha256(b"\x80\x04x").hexdigest()
    olah_mirror.commit_files(pickled, {"as_ai.json": json.dumps(
        {"kind": "diagnosis", "format_version": 1, "files": {"pytorch_model.bin": sha}}).encode(),
        "pytorch_model.bin": b"\x80\x04x"}, "pickled weights")
    hub.create_repo(holey)
    olah_mirror.commit_files(holey, {"as_ai.json": json.dumps(
        {"kind": "diagnosis", "format_version": 1, "files": {"gone.safetensors": "a" * 64}}).encode()}, "holey")
    results = olah_mirror.python(_resolve_snippet(
        "'as-ai-test/does-not-exist', kind='diagnosis'",
        f"{repo_id!r}, 'v9', kind='diagnosis'",
        f"{repo_id!r}, 'v1', kind='triage'",
        f"{plain!r}, kind='diagnosis'",
        f"{pickled!r}, kind='diagnosis'",
        f"{holey!r}, kind='diagnosis'"), cache=tmp_path / "cache")
    expected = [
        ("ModelLoadError", "Model repository 'as-ai-test/does-not-exist' was not found"),
        ("ModelLoadError", "Revision 'v9' was not found in"),
        ("ModelLoadError", "is a 'diagnosis' model, but a 'triage' model is needed"),
        ("ModelLoadError", "has no as_ai.json: it is not an as-ai model repository"),
        ("UntrustedModelError", "pickle-based files ['pytorch_model.bin']"),
        ("ModelLoadError", "is missing 'gone.safetensors'"),
    ]
    for got, (cls, words) in zip(results, expected):
        assert got.get("type") == cls and words in got["message"], got
    assert "['main', 'v1']" in results[1]["message"]  # tells which revisions exist
    assert results[4]["untrusted"] == ["pytorch_model.bin"]
    assert not list((tmp_path / "cache").rglob("pytorch_model.bin"))  # refused before downloading


# --- end to end: the library's own loaders, pulling by repo id -----------------------------------------------
DEMO = REPO_ROOT / "as_ai" / "demo_models"
needs_demo_triage = pytest.mark.skipif(not (DEMO / "triage" / "as_ai.json").is_file(),
                                       reason="the bundled triage demo repo is not built yet")
_PATIENT = """
import json
feats = json.load(open({cfg!r}))["features"]
patient = {{f["name"]: (False if f["type"] == "bool" else int((f["min"] + f["max"]) / 4) if f["type"] == "int"
            else (f["min"] + f["max"]) / 4) for f in feats}}
"""


@pytest.fixture(scope="module")
def diagnoser_repo(tmp_path_factory):
    """A one-member diagnosis repo written by ``Diagnoser.save_pretrained`` (the library's own format)."""
    import timm
    import torch

    from as_ai import Diagnoser
    from as_ai.imaging import Preprocess

    torch.manual_seed(0)
    member = timm.create_model("mobilenetv3_small_050", pretrained=False, num_classes=2)
    diagnoser = Diagnoser({"m0": member}, archs={"m0": "mobilenetv3_small_050"},
                          preprocess=Preprocess(resize_short=128, crop=112), config={"training": {"synthetic": True}})
    return diagnoser.save_pretrained(tmp_path_factory.mktemp("diagnoser") / "pxr")


@pytest.fixture(scope="module")
def phantom_png(tmp_path_factory):
    from PIL import Image

    from as_ai.synthetic.pelvis import render

    path = tmp_path_factory.mktemp("img") / "pelvis.png"
    Image.fromarray((render(11, (3, 3), size=256).image * 255).astype("uint8")).save(path)
    return path


def test_diagnose_by_repo_id_at_a_tag_then_offline(olah_mirror, hub, diagnoser_repo, phantom_png, repo_id, tmp_path):
    pub = publish(diagnoser_repo, repo_id, tag="v1", api=hub)
    cache = tmp_path / "cache"
    code = f"""
import warnings, as_ai
warnings.simplefilter("ignore")
d = as_ai.diagnose({str(phantom_png)!r}, model={repo_id!r}, revision="v1")
local = as_ai.diagnose({str(phantom_png)!r}, model={str(diagnoser_repo)!r}) if LOCAL else d
emit([d.model, d.probability, d.members, local.probability])
"""
    [model, prob, members, local_prob] = olah_mirror.python("LOCAL = True" + code, cache=cache)
    assert model == f"{repo_id}@{pub.commit_sha}"
    assert prob == pytest.approx(local_prob, abs=1e-6) and set(members) == {"m0"}
    # after the pull, with the network off, the same pinned model answers the same
    [model_off, prob_off, _, _] = olah_mirror.python("LOCAL = False" + code, cache=cache, offline=True)
    assert model_off == model and prob_off == pytest.approx(prob, abs=1e-6)


@needs_demo_triage
def test_triage_by_repo_id_at_a_tag(olah_mirror, hub, repo_id, tmp_path):
    pub = publish(DEMO / "triage", repo_id, tag="v1", api=hub)
    olah_mirror.commit_files(repo_id, {"README.md": b"---\nlicense: mit\n---\nedited later\n"}, "edit card")
    cfg = str(DEMO / "triage" / "as_ai.json")
    [hub_t, local_t, model_env] = olah_mirror.python(_PATIENT.format(cfg=cfg) + f"""
import os, warnings, as_ai
warnings.simplefilter("ignore")
hub_t = as_ai.triage(patient, model={repo_id!r}, revision="v1").to_dict()
local_t = as_ai.triage(patient, model={str(DEMO / "triage")!r}).to_dict()
os.environ["AS_AI_TRIAGE_MODEL"] = {repo_id + "@v1"!r}
emit([hub_t, local_t, as_ai.triage(patient).model])
""", cache=tmp_path / "cache")
    assert hub_t["model"] == model_env == f"{repo_id}@{pub.commit_sha}"
    for key in ("basfi", "basdai", "groups", "risk", "cutoffs", "intervals"):
        assert hub_t[key] == local_t[key], key  # the same model, wherever it came from


@needs_demo_triage
def test_untrusted_skops_type_in_a_pulled_repo_is_refused(olah_mirror, hub, repo_id, tmp_path):
    """A published triage repo whose pipeline smuggles ``os.system`` (checksums intact) is never loaded."""
    import skops.io as sio

    from as_ai.hub import sha256_file

    evil = shutil.copytree(DEMO / "triage", tmp_path / "evil")
    sio.dump(evil_pipeline(), evil / "basfi.skops")
    _edit_cfg(evil, files={**json.loads((evil / "as_ai.json").read_text())["files"],
                           "basfi.skops": sha256_file(evil / "basfi.skops")})
    publish(evil, repo_id, tag="v1", api=hub)
    [err] = olah_mirror.python(f"""
from as_ai import Triager
emit([error_of(Triager.from_pretrained, {repo_id!r}, "v1")])
""", cache=tmp_path / "cache")
    assert err["type"] == "UntrustedModelError", err
    assert f"{os.system.__module__}.system" in err["untrusted"]  # posix.system on Linux, named
    assert err["model_id"] == repo_id


def test_a_member_loads_with_timm_through_the_mirror(olah_mirror, hub, staged, repo_id, tmp_path):
    """timm's own hf-hub loader fetches a member's weights from the repo's subfolder at the tag.

    ``timm.create_model("hf-hub:org/name@rev")`` reads ``config.json`` at the repo root; our members live in
    ``members/<name>/``, so the member's config is fetched and timm is pointed at the weights with
    ``pretrained_cfg_overlay`` (``hf_hub_id`` = "org/name@rev", ``hf_hub_filename`` = the subfolder file).
    """
    publish(staged["diagnosis"], repo_id, tag="v1", api=hub)
    weights = staged["diagnosis"] / "members/m0/model.safetensors"
    [diff, n_keys, same_keys, random_diff] = olah_mirror.python(f"""
import json, timm, torch, safetensors.torch
from huggingface_hub import hf_hub_download
cfg = json.load(open(hf_hub_download({repo_id!r}, "members/m0/config.json", revision="v1")))
model = timm.create_model(cfg["architecture"], pretrained=True, num_classes=cfg["num_classes"],
    pretrained_cfg_overlay=dict(cfg["pretrained_cfg"], source="hf-hub", hf_hub_id={repo_id + '@v1'!r},
                                hf_hub_filename="members/m0/model.safetensors"))
ref = safetensors.torch.load_file({str(weights)!r})
sd = model.state_dict()
torch.manual_seed(123)
fresh = timm.create_model(cfg["architecture"], pretrained=False, num_classes=cfg["num_classes"]).state_dict()
d = lambda a: max(float((a[k].float() - ref[k].float()).abs().max()) for k in ref)
emit([d(sd), len(ref), sorted(sd) == sorted(ref), d(fresh)])
""", cache=tmp_path / "cache", timeout=300)
    assert diff == 0.0 and same_keys and n_keys > 50
    assert random_diff > 0.01  # a freshly initialised model differs: the weights really came over HTTP
