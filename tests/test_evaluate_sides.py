"""``train.evaluate``'s joint section (issue 20): known answers for the shared joint figures
(train/_joints_eval.py), the simulated readers' grades, and end to end on a few phantoms with the bundled joint
reader, against the same figures measured the way ``train/joints.py`` measures them."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import cohen_kappa_score, roc_auc_score

from train import _joints_eval as jev
from train import evaluate as ev
from train._joints_sides import SIDE_COLUMNS, render_markdown, render_text

# ------------------------------------------------------------------------------------- a known table
# 4 images x (left, right); flat order is every left joint, then every right joint
TRUE = np.array([[0, 0], [1, 1], [2, 3], [4, 4]])
PRED = np.array([[0, 1], [1, 1], [2, 2], [4, 3]])
OFF_BY_ONE = np.array([[1, 0], [1, 2], [2, 3], [3, 4]])   # a second simulated reader


def _probs(grades: np.ndarray) -> np.ndarray:
    p = np.full((*grades.shape, 5), 0.025)
    np.put_along_axis(p, grades[..., None], 0.9, axis=-1)
    return p


@pytest.fixture(scope="module")
def known() -> dict:
    return jev.grading_of(TRUE, PRED, _probs(PRED), {"reference": TRUE.copy(), "b": OFF_BY_ONE},
                          p_mny=np.array([0.1, 0.4, 0.8, 0.9]), y_true=np.array([0, 0, 1, 1]),
                          y_reference=np.array([0, 1, 0, 1]))


def test_grading_known_confusion_and_accuracy(known):
    assert known["confusion_vs_true"] == [[1, 1, 0, 0, 0], [0, 2, 0, 0, 0], [0, 0, 1, 0, 0], [0, 0, 1, 0, 0],
                                          [0, 0, 0, 1, 1]]
    assert known["exact_accuracy"] == {"left": 1.0, "right": 0.25, "both": 0.625}
    assert known["within_one"] == 1.0
    assert known["n_images"] == 4


def test_grading_known_kappas(known):
    t, p = TRUE.T.reshape(-1), PRED.T.reshape(-1)
    assert known["qwk"]["left"] == 1.0
    assert known["qwk"]["both"] == pytest.approx(cohen_kappa_score(t, p, weights="quadratic"), abs=1e-4)
    assert known["qwk"]["right"] == pytest.approx(cohen_kappa_score(TRUE[:, 1], PRED[:, 1], weights="quadratic"),
                                                  abs=1e-4)
    # two categories: QWK is Cohen's kappa, (3/4 - 1/2) / (1 - 1/2) by hand
    assert jev.grading_of(np.array([[0, 1], [0, 1]]), np.array([[0, 1], [1, 1]]), _probs(np.array([[0, 1], [1, 1]])),
                          {})["qwk"]["both"] == 0.5


def test_grading_vs_each_reader_and_between_readers(known):
    ref, b = known["readers"]["reference"], known["readers"]["b"]
    assert ref["qwk_vs_true"]["both"] == 1.0 and ref["exact_accuracy_vs_true"] == 1.0
    assert ref["confusion_vs_model"] == known["confusion_vs_true"]          # the reference reader is the truth here
    assert ref["model_qwk"] == known["qwk"]["both"]
    fb, ft, fp = OFF_BY_ONE.T.reshape(-1), TRUE.T.reshape(-1), PRED.T.reshape(-1)
    assert b["exact_accuracy_vs_true"] == pytest.approx(np.mean(fb == ft))
    assert b["qwk_vs_true"]["both"] == pytest.approx(cohen_kappa_score(ft, fb, weights="quadratic"), abs=1e-4)
    # (reader b, model) pairs: (1,0) (1,1) (2,2) (3,4) | (0,1) (2,1) (3,2) (4,3)
    assert b["confusion_vs_model"] == [[0, 1, 0, 0, 0], [1, 1, 0, 0, 0], [0, 1, 1, 0, 0], [0, 0, 1, 0, 1],
                                       [0, 0, 0, 1, 0]]
    assert b["model_exact_accuracy"] == pytest.approx(np.mean(fb == fp))
    pair = known["reader_agreement"]["reference~b"]
    assert pair["exact"] == b["exact_accuracy_vs_true"] and pair["qwk"] == b["qwk_vs_true"]["both"]
    assert list(known["reader_agreement"]) == ["reference~b"]
    assert known["reader"]["qwk_vs_true"] == ref["qwk_vs_true"]              # the names train/joints.py reads
    assert known["model_vs_reader"] == {"qwk": ref["model_qwk"], "confusion": ref["confusion_vs_model"]}


def test_the_criterion_auc(known):
    m = known["mny"]
    assert m["auc_vs_true"][1] == 1.0
    assert m["auc_vs_reader_label"][1] == 0.75          # positives 0.4, 0.9 vs negatives 0.1, 0.8: 3 of 4 pairs
    assert m["reader_label_accuracy_vs_true"] == 0.5 and m["accuracy_at_0.5_vs_true"] == 1.0


def test_localisation_known_boxes():
    true = np.array([[[0, 0, 10, 10], [50, 50, 70, 60]]] * 2, float)
    pred = true.copy()
    pred[1, 0] = (5, 0, 15, 10)                              # IoU 50 / 150, centre 5 px off
    found = np.array([[True, True], [True, False]])
    loc = jev.localisation_of(pred, true, found, spacing=np.array([0.5, 0.5]), short_edge=np.array([100, 100]))
    assert loc["n_joints"] == 4 and loc["iou50_rate"] == 0.75 and loc["found_rate"] == 0.75
    assert loc["iou50_rate_by_side"] == {"left": 0.5, "right": 1.0}
    assert loc["mean_iou"] == pytest.approx((3 + 1 / 3) / 4, abs=1e-4)
    assert loc["centre_error_px_median"] == 0.0 and loc["centre_error_px_p95"] == pytest.approx(np.percentile(
        [0, 0, 0, 5], 95), abs=0.01)
    assert loc["centre_error_pct_p95"] == pytest.approx(loc["centre_error_px_p95"], abs=0.01)   # 100 px edge
    assert loc["centre_error_mm_p95"] == pytest.approx(loc["centre_error_px_p95"] / 2, abs=0.01)


def test_undefined_figures_are_none_not_errors():
    same = np.zeros((3, 2), int)
    g = jev.grading_of(same, same, _probs(same), {}, p_mny=np.array([0.2, 0.3, 0.4]), y_true=np.array([0, 0, 1]))
    assert g["qwk"]["both"] is None and g["exact_accuracy"]["both"] == 1.0 and g["mny"]["auc_vs_true"] is None


def test_the_experts_grades_are_recomputed_only_when_they_give_the_stored_labels():
    from as_ai.synthetic.readers import EXPERT1, EXPERT2, REFERENCE

    rows = []
    for seed, g in ((3, (0, 1)), (8, (2, 3)), (13, (4, 4)), (21, (1, 2))):
        rg = REFERENCE.read(g, seed=seed)
        rows.append({"seed": seed, "grade_left": g[0], "grade_right": g[1], "reader_grade_left": rg[0],
                     "reader_grade_right": rg[1], "expert1_label": EXPERT1.label(g, seed=seed),
                     "expert2_label": EXPERT2.label(g, seed=seed)})
    rows[0]["expert2_label"] = {"AS": "non-AS", "non-AS": "AS"}[rows[0]["expert2_label"]]   # not its grades
    got = jev.reader_grades(rows)
    assert list(got) == ["reference", "expert1"]
    np.testing.assert_array_equal(got["expert1"], [EXPERT1.read((r["grade_left"], r["grade_right"]),
                                                                seed=r["seed"]) for r in rows])
    np.testing.assert_array_equal(got["reference"], [[r["reader_grade_left"], r["reader_grade_right"]] for r in rows])
    assert jev.reader_grades([{"grade_left": 1, "grade_right": 2}]) == {}


# ------------------------------------------------------------------------------------------ end to end
N_EXTERNAL = 9


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    from as_ai.synthetic.datasets import write_pxr_dataset

    return write_pxr_dataset(tmp_path_factory.mktemp("pxr"), n=1, n_external=N_EXTERNAL, seed=5, size=384,
                             progress=False)


def _tiny_model(folder: Path, *, joint_reader: str | None = None) -> Path:
    import timm
    import torch

    from as_ai.diagnosis import Diagnoser
    from as_ai.ensemble import Calibration
    from as_ai.imaging import Preprocess

    torch.manual_seed(0)
    archs = {"mnv3": "mobilenetv3_small_050"}
    members = {n: timm.create_model(a, pretrained=False, num_classes=2) for n, a in archs.items()}
    d = Diagnoser(members, archs=archs, preprocess=Preprocess(resize_short=72, crop=64),
                  calibration=Calibration("temperature", a=1.0), threshold=0.5,
                  config={"training": {"synthetic": True}})
    if joint_reader is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            d.attach_joint_reader(joint_reader)       # saved into the repository, named by its as_ai.json
    return d.save_pretrained(folder)


@pytest.fixture(scope="module")
def run(dataset, tmp_path_factory) -> dict:
    """A tiny model carrying (a copy of) the bundled joint reader, evaluated through the command line."""
    import contextlib
    import io

    model = _tiny_model(tmp_path_factory.mktemp("model") / "repo", joint_reader="bundled")
    out = tmp_path_factory.mktemp("report")
    buf = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(buf):
        warnings.simplefilter("ignore")
        code = ev.main(["--model", str(model), "--data", str(dataset), "--out", str(out), "--no-progress",
                        "--softness", "none"])
    assert code == 0
    return {"model": model, "out": out, "stdout": buf.getvalue(),
            "metrics": json.loads((out / "metrics.json").read_text()),
            "pred": pd.read_csv(out / "predictions.csv", keep_default_na=False, na_values=[""])}


@pytest.fixture(scope="module")
def reader():
    from as_ai.joints import load_joint_reader

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_joint_reader()


def test_the_joint_section_is_written_printed_and_reported(run):
    s = run["metrics"]["sides"]
    assert json.loads((run["model"] / "as_ai.json").read_text())["joint_reader"]
    assert "@" in s["reader"] and set(run["pred"]["joint_reader"]) == {s["reader"]}
    assert list(s["sets"]) == ["clean", *[k for k in ("phone_levels_1_3", "phone_level_4") if k in s["sets"]]]
    assert sum(v["n_images"] for k, v in s["sets"].items() if k != "clean") == N_EXTERNAL
    assert sorted(s["by_centre"]) == ["B", "C", "D"]
    clean = s["sets"]["clean"]
    assert set(clean["grading"]["readers"]) == {"reference", "expert1", "expert2"}
    assert len(clean["grading"]["reader_agreement"]) == 3
    assert "centre_error_pct_median" in clean["localisation"] and "vs_anatomical_box" in clean["localisation"]
    assert "joint reader" in run["stdout"] and "grades vs true: QWK" in run["stdout"]
    assert render_text(s) in run["stdout"]
    report = (run["out"] / "report.md").read_text()
    assert report.rstrip().endswith(render_markdown(s).rstrip())
    assert "### Both sacroiliac joints" in report
    assert set(SIDE_COLUMNS) <= set(run["pred"].columns)


def test_the_predictions_hold_the_readers_own_reading(run, dataset, reader):
    pred = run["pred"]
    for split, role, i in (("external", "clean", 2), ("external_phone", "phone", 4)):
        row = pred[pred["set"] == role].iloc[i]
        r = reader(dataset / split / row["file_name"])
        for s in r.sides:
            assert row[f"sij_{s.side}_grade"] == s.grade
            assert row[f"sij_{s.side}_x0"] == pytest.approx(s.box[0], abs=1e-6)
            assert row[f"sij_{s.side}_p3"] == pytest.approx(s.probabilities[3], abs=1e-9)
        assert row["mny_probability"] == pytest.approx(r.mny_probability, abs=1e-9)


def test_the_figures_are_those_train_joints_measures(run, dataset, reader):
    """train/joints.py's evaluate_external reads the files itself; the section measures the predictions table."""
    from as_ai.synthetic.datasets import read_split

    ext = read_split(dataset / "external").to_dict("records")
    ph = read_split(dataset / "external_phone").to_dict("records")
    want = jev.evaluate_external(reader, ext, ph, log=lambda *_: None)
    got = run["metrics"]["sides"]["sets"]
    for k in ("iou50_rate", "mean_iou", "centre_error_px_median", "centre_error_mm_p95", "found_rate"):
        assert got["clean"]["localisation"][k] == want["external"]["localisation"][k], k
        assert (got["clean"]["localisation"]["vs_anatomical_box"][k]
                == want["external"]["localisation"]["vs_anatomical_box"][k]), k
    for k in ("qwk", "exact_accuracy", "confusion_vs_true", "readers", "reader_agreement", "mny"):
        assert got["clean"]["grading"][k] == want["external"]["grading"][k], k
    for name, theirs in (("phone_levels_1_3", "levels_1_3"), ("phone_level_4", "level_4")):
        if name in got:
            assert got[name]["localisation"]["iou50_rate"] == want["external_phone"][theirs]["localisation"]["iou50_rate"]
            assert got[name]["grading"]["confusion_vs_true"] == \
                want["external_phone"][theirs]["grading"]["confusion_vs_true"]
    # and independently: the clean confusion from the metadata and the predicted grades
    meta = pd.read_csv(dataset / "external" / "metadata.csv")
    clean = run["pred"][run["pred"]["set"] == "clean"].merge(meta, on="file_name", suffixes=("", "_m"))
    t = np.concatenate([clean["grade_left"], clean["grade_right"]])
    p = np.concatenate([clean["sij_left_grade"], clean["sij_right_grade"]]).astype(int)
    assert got["clean"]["grading"]["confusion_vs_true"] == jev.confusion(t, p)
    y = (clean["true_label"] == "AS").astype(int)
    assert got["clean"]["grading"]["mny"]["auc_vs_true"][1] == pytest.approx(roc_auc_score(y, clean["mny_probability"]),
                                                                             abs=1e-4)


