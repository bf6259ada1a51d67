"""The study-style external evaluation (train/evaluate.py): report folder, metrics, cache, reader study.

End to end on a tiny phantom dataset from the data engine (external centres B-D + phone photos) and a tiny
two-member ensemble written in the real repository format (random weights: the numbers are not the point,
their consistency with the predictions and with independent recomputation is).
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.metrics import roc_auc_score

from as_ai.metrics import auc_ci, delong_test, expected_calibration_error
from train import evaluate as ev

N_EXTERNAL = 30
FIGURES = ("roc.png", "roc_centres.png", "calibration.png", "confusion.png", "roc_phone.png")


# ------------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    from as_ai.synthetic.datasets import write_pxr_dataset

    return write_pxr_dataset(tmp_path_factory.mktemp("pxr"), n=1, n_external=N_EXTERNAL, seed=3, size=128,
                             progress=False)


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    import timm
    import torch

    from as_ai.diagnosis import Diagnoser
    from as_ai.ensemble import Calibration
    from as_ai.imaging import Preprocess

    torch.manual_seed(0)
    archs = {"mnv3": "mobilenetv3_small_050", "res": "resnet10t"}
    members = {n: timm.create_model(a, pretrained=False, num_classes=2) for n, a in archs.items()}
    d = Diagnoser(members, archs=archs, preprocess=Preprocess(resize_short=72, crop=64),
                  calibration=Calibration("temperature", a=0.8), threshold=0.45,
                  config={"training": {"synthetic": True}})
    return d.save_pretrained(tmp_path_factory.mktemp("model") / "repo")


@pytest.fixture(scope="module")
def report(dataset, model, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tiny model has no input gate: it warns so
        code = ev.main(["--model", str(model), "--data", str(dataset), "--out", str(out), "--no-progress"])
    assert code == 0
    return out


@pytest.fixture(scope="module")
def metrics(report) -> dict:
    return json.loads((report / "metrics.json").read_text())


@pytest.fixture(scope="module")
def pred(report) -> pd.DataFrame:
    return pd.read_csv(report / "predictions.csv")


# ---------------------------------------------------------------------------------------- end to end
def test_report_folder_has_every_output(report):
    for name in ("report.md", "metrics.json", "predictions.csv", *FIGURES):
        assert (report / name).is_file(), name
    for name in FIGURES:
        with Image.open(report / name) as im:
            assert im.format == "PNG" and min(im.size) >= 300


def test_predictions_cover_every_image_and_come_from_the_model(pred, dataset, model):
    from as_ai.diagnosis import Diagnoser

    meta = pd.read_csv(dataset / "external" / "metadata.csv")
    phone = pd.read_csv(dataset / "external_phone" / "metadata.csv")
    clean = pred[pred["set"] == "clean"]
    assert sorted(clean["file_name"]) == sorted(meta["file_name"])
    assert sorted(pred.loc[pred["set"] == "phone", "file_name"]) == sorted(phone["file_name"])
    assert pred["prob"].between(0, 1).all() and pred["model"].nunique() == 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d = Diagnoser.from_pretrained(model)
    for split, row in ((dataset / "external", clean.iloc[3]), (dataset / "external_phone",
                                                                 pred[pred["set"] == "phone"].iloc[5])):
        got = d(split / row["file_name"])
        assert got.probability == pytest.approx(row["prob"], abs=1e-6)
        assert got.members["res"] == pytest.approx(row["member:res"], abs=1e-6)
    truth = dict(zip(meta["file_name"], meta["true_label"] == "AS"))
    assert all(bool(y) == truth[f] for f, y in zip(clean["file_name"], clean["y_true"]))


def test_metrics_agree_with_recomputation_from_predictions(metrics, pred):
    clean = pred[pred["set"] == "clean"]
    y, p = clean["y_true"].to_numpy(), clean["prob"].to_numpy()
    assert metrics["truth"] == "true" and metrics["n"] == N_EXTERNAL == len(clean)
    o = metrics["overall"]
    assert o["auc"]["auc"] == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert (o["auc"]["low"], o["auc"]["high"]) == pytest.approx(auc_ci(y, p)[::2], abs=1e-12)
    t = metrics["threshold"]
    assert t == 0.45
    tp, fp = int(((p >= t) & (y == 1)).sum()), int(((p >= t) & (y == 0)).sum())
    fn, tn = int(((p < t) & (y == 1)).sum()), int(((p < t) & (y == 0)).sum())
    assert o["confusion"] == {"tn": tn, "fp": fp, "fn": fn, "tp": tp}
    assert o["recall"] == pytest.approx(tp / (tp + fn))
    assert o["ece"] == pytest.approx(expected_calibration_error(y, p))
    yr = clean["y_reference"].to_numpy()
    assert metrics["overall_vs_reference"]["auc"]["auc"] == pytest.approx(roc_auc_score(yr, p))
    # per centre: every centre, AUC from its own rows
    assert sorted(metrics["centres"]) == ["B", "C", "D"]
    for c, g in clean.groupby("center"):
        r = metrics["centres"][c]
        assert r["n"] == len(g) and r["n_as"] == int(g["y_true"].sum())
        if r["auc"] is not None:
            assert r["auc"]["auc"] == pytest.approx(roc_auc_score(g["y_true"], g["prob"]))
        else:
            assert min(g["y_true"].sum(), len(g) - g["y_true"].sum()) < 2
    # members vs ensemble: paired DeLong on the same cases
    aucs = {n: roc_auc_score(y, clean[f"member:{n}"]) for n in ("mnv3", "res")}
    assert metrics["best_member"] == max(aucs, key=aucs.get)
    best = metrics["best_member"]
    assert metrics["ensemble_vs_best"]["p"] == pytest.approx(delong_test(y, p, clean[f"member:{best}"]).p)


def test_phone_set_is_paired_with_its_clean_images(metrics, pred):
    # pair by file stem (000012.png <-> 000012.jpg), independently of the evaluator's centre/seed key
    clean = pred[pred["set"] == "clean"].assign(stem=lambda d: d["file_name"].str[:-4])
    phone = pred[pred["set"] == "phone"].assign(stem=lambda d: d["file_name"].str[:-4])
    both = phone.merge(clean, on="stem", suffixes=("_ph", "_cl"))
    y = both["y_true_cl"].to_numpy()
    ph = metrics["phone"]
    assert ph["n"] == len(both) == N_EXTERNAL and ph["n_unmatched"] == 0
    assert ph["phone"]["auc"]["auc"] == pytest.approx(roc_auc_score(y, both["prob_ph"]))
    assert ph["clean"]["auc"]["auc"] == pytest.approx(roc_auc_score(y, both["prob_cl"]))
    assert ph["auc_drop"] == pytest.approx(roc_auc_score(y, both["prob_cl"]) - roc_auc_score(y, both["prob_ph"]))
    assert ph["label_flips"] == int(((both["prob_ph"] >= 0.45) != (both["prob_cl"] >= 0.45)).sum())
    assert sum(v["n"] for v in ph["levels"].values()) == N_EXTERNAL


def test_reader_study_or_rule_and_kappa(metrics, pred):
    clean = pred[pred["set"] == "clean"]
    y = clean["y_true"].to_numpy().astype(bool)
    model_says = clean["prob"].to_numpy() >= metrics["threshold"]
    rd = metrics["readers"]
    for r in ("expert1", "expert2"):
        alone = clean[f"reader:{r}"].to_numpy().astype(bool)
        both = alone | model_says
        got = rd["readers"][r]
        assert got["alone"]["recall"] == pytest.approx((alone & y).sum() / y.sum())
        assert got["alone"]["specificity"] == pytest.approx((~alone & ~y).sum() / (~y).sum())
        assert got["with_model"]["recall"] == pytest.approx((both & y).sum() / y.sum())
        assert got["with_model"]["accuracy"] == pytest.approx((both == y).mean())
        assert got["with_model"]["recall"] >= got["alone"]["recall"]  # the OR rule can only add AS calls
    from sklearn.metrics import cohen_kappa_score

    k = rd["kappa"]["expert1 vs expert2"]
    assert k["kappa"] == pytest.approx(cohen_kappa_score(clean["reader:expert1"], clean["reader:expert2"]))
    assert k["band"] in ("poor", "slight", "fair", "moderate", "substantial", "almost perfect")
    assert "expert1 vs reference" in rd["kappa"] and "model vs truth" in rd["kappa"]


def test_report_reads_like_a_results_section(report, metrics):
    text = (report / "report.md").read_text()
    assert "Synthetic data" in text  # everything trained on synthetic data says so
    o = metrics["overall"]["auc"]
    assert f"AUC of {o['auc']:.3f} (95 % CI {o['low']:.3f}–{o['high']:.3f})" in text
    for c in metrics["centres"]:
        assert f"| {c} | {metrics['centres'][c]['n']} |" in text
    for section in ("Per centre", "Ensemble versus its members", "Smartphone photographs", "Reader study"):
        assert f"### {section}" in text
    assert f"drop of {metrics['phone']['auc_drop']:.3f}" in text
    for f in FIGURES:
        assert f"]({f})" in text
    tg = metrics["targets"]
    assert tg["auc"]["met"] is (o["auc"] >= 0.95) and tg["phone_auc_drop"]["value"] == metrics["phone"]["auc_drop"]
    assert "| External AUC | >= 0.95 |" in text


def test_softness_test_reads_the_clean_images_again_blurred(report, metrics, pred):
    so = metrics["softness"]
    clean = pred[pred["set"] == "clean"]
    assert [r["sigma"] for r in so["rows"]] == [0.0, *ev.SOFTNESS_SIGMAS] and so["n"] == len(clean)
    base = so["rows"][0]                 # unblurred: the same probabilities as the scored predictions
    y = clean["y_true"].to_numpy()
    assert base["mean_prob_non_as"] == pytest.approx(clean["prob"][y == 0].mean(), abs=1e-5)
    assert base["auc"] == pytest.approx(roc_auc_score(y, clean["prob"]), abs=1e-6)
    assert so["rows"][-1]["mean_prob_as"] != pytest.approx(base["mean_prob_as"], abs=1e-9)  # blur changes scores
    text = (report / "report.md").read_text()
    assert "### Softer images" in text and f"| 1 | {so['rows'][-1]['auc']:.3f} |" in text


def test_softness_metrics_on_known_scores():
    y = np.array([0, 0, 1, 1])
    out = ev.softness_metrics(y, {1.0: np.array([0.8, 0.2, 0.7, 0.9]), 0.0: np.array([0.1, 0.2, 0.7, 0.9])}, 0.5)
    assert [r["sigma"] for r in out["rows"]] == [0.0, 1.0]     # sorted, the image as it is first
    sharp, soft = out["rows"]
    assert sharp["specificity"] == 1.0 and soft["specificity"] == 0.5 and soft["sensitivity"] == 1.0
    assert soft["mean_prob_non_as"] == pytest.approx(0.5) and sharp["auc"] == 1.0 and soft["auc"] == 0.75


def test_softness_option_is_validated_and_can_be_skipped(dataset, model, tmp_path, capsys):
    with pytest.raises(SystemExit):
        ev.main(["--model", str(model), "--data", str(dataset), "--out", str(tmp_path / "o"), "--softness", "-1"])
    assert "each blur must be" in capsys.readouterr().err
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert ev.main(["--model", str(model), "--data", str(dataset), "--out", str(tmp_path / "o"),
                        "--softness", "none", "--phone-split", "none", "--no-progress"]) == 0
    assert "softness" not in json.loads((tmp_path / "o" / "metrics.json").read_text())


# ------------------------------------------------------------------------------------------------ cache
def test_cached_predictions_are_reused_and_missing_rows_rescored(report, dataset, model, tmp_path):
    out = tmp_path / "again"
    out.mkdir()
    pred = pd.read_csv(report / "predictions.csv")
    # tamper with one cached score (it must be used as is) and drop another row (it must be scored again)
    i = pred.index[(pred["set"] == "clean")][0]
    pred.loc[i, "prob"] = 0.999
    pred.drop(index=pred.index[pred["set"] == "phone"][0]).to_csv(out / "predictions.csv", index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = ev.evaluate(model, dataset, out=out, progress=False, figures=False)
        assert res.rescored == 1
        again = pd.read_csv(res.predictions)
        assert again.loc[(again["set"] == "clean") & (again["file_name"] == pred.loc[i, "file_name"]), "prob"].item() == 0.999
        # truth = reference, scores from the cache, the other labels reported alongside
        ref = ev.evaluate(model, dataset, out=out, truth="reference", progress=False, figures=False)
        assert ref.rescored == 0
        clean = again[again["set"] == "clean"]
        assert ref.metrics["overall"]["auc"]["auc"] == pytest.approx(roc_auc_score(clean["y_reference"], clean["prob"]))
        assert ref.metrics["overall_vs_true"]["auc"]["auc"] == pytest.approx(roc_auc_score(clean["y_true"], clean["prob"]))
        # --rescore ignores the cache
        fresh = ev.evaluate(model, dataset, out=out, phone_split="none", rescore=True, progress=False, figures=False)
    assert fresh.rescored == N_EXTERNAL and fresh.metrics["phone"] is None
    assert pd.read_csv(fresh.predictions)["prob"].max() < 0.999


# ----------------------------------------------------------------------------------------- study_metrics
def _table(**cols) -> pd.DataFrame:
    n = len(cols["y_true"])
    base = {"set": ["clean"] * n, "key": [str(i) for i in range(n)], "center": ["B"] * n, "label": ["x"] * n}
    return pd.DataFrame({**base, **cols})


def test_study_metrics_on_a_known_table():
    y = [0, 0, 0, 0, 1, 1, 1, 1]
    p = [0.1, 0.2, 0.3, 0.7, 0.4, 0.8, 0.9, 0.95]
    e1 = [0, 0, 1, 0, 0, 1, 1, 0]
    t = _table(y_true=y, prob=p, **{"member:a": p, "member:b": [0.5] * 8, "reader:e1": e1})
    m = ev.study_metrics(t, threshold=0.5)
    assert m["overall"]["auc"]["auc"] == pytest.approx(15 / 16)
    assert m["overall"]["confusion"] == {"tn": 3, "fp": 1, "fn": 1, "tp": 3}
    assert m["best_member"] == "a" and m["ensemble_vs_best"]["p"] == 1.0  # identical scores
    assert m["members"]["b"]["auc"]["auc"] == 0.5
    r = m["readers"]["readers"]["e1"]
    assert r["alone"]["recall"] == 0.5 and r["alone"]["specificity"] == 0.75
    # OR rule: e1 or model (p >= 0.5 -> cases 3, 5, 6, 7) -> calls at 2, 3, 5, 6, 7
    assert r["with_model"]["recall"] == 0.75 and r["with_model"]["specificity"] == 0.5
    assert m["phone"] is None


def test_abstentions_are_counted_and_scored_apart():
    t = _table(y_true=[0, 0, 0, 1, 1, 1], prob=[0.1, 0.9, 0.3, 0.2, 0.8, 0.9])
    t["label"] = ["non-AS", "indeterminate", "non-AS", "indeterminate", "AS", "AS"]
    m = ev.study_metrics(t, threshold=0.5)
    assert m["abstained"] == 2
    assert m["overall"]["n"] == 6 and m["overall"]["auc"]["auc"] == pytest.approx(5.5 / 9)  # ties count one half
    assert m["accepted_only"]["n"] == 4 and m["accepted_only"]["auc"]["auc"] == 1.0
    text = __import__("train._report", fromlist=["x"]).render_report(m)
    assert "2 image(s) unlike the training data" in text and "on the 4 accepted images alone" in text


def test_study_metrics_pairs_phone_photos_by_key():
    clean = _table(y_true=[0, 0, 1, 1], prob=[0.1, 0.2, 0.8, 0.9])
    phone = clean.assign(set="phone", prob=[0.1, 0.85, 0.3, 0.9])
    stray = phone.iloc[:1].assign(key="nobody")
    m = ev.study_metrics(pd.concat([clean, phone, stray]), threshold=0.5)
    # too few per class for an AUC on 4 cases? 2 and 2 is the minimum: it is computed
    assert m["phone"]["clean"]["auc"]["auc"] == 1.0 and m["phone"]["phone"]["auc"]["auc"] == 0.75
    assert m["phone"]["auc_drop"] == pytest.approx(0.25)
    assert m["phone"]["n"] == 4 and m["phone"]["n_unmatched"] == 1 and m["phone"]["label_flips"] == 2


@pytest.mark.parametrize("table, kwargs, message", [
    (_table(y_true=[0, 1, 0, 1], prob=[0.1, 0.2, 0.3, 0.4]), {"truth": "oracle"}, "truth must be one of"),
    (_table(y_true=[0, 1, 0, 1], prob=[0.1, 0.2, 0.3, 0.4]), {"truth": "reference"}, "'label' column"),
    (_table(y_true=[0, 0, 0, 1], prob=[0.1, 0.2, 0.3, 0.4]), {}, "at least 2 AS and 2 non-AS"),
])
def test_study_metrics_errors(table, kwargs, message):
    with pytest.raises(ValueError, match=message):
        ev.study_metrics(table, threshold=0.5, **kwargs)


# -------------------------------------------------------------------------------------- data discovery
def test_find_splits_accepts_a_root_or_a_split_folder(dataset):
    assert ev.find_splits(dataset) == (dataset / "external", dataset / "external_phone")
    assert ev.find_splits(dataset / "external") == (dataset / "external", dataset / "external_phone")
    assert ev.find_splits(dataset, phone_split="none") == (dataset / "external", None)
    assert ev.find_splits(dataset, split="train") == (dataset / "train", None)


@pytest.mark.parametrize("args, message", [
    (["--data", "{tmp}/nothing"], "metadata.csv not found"),
    (["--data", "{data}", "--phone-split", "photos"], "has no metadata.csv"),
    (["--data", "{data}/external", "--model", "{tmp}"], "as_ai.json"),
    (["--data", "{data}", "--device", "tpu:9"], "unknown device 'tpu:9'"),
])
def test_cli_errors_say_what_to_do(args, message, dataset, model, tmp_path, capsys):
    argv = ["--model", str(model), "--out", str(tmp_path / "out"), "--no-progress"]
    argv += [a.format(tmp=tmp_path, data=dataset) for a in args]
    assert ev.main(argv) == 2
    assert message in capsys.readouterr().err


def test_truth_true_needs_true_labels(dataset, model, tmp_path, capsys):
    split = tmp_path / "real"
    split.mkdir()
    meta = pd.read_csv(dataset / "external" / "metadata.csv").drop(columns=["true_label"])
    for f in meta["file_name"]:
        (split / f).symlink_to(dataset / "external" / f)
    meta.to_csv(split / "metadata.csv", index=False)
    assert ev.main(["--model", str(model), "--data", str(split), "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    assert "--truth reference" in capsys.readouterr().err
