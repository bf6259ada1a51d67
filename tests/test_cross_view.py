"""The cross-view ensemble (issue #20): whole-image members and the joint reader combined by one rule.

What a user relies on: the rule's arithmetic is what its docstring says; a malformed or mismatched
``as_ai.json["cross_view"]`` is refused at load with a message naming the fault; a Diagnoser with the rule and a
reader reads both views (probability, label, threshold, members), and without a reader the whole-image ensemble's
own numbers apply; ``save_pretrained`` carries the reader and the rule, and the saved repository reloads to the
same diagnosis; ``train.cross_view`` chooses, fits and writes a rule end to end.
"""
from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from as_ai.cross_view import JOINTS, CrossViewRule, logit
from as_ai.ensemble import Calibration
from as_ai.errors import ModelLoadError

ARCH = "mobilenetv3_small_050"


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


# ------------------------------------------------------------------------------------------ the rule
def test_mean_rule_is_the_mean_of_the_members():
    rule = CrossViewRule("mean", ("a", "b", JOINTS), (1 / 3, 1 / 3, 1 / 3))
    p = rule.probability(np.array([[0.9, 0.3], [0.1, 0.2]]), np.array([0.6, 0.0]))
    assert p == pytest.approx([0.6, 0.1])


def test_weighted_rule_applies_its_weights_then_its_calibration():
    cal = Calibration("platt", 2.0, -1.0)
    rule = CrossViewRule("auc_weighted", ("a", JOINTS), (0.25, 0.75), calibration=cal)
    raw = 0.25 * 0.8 + 0.75 * 0.4
    assert rule.combined(np.array([[0.8]]), np.array([0.4]))[0] == pytest.approx(raw)
    assert rule.probability(np.array([[0.8]]), np.array([0.4]))[0] == pytest.approx(float(cal.apply(np.array([raw]))[0]))


def test_stacking_is_a_logistic_regression_on_the_members_logits():
    rule = CrossViewRule("stacking", ("a", "b", JOINTS), (0.5, 1.0, 2.0), bias=-0.3)
    image, joints = np.array([[0.7, 0.2]]), np.array([0.9])
    want = _sigmoid(-0.3 + 0.5 * logit(0.7) + 1.0 * logit(0.2) + 2.0 * logit(0.9))
    assert rule.probability(image, joints)[0] == pytest.approx(float(want))
    assert np.isfinite(rule.probability(np.array([[0.0, 1.0]]), np.array([1.0]))).all()   # clipped, not inf