def test_the_reader_option_and_the_cache(run, dataset, tmp_path):
    import shutil

    out = tmp_path / "r"
    shutil.copytree(run["out"], out)
    args = ["--model", str(run["model"]), "--data", str(dataset), "--out", str(out), "--no-progress",
            "--softness", "none", "--phone-split", "none"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        same = ev.evaluate(run["model"], dataset, out=out, phone_split="none", softness_sigmas=(), progress=False,
                           figures=False)
        assert same.rescored == 0 and same.metrics["sides"]["sets"]["clean"] == run["metrics"]["sides"]["sets"]["clean"]
        off = ev.evaluate(run["model"], dataset, out=out, phone_split="none", softness_sigmas=(), progress=False,
                          figures=False, joints="none")
        assert off.rescored == N_EXTERNAL and "sides" not in off.metrics       # another reader: scored again
        assert ev.main([*args, "--joints", "bundled"]) == 0
    assert json.loads((out / "metrics.json").read_text())["sides"]["sets"]["clean"]["n_images"] == N_EXTERNAL


def test_a_model_without_a_reader_gets_no_section_unless_asked(dataset, tmp_path):
    model = _tiny_model(tmp_path / "repo")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = ev.evaluate(model, dataset, out=tmp_path / "a", phone_split="none", softness_sigmas=(),
                            progress=False, figures=False)
        asked = ev.evaluate(model, dataset, out=tmp_path / "b", phone_split="none", softness_sigmas=(),
                            progress=False, figures=False, joints="bundled")
    assert "sides" not in plain.metrics and "sides" in asked.metrics
    assert "Both sacroiliac joints" not in plain.report.read_text()
    assert asked.metrics["sides"]["sets"]["clean"]["n_images"] == N_EXTERNAL