@pytest.mark.parametrize("kwargs, match", [
    (dict(rule="median", members=("a", JOINTS), weights=(0.5, 0.5)), "must be one of"),
    (dict(rule="mean", members=(JOINTS, "a"), weights=(0.5, 0.5)), "must end with"),
    (dict(rule="mean", members=("a", JOINTS, JOINTS), weights=(0.3, 0.3, 0.4)), "must end with"),
    (dict(rule="mean", members=("a", JOINTS), weights=(1.0,)), "2 members but 1 weights"),
    (dict(rule="stacking", members=("a", JOINTS), weights=(float("nan"), 1.0)), "finite"),
    (dict(rule="mean", members=("a", JOINTS), weights=(0.5, 0.5), threshold=1.0), "threshold"),
])
def test_a_malformed_rule_names_its_fault(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CrossViewRule(**kwargs)


def test_json_round_trip_and_member_check():
    rule = CrossViewRule("stacking", ("a", "b", JOINTS), (0.5, 1.0, 2.0), bias=-0.3, threshold=0.4,
                         metrics={"cv": {"chosen": "stacking"}})
    entry = json.loads(json.dumps(rule.to_json()))
    assert CrossViewRule.from_json(entry, image_members=["b", "a"]) == rule
    assert CrossViewRule.from_json(None) is None and CrossViewRule.from_json({}) is None
    with pytest.raises(ValueError, match="the ensemble has"):
        CrossViewRule.from_json(entry, image_members=["a", "c"])
    with pytest.raises(ValueError, match="incomplete or malformed"):
        CrossViewRule.from_json({"rule": "mean", "members": ["a", JOINTS]})
    with pytest.raises(ValueError, match="must be an object"):
        CrossViewRule.from_json(["mean"])


def test_applied_reads_both_views_and_keeps_an_indeterminate_label():
    from as_ai.quality import InputCheck
    from as_ai.result import Diagnosis

    rule = CrossViewRule("mean", ("a", JOINTS), (0.5, 0.5), threshold=0.5)
    base = dict(members={"a": 0.2}, spread=0.0, threshold=0.7, model="m", check=InputCheck())
    d = Diagnosis(label="non-AS", probability=0.2, **base)
    out = rule.applied(d, 0.9)
    assert (out.label, out.probability, out.threshold) == ("AS", pytest.approx(0.55), 0.5)
    assert out.members == {"a": 0.2, JOINTS: 0.9} and out.spread == pytest.approx(0.35)
    assert rule.applied(Diagnosis(label="indeterminate", probability=0.2, **base), 0.9).label == "indeterminate"


# ---------------------------------------------------------------------------------------- a diagnoser
def _members(n: int = 2) -> dict[str, torch.nn.Module]:
    import timm

    out = {}
    for i in range(n):
        torch.manual_seed(i)
        out[f"m{i}"] = timm.create_model(ARCH, pretrained=False, num_classes=2)
    return out


RULE = CrossViewRule("stacking", ("m0", "m1", JOINTS), (0.4, 0.6, 1.5), bias=-0.2, threshold=0.45)


@pytest.fixture(scope="module")
def reader():
    from as_ai.joints import load_joint_reader

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_joint_reader()


@pytest.fixture(scope="module")
def repo(tmp_path_factory, reader) -> Path:
    """A two-member repository saved with the bundled reader attached and a cross-view rule (float32)."""
    from as_ai.diagnosis import Diagnoser
    from as_ai.imaging import Preprocess

    members = _members()
    d = Diagnoser(members, archs={n: ARCH for n in members}, preprocess=Preprocess(resize_short=72, crop=64),
                  calibration=Calibration("platt", 1.5, -0.2), threshold=0.5,
                  config={"training": {"synthetic": True}, "cross_view": RULE.to_json()})
    assert d.cross_view == RULE
    d.attach_joint_reader(reader)
    return d.save_pretrained(tmp_path_factory.mktemp("xview") / "model", dtype=torch.float32)


def _load(folder):
    from as_ai.diagnosis import Diagnoser

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Diagnoser.from_pretrained(folder)


@pytest.fixture(scope="module")
def pelvis_image() -> np.ndarray:
    from as_ai.synthetic import pelvis

    return pelvis.render(29, (3, 2), center="C", size=512).image


def test_save_pretrained_carries_the_reader_and_the_rule(repo):
    cfg = json.loads((repo / "as_ai.json").read_text())
    assert cfg["joint_reader"] == {"path": "joints"}
    assert CrossViewRule.from_json(cfg["cross_view"]) == RULE
    assert (repo / "joints" / "joints.json").is_file()
    assert {"joints/joints.json", "joints/grader.safetensors", "joints/localiser.safetensors"} <= set(cfg["files"])


def test_the_loaded_model_reads_both_views(repo, pelvis_image):
    d = _load(repo)
    assert d.joint_reader is not None and d.cross_view == RULE
    r = d(pelvis_image)
    image = np.array([[r.members["m0"], r.members["m1"]]])
    want = float(RULE.probability(image, np.array([r.sides.mny_probability]))[0])
    assert r.probability == pytest.approx(want, abs=1e-9) and r.threshold == RULE.threshold
    assert set(r.members) == {"m0", "m1", JOINTS} and r.members[JOINTS] == r.sides.mny_probability
    if r.label != "indeterminate":
        assert r.label == ("AS" if r.probability >= RULE.threshold else "non-AS")
    again = d.diagnose_batch([pelvis_image])[0]
    assert again.probability == pytest.approx(r.probability, abs=1e-6)
    assert _load(d.save_pretrained(repo.parent / "again", dtype=torch.float32))(pelvis_image).probability == \
        pytest.approx(r.probability, abs=1e-6)


def test_without_a_reader_the_whole_image_ensemble_applies(repo, tmp_path, pelvis_image):
    d = _load(repo)
    d.attach_joint_reader(None)
    r = d(pelvis_image)
    plain = _load(_edited(repo, tmp_path, lambda c: (c.pop("joint_reader"), c.pop("cross_view"))))(pelvis_image)
    assert r.sides is None and set(r.members) == {"m0", "m1"} and r.threshold == 0.5
    assert (r.probability, r.label, r.members) == (plain.probability, plain.label, plain.members)


def _edited(repo: Path, tmp_path: Path, edit) -> Path:
    from as_ai._repo_io import write_config

    folder = tmp_path / "edited"
    shutil.copytree(repo, folder)
    cfg = json.loads((folder / "as_ai.json").read_text())
    edit(cfg)
    write_config(folder, {k: v for k, v in cfg.items() if k != "files"},
                 hashed=[f for f in cfg["files"] if (folder / f).is_file()])
    return folder


def test_a_rule_without_a_reader_is_refused_at_load(repo, tmp_path):
    folder = _edited(repo, tmp_path, lambda c: c.pop("joint_reader"))
    with pytest.raises(ModelLoadError, match="no 'joint_reader' is named"):
        _load(folder)


def test_a_rule_for_other_members_is_refused_at_load(repo, tmp_path):
    def rename(c):
        c["cross_view"]["members"] = ["m0", "zz", JOINTS]
    with pytest.raises(ModelLoadError, match="the ensemble has"):
        _load(_edited(repo, tmp_path, rename))


def test_a_tampered_reader_inside_the_repository_is_refused(repo, tmp_path):
    folder = tmp_path / "tampered"
    shutil.copytree(repo, folder)
    w = folder / "joints" / "grader.safetensors"
    data = bytearray(w.read_bytes())
    data[-1] ^= 0xFF
    w.write_bytes(bytes(data))
    with pytest.raises(ModelLoadError):
        _load(folder)


# ------------------------------------------------------------------------------------------ the script
def test_choose_rule_prefers_what_cross_validation_finds_and_thresholds_it():
    from train.cross_view import Predictions, choose_rule

    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(150, int), np.ones(150, int)]
    joints = _sigmoid(3.0 * (2 * y - 1) + rng.normal(0, 1.0, 300))          # the informative view
    image = _sigmoid(0.8 * (2 * y - 1)[:, None] + rng.normal(0, 1.5, (300, 2)))  # weak, correlated members
    fit = Predictions(("a", "b", JOINTS), np.column_stack([image, joints]), y, np.zeros(300, bool), np.zeros(300, int),
                      np.arange(300) % 150, np.zeros(300))   # two reads of each of 150 phantoms
    rule, cv = choose_rule(fit)
    assert cv["chosen"] == rule.rule and set(cv["rules"]) == {"mean", "auc_weighted", "stacking"}
    best = max(v["auc"] for v in cv["rules"].values())
    assert cv["rules"][rule.rule]["auc"] >= best - 0.002
    assert 0.0 < rule.threshold < 1.0
    if rule.rule == "stacking":
        assert rule.weights[-1] > max(rule.weights[:-1])    # the informative member weighs most


def test_fit_views_are_the_same_phantoms_reacquired_and_photographed(tmp_path):
    import pandas as pd

    from as_ai.decoding import load_radiograph
    from as_ai.synthetic.datasets import write_pxr_dataset
    from train.cross_view import photographed, reacquired

    data = write_pxr_dataset(tmp_path / "pxr", n=4, n_external=1, seed=3, size=256, progress=False)
    meta = pd.read_csv(data / "train" / "metadata.csv")
    re, ph = reacquired(data / "train", tmp_path / "re"), photographed(data / "train", tmp_path / "ph")
    for folder in (re, ph):
        m = pd.read_csv(folder / "metadata.csv")
        assert list(m["true_label"]) == list(meta["true_label"]) and len(m) == 4
    assert list(pd.read_csv(ph / "metadata.csv")["phone_level"]) == [1, 2, 3, 4]
    a = load_radiograph(data / "train" / meta["file_name"][0]).pixels
    b = load_radiograph(re / pd.read_csv(re / "metadata.csv")["file_name"][0]).pixels
    assert a.shape == b.shape and 0 < np.abs(a - b).mean() < 0.3     # the same phantom, processed otherwise
    again = reacquired(data / "train", tmp_path / "re2")
    assert (load_radiograph(again / "000000.png").pixels == load_radiograph(re / "000000.png").pixels).all()


def test_train_cross_view_end_to_end(tmp_path):
    """The script on a handful of phantoms with the bundled model: reads both views, fits, measures, writes."""
    import as_ai
    from as_ai.synthetic.datasets import write_pxr_dataset
    from train import cross_view

    data = write_pxr_dataset(tmp_path / "pxr", n=24, n_external=12, seed=3, size=384, progress=False)
    model = tmp_path / "model"
    shutil.copytree(Path(as_ai.__file__).parent / "demo_models" / "diagnosis", model)
    out = tmp_path / "out"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = cross_view.main(["--model", str(model), "--reader", "bundled", "--fit", str(data / "train"),
                                "--test", str(data / "external"), "--phone", str(data / "external_phone"),
                                "--out", str(out), "--write"])
    assert code == 0
    written = json.loads((out / "cross_view.json").read_text())
    assert written["rule"] in ("mean", "auc_weighted", "stacking")
    assert {"cv", "external", "external_phone"} <= set(written["metrics"])
    assert {f"predictions_fit_{v}.npz" for v in cross_view.FIT_VIEWS} <= {p.name for p in out.iterdir()}
    assert written["metrics"]["cv"]["fit_views"] == list(cross_view.FIT_VIEWS)
    assert cross_view.main(["--model", str(model), "--fit", str(data / "train"), "--test", str(data / "external"),
                            "--out", str(out), "--fit-views", "clean,screen"]) == 2   # an unknown view is named
    cfg = json.loads((model / "as_ai.json").read_text())
    assert cfg["joint_reader"] == "bundled" and cfg["cross_view"]["rule"] == written["rule"]
    assert _load(model).cross_view is not None
