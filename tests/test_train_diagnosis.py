"""End-to-end: train/diagnosis.py on a tiny dataset writes a model repo that every loader reads.

One tiny run (24 grey 16-bit PNGs of 80x72 px, two tiny architectures, 2-fold CV, 1 epoch, refit)
is shared by the tests: as_ai.json contents, Diagnoser.from_pretrained, each member alone through
timm and through transformers' TimmWrapper, the model card, and resuming from checkpoints.
"""
from __future__ import annotations

import json
import math
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image

from as_ai.diagnosis import Diagnoser
from as_ai.hub import sha256_file
from train import config as train_config
from train import data as train_data
from train import diagnosis as train_diag
from train import ensemble_fit
from train import loop as train_loop
from train import views as train_views

ARCHS = ["mobilenetv3_small_050", "lcnet_050"]


def _write_split(folder: Path, n: int, rng: np.random.Generator) -> None:
    """Images with a bright block for "AS" (learnable), labels and true labels."""
    folder.mkdir(parents=True)
    rows = []
    for i in range(n):
        y = i % 2
        img = rng.normal(0.4, 0.05, (80, 72))
        if y:
            img[30:50, 20:50] += 0.35
        name = f"{i:03d}.png"
        Image.fromarray((np.clip(img, 0, 1) * 65535).astype(np.uint16)).save(folder / name)
        rows.append({"file_name": name, "label": "AS" if y else "non-AS", "true_label": "AS" if y else "non-AS",
                     "center": "A"})
    pd.DataFrame(rows).to_csv(folder / "metadata.csv", index=False)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("train")
    rng = np.random.default_rng(0)
    _write_split(root / "data" / "train", 24, rng)
    _write_split(root / "data" / "external", 12, rng)
    config = {
        "name": "tiny", "archs": ARCHS, "folds": 2, "top_k": 2, "epochs": 1, "batch_size": 8, "lr": 0.003,
        "warmup_epochs": 0.5, "final": "refit", "combine": "auc_weighted", "threads": 1, "augment": "centred",
        "preprocess": {"resize_short": 72, "crop": 64, "train_resize_short": 72, "train_crop": 64},
        "eval_splits": ["external"], "phone_augment": 0.5, "phone_fraction": 0.5, "acquisition_jitter": 0.5,
    }
    cfg_path = root / "tiny.yaml"
    cfg_path.write_text(yaml.safe_dump(config))
    argv = ["--config", str(cfg_path), "--data", str(root / "data"), "--out", str(root / "run")]
    assert train_diag.main(argv) == 0
    return {"root": root, "argv": argv, "model": root / "run" / "model", "out": root / "run"}


@pytest.fixture(scope="module")
def diagnoser(run) -> Diagnoser:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Diagnoser.from_pretrained(run["model"])


def test_run_writes_a_complete_repository(run):
    model = run["model"]
    cfg = json.loads((model / "as_ai.json").read_text())
    assert cfg["kind"] == "diagnosis" and cfg["combine"] == "auc_weighted"
    assert sorted(m["name"] for m in cfg["members"]) == sorted(ARCHS)
    for m in cfg["members"]:
        assert 0.0 <= m["cv_auc"] <= 1.0
        assert cfg["files"][f"{m['path']}/model.safetensors"] == sha256_file(model / m["path"] / "model.safetensors")
    assert sum(m["weight"] for m in cfg["members"]) == pytest.approx(1.0)
    assert cfg["calibration"]["method"] == "temperature" and 0 < cfg["threshold"] < 1
    t = cfg["training"]
    assert t["synthetic"] is True and t["config"]["folds"] == 2 and t["config"]["seed"] == 0
    assert "train/diagnosis.py" in t["command"] and t["data"]["train_metadata_sha256"]
    assert "git_commit" in t and t["final_models"] == "refit"
    folds = cfg["metrics"]["cv"]["architectures"][ARCHS[0]]["folds"]
    assert len(folds) == 2 and set(folds[0]) >= {"auc", "accuracy", "precision", "recall", "f1", "best_epoch"}
    ext = cfg["metrics"]["external"]["true"]
    assert set(ext) >= {"auc", "auc_ci", "precision", "recall", "f1", "ece", "members_auc", "vs_best_member"}
    soft = cfg["metrics"]["external_softness"]        # the evaluation's softness test, on the external split
    assert [r["sigma"] for r in soft["rows"]] == [0.0, 0.5, 1.0] and soft["n"] == 12
    assert soft["rows"][0]["auc"] == pytest.approx(ext["auc"], abs=1e-6)  # unblurred: the split's own scores
    oof = pd.read_csv(run["out"] / "oof.csv")           # out-of-fold predictions, for analysis (not published)
    assert len(oof) == 24 and set(oof["fold"]) == {0, 1} and oof["ensemble"].between(0, 1).all()
    assert {f"member_{a}" for a in ARCHS} <= set(oof.columns) and not (model / "oof.csv").exists()
    assert (run["out"] / "config.yaml").is_file() and (run["out"] / "metrics.json").is_file()
    assert not any(p.suffix in (".bin", ".pkl") for p in model.rglob("*"))  # checkpoints stay out of the repo


def test_repo_loads_and_reproduces_its_reported_external_auc(run, diagnoser):
    from sklearn.metrics import roc_auc_score

    ext = run["root"] / "data" / "external"
    meta = pd.read_csv(ext / "metadata.csv")
    p = diagnoser.predict_proba([ext / f for f in meta["file_name"]])
    assert p.shape == (12,) and np.all((p >= 0) & (p <= 1))
    reported = json.loads((run["model"] / "as_ai.json").read_text())["metrics"]["external"]["true"]["auc"]
    auc = roc_auc_score((meta["true_label"] == "AS").astype(int), p)
    assert auc == pytest.approx(reported, abs=0.05)  # training evaluated fp32 weights, the repo holds fp16


@pytest.mark.parametrize("how", ["timm_overlay", "timm_local_dir", "transformers"])
def test_each_member_loads_alone(run, diagnoser, how):
    import timm

    x = torch.randn(2, 3, 64, 64)
    for i, name in enumerate(diagnoser.ensemble.names):
        folder = run["model"] / "members" / name
        mcfg = json.loads((folder / "config.json").read_text())
        with torch.no_grad():
            expected = diagnoser.ensemble.members[f"m{i}"](x)
            if how == "timm_overlay":
                m = timm.create_model(mcfg["architecture"], pretrained=True, pretrained_cfg_overlay=dict(
                    file=str(folder / "model.safetensors"), num_classes=mcfg["num_classes"])).eval()
                got = m(x)
            elif how == "timm_local_dir":
                m = timm.create_model(f"local-dir:{folder}", pretrained=True).eval()
                assert m.pretrained_cfg["input_size"] == (3, 64, 64) or list(m.pretrained_cfg["input_size"]) == [3, 64, 64]
                got = m(x)
            else:
                from transformers import AutoModelForImageClassification

                m = AutoModelForImageClassification.from_pretrained(str(run["model"]), subfolder=f"members/{name}",
                                                                    dtype=torch.float32).eval()
                assert m.config.id2label == {0: "non-AS", 1: "AS"}
                got = m(pixel_values=x).logits
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_model_card_front_matter_and_text(run):
    card = (run["model"] / "README.md").read_text()
    front = yaml.safe_load(card.split("---\n")[1])
    assert front["library_name"] == "timm" and "synthetic-data" in front["tags"]
    results = front["model-index"][0]["results"]
    ext_auc = json.loads((run["model"] / "as_ai.json").read_text())["metrics"]["external"]["true"]["auc"]
    aucs = [m["value"] for r in results for m in r["metrics"] if m["type"] == "roc_auc"]
    assert any(v == pytest.approx(ext_auc, abs=1e-4) for v in aucs)
    assert "not for clinical use" in card and "train/diagnosis.py --config" in card
    assert "Li et al." in card


def test_resume_reuses_finished_checkpoints(run, capsys):
    out2 = run["root"] / "run"  # same folder: every (arch, fold) is finished, nothing is retrained
    before = {p: sha256_file(p) for p in run["model"].rglob("model.safetensors")}
    assert train_diag.main(run["argv"] + ["--resume"]) == 0
    printed = capsys.readouterr().out
    assert " epoch 1:" not in printed  # no training epoch ran again
    after = {p: sha256_file(p) for p in (out2 / "model").rglob("model.safetensors")}
    assert after == before
    training = json.loads((out2 / "model" / "as_ai.json").read_text())["training"]
    assert "--resume" not in training["command"] and any("resumed" in n for n in training["notes"])


def test_common_fold_ships_one_fold_and_calibrates_on_its_validation_images(run, tmp_path, capsys):
    import shutil

    from safetensors.torch import load_file

    out = tmp_path / "run"
    shutil.copytree(run["out"] / "checkpoints", out / "checkpoints")  # finished folds: nothing is retrained
    argv = run["argv"][:-1] + [str(out), "--resume", "--set", "final=common_fold", "--set", "photo_stretch=[0.5, 99.5]"]
    assert train_diag.main(argv) == 0
    assert " epoch 1:" not in capsys.readouterr().out
    cfg = json.loads((out / "model" / "as_ai.json").read_text())
    cv = cfg["metrics"]["cv"]
    k = cv["common_fold"]
    fold_aucs = [[f["auc"] for f in cv["architectures"][a]["folds"]] for a in ARCHS]
    assert k == int(np.argmax(np.mean(fold_aucs, axis=0)))
    assert cv["calibration_set"]["fold"] == k and cv["calibration_set"]["n"] == 12  # half of 24 training images
    assert cfg["training"]["final_models"] == "common_fold"
    assert cfg["photo_input"] == {"contrast_stretch": [0.5, 99.5]}  # how the model reads photos of a screen
    for a in ARCHS:  # every member is its architecture's model of that fold
        name = train_config.parse_arch(a)[0]
        shipped = load_file(str(out / "model" / "members" / name / "model.safetensors"))
        best = load_file(str(out / "checkpoints" / a / f"fold{k}" / "best.safetensors"))
        for key, v in shipped.items():
            torch.testing.assert_close(v.float(), best[key].float(), rtol=1e-3, atol=1e-3)


def test_common_fold_passes_over_a_fold_where_one_architecture_failed():
    assert ensemble_fit.common_fold([[0.94, 0.93], [0.57, 0.95], [0.94, 0.94]]) == 1
    assert ensemble_fit.common_fold([[0.9, 0.8, 0.85]]) == 0
    with pytest.raises(ValueError, match="architectures x folds"):
        ensemble_fit.common_fold([])


def test_training_with_the_consistency_loss(run, tmp_path, capsys):
    cfg = yaml.safe_load((run["root"] / "tiny.yaml").read_text())
    cfg.update(archs=ARCHS[:1], top_k=1, final="best_fold", consistency=1.0, eval_splits=[])
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    assert train_diag.main(["--config", str(tmp_path / "c.yaml"), "--data", str(run["root"] / "data"),
                            "--out", str(tmp_path / "run")]) == 0
    losses = [float(m) for m in re.findall(r"epoch 1: loss=([0-9.naif]+)", capsys.readouterr().out)]
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses)
    saved = json.loads((tmp_path / "run" / "model" / "as_ai.json").read_text())
    assert saved["training"]["config"]["consistency"] == 1.0


def test_training_with_intensity_standardisation_measures_its_reference_and_reads_alike(run, tmp_path, capsys):
    from as_ai.imaging import load_radiograph

    cfg = yaml.safe_load((run["root"] / "tiny.yaml").read_text())
    cfg.update(archs=ARCHS[:1], top_k=1, final="best_fold", folds=2)
    cfg["preprocess"] = {**cfg["preprocess"], "intensity": "window_gamma", "intensity_window": [10.0, 90.0]}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    assert train_diag.main(["--config", str(tmp_path / "c.yaml"), "--data", str(run["root"] / "data"),
                            "--out", str(tmp_path / "run")]) == 0
    assert "intensity window_gamma: reference (low, high, median)" in capsys.readouterr().out
    saved = json.loads((tmp_path / "run" / "model" / "as_ai.json").read_text())["preprocess"]
    assert saved["intensity"] == "window_gamma" and saved["intensity_window"] == [10.0, 90.0]
    lo, hi, mid = saved["intensity_reference"]
    assert 0.0 <= lo < hi <= 1.0 and 0.0 < mid < 1.0
    d = Diagnoser.from_pretrained(tmp_path / "run" / "model")
    ext = run["root"] / "data" / "external"
    name = sorted(p.name for p in ext.glob("*.png"))[0]
    px = np.array(load_radiograph(ext / name).pixels)
    a, b = d.predict_proba([px, np.clip(px * 0.5 + 0.1, 0, 1).astype(np.float32)])  # a darker, lifted export
    assert abs(a - b) < 0.02


def test_training_phone_photos_are_stretched_like_the_model_reads_them():
    from as_ai.transforms import stretch_contrast as _stretched
    from as_ai.imaging import load_radiograph
    from as_ai.synthetic import pelvis
    from as_ai.synthetic.phone import photograph

    img = pelvis.sample(5, size=256).image
    _, plain = train_data._phone_photo((0, img, 3, 7, 64, None, False))
    _, stretched = train_data._phone_photo((0, img, 3, 7, 64, (0.5, 99.5), False))
    expected = _stretched(load_radiograph(photograph(img, level=3, seed=7)), (0.5, 99.5)).pixels
    assert stretched.shape == plain.shape and stretched.float().std() > plain.float().std()  # more contrast
    assert stretched.dtype == torch.uint8                   # cached as 8-bit, like every training photo
    assert float(stretched.float().max()) / 255 == pytest.approx(float(expected.max()), abs=2e-2)


def test_training_phone_photos_are_rectified_like_the_model_reads_them():
    from as_ai.transforms import photo_view
    from as_ai.imaging import load_radiograph
    from as_ai.synthetic import pelvis
    from as_ai.synthetic.phone import photograph

    img = pelvis.sample(5, size=256).image
    _, rectified = train_data._phone_photo((0, img, 1, 7, 64, (0.5, 99.5), True))
    read = photo_view(load_radiograph(photograph(img, level=1, seed=7)), (0.5, 99.5), True, rectify=True)
    assert read.meta["rectified"]["found"]
    h, w = read.shape
    assert rectified.shape[-2:] == ((64, round(64 * w / h)) if w >= h else (round(64 * h / w), 64))
    with pytest.raises(SystemExit, match="photo_rectify needs photo_stretch"):
        train_config.TrainConfig(photo_rectify=True).validate()


def test_detector_pair_blurs_and_consistency_is_zero_only_for_equal_outputs():
    from train._augment import DetectorPair, js_consistency

    torch.manual_seed(0)
    x = torch.zeros(4, 3, 32, 32)
    x[:, :, :, 16:] = 2.0                                  # a sharp edge (normalised units)
    y = DetectorPair((0.229, 0.224, 0.225))(x)
    assert y.shape == x.shape
    edge = lambda t: (t[:, :, :, 17] - t[:, :, :, 14]).abs().mean()  # noqa: E731
    assert edge(y) < edge(x)                               # softer edge: another detector's blur
    a = torch.randn(8, 2)
    assert float(js_consistency(a, a)) == pytest.approx(0.0, abs=1e-6)
    assert float(js_consistency(a, -a)) > 0.05
    saturated = torch.tensor([[300.0, -300.0]], requires_grad=True)  # softmax underflows to exactly 0
    loss = js_consistency(saturated, torch.tensor([[-300.0, 300.0]]))
    loss.backward()
    assert loss.item() == pytest.approx(math.log(2), rel=1e-4) and torch.isfinite(saturated.grad).all()


def test_config_errors_are_clear(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("archs: [resnet18]\nfinal: average\n")
    with pytest.raises(SystemExit, match="final must be one of \\('refit', 'common_fold', 'best_fold'\\)"):
        train_config.TrainConfig.load(bad)
    bad.write_text("archs: [resnet18]\nphoto_stretch: [99, 1]\n")
    with pytest.raises(SystemExit, match="photo_stretch: .*0 <= low < high <= 100"):
        train_config.TrainConfig.load(bad)
    bad.write_text("archs: [resnet18]\nepoch: 3\n")
    with pytest.raises(SystemExit, match="unknown config keys \\['epoch'\\]"):
        train_config.TrainConfig.load(bad)
    assert train_config.parse_arch("b=resnet50d.ra2_in1k") == ("b", "resnet50d.ra2_in1k", "resnet50d")


def test_config_checks_the_curriculum(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("archs: [resnet18]\naugment_after_auc: 1.5\n")
    with pytest.raises(SystemExit, match="augment_after_auc must be in"):
        train_config.TrainConfig.load(bad)
    bad.write_text("archs: [resnet18]\nacquisition_jitter: 2\n")
    with pytest.raises(SystemExit, match="acquisition_jitter is a probability"):
        train_config.TrainConfig.load(bad)


def test_augmentation_strength_waits_then_ramps():
    s = train_loop.augment_strength
    assert [s(e, None, 3) for e in (1, 5, 30)] == [0.0, 0.0, 0.0]       # validation AUC not reached yet
    assert [round(s(e, 7, 3), 3) for e in (6, 7, 8, 9, 10)] == [0.0, 0.333, 0.667, 1.0, 1.0]
    assert s(1, 1, 0) == 1.0


def test_curriculum_waits_for_validation_auc_and_the_refit_follows_the_folds(tmp_path):
    rng = np.random.default_rng(1)
    _write_split(tmp_path / "data" / "train", 24, rng)
    config = {
        "name": "curriculum", "archs": ARCHS[:1], "folds": 2, "top_k": 1, "epochs": 3, "batch_size": 8,
        "lr": 0.003, "warmup_epochs": 0.5, "final": "refit", "threads": 1, "augment": "centred",
        "preprocess": {"resize_short": 72, "crop": 64, "train_resize_short": 72, "train_crop": 64},
        "eval_splits": [], "acquisition_jitter": 0.5, "augment_after_auc": 0.5, "augment_ramp_epochs": 1,
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    assert train_diag.main(["--config", str(tmp_path / "c.yaml"), "--data", str(tmp_path / "data"),
                            "--out", str(tmp_path / "run")]) == 0
    ckpt = tmp_path / "run" / "checkpoints" / ARCHS[0]
    starts = []
    for fold in ("fold0", "fold1"):
        state = json.loads((ckpt / fold / "progress.json").read_text())
        for rec in state["history"]:  # no augmentation before the validation AUC was reached, then the ramp
            assert rec["augment"] == train_loop.augment_strength(rec["epoch"], state["augment_from"], 1)
            if state["augment_from"] is not None and rec["epoch"] < state["augment_from"]:
                assert rec["augment"] == 0.0
        if state["augment_from"] is not None:
            starts.append(state["augment_from"])
    final = json.loads((ckpt / "final" / "progress.json").read_text())
    assert final["augment_from"] == (int(np.median(starts)) if starts else 1)


def test_a_fold_whose_curriculum_never_starts_keeps_its_best_clean_epoch(tmp_path, monkeypatch, capsys):
    """Validation AUC scripted below augment_after_auc: the fold trains clean throughout and ships its best
    epoch (here the last), not its first."""
    from safetensors.torch import load_file

    rng = np.random.default_rng(3)
    _write_split(tmp_path / "data" / "train", 16, rng)
    script = iter([0.6, 0.8] * 2)                                   # fold 0, then fold 1
    monkeypatch.setattr(train_loop, "validation_auc", lambda y, p: next(script))
    config = {
        "name": "clean", "archs": ARCHS[:1], "folds": 2, "top_k": 1, "epochs": 2, "batch_size": 8,
        "lr": 0.003, "warmup_epochs": 0.5, "final": "best_fold", "threads": 1, "augment": "centred",
        "preprocess": {"resize_short": 72, "crop": 64, "train_resize_short": 72, "train_crop": 64},
        "eval_splits": [], "acquisition_jitter": 0.5, "augment_after_auc": 0.9, "augment_ramp_epochs": 1,
        "patience": 10,
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    assert train_diag.main(["--config", str(tmp_path / "c.yaml"), "--data", str(tmp_path / "data"),
                            "--out", str(tmp_path / "run")]) == 0
    fold = tmp_path / "run" / "checkpoints" / ARCHS[0] / "fold0"
    state = json.loads((fold / "progress.json").read_text())
    assert state["augment_from"] is None and [h["augment"] for h in state["history"]] == [0.0, 0.0]
    assert state["best_epoch"] == 2 and state["best_auc"] == 0.8
    best, last = load_file(str(fold / "best.safetensors")), load_file(str(fold / "last" / "model.safetensors"))
    assert all(torch.equal(best[k], last[k]) for k in best)         # epoch 2's weights, the last trained
    assert "validation AUC never reached 0.9" in capsys.readouterr().out + \
        (tmp_path / "run" / "model" / "as_ai.json").read_text()


def test_acquisition_jitter_keeps_lesions_where_they_are():
    """Jitter changes how the whole image is processed, never where the anatomy is: with the same random
    draws, the difference a lesion makes stays next to the lesion."""
    from train._augment import AcquisitionJitter

    rng = np.random.default_rng(0)
    img = torch.from_numpy(rng.uniform(0.3, 0.6, (1, 96, 96)).astype(np.float32))
    lesion = img.clone()
    lesion[0, 40:48, 40:48] += 0.3
    jitter = AcquisitionJitter(1.0)
    changed = 0
    for seed in range(20):
        torch.manual_seed(seed)
        a = jitter(img)
        torch.manual_seed(seed)
        b = jitter(lesion)
        assert a.shape == img.shape and 0.0 <= float(a.min()) and float(a.max()) <= 1.0
        diff = (a - b).abs()[0]
        far = diff.clone()
        far[30:58, 30:58] = 0                       # blur / edge enhancement reach a few pixels
        assert float(far.max()) < 1e-6
        changed += float((a - img).abs().max()) > 0.01
    assert changed >= 15                            # p=1: nearly every draw changes the image
    assert torch.equal(AcquisitionJitter(0.0)(img), img)


def test_phone_photo_workers_do_not_hang_after_multithreaded_torch(tmp_path):
    """training with threads >= 2 runs parallel ops before the photo pool forks; the workers must not hang."""
    import subprocess
    import sys
    import textwrap

    script = tmp_path / "pool.py"
    script.write_text(textwrap.dedent("""
        import numpy as np, torch
        from train import data as td
        torch.set_num_threads(2)
        x = torch.rand(1, 1, 1536, 1536)
        for _ in range(3):  # start the OpenMP pool in the parent
            torch.nn.functional.interpolate(x, size=(700, 700), mode="bilinear", antialias=True)
        img = np.random.default_rng(0).random((128, 128)).astype(np.float32)
        out = td._phone_photos([(i, img, 1 + i % 4, i, 48, None, False) for i in range(6)], 2)
        print("photos", len(out))
    """))
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, str(script)], cwd=root, capture_output=True, text=True, timeout=120,
                          env={**__import__("os").environ, "PYTHONPATH": str(root)})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "photos 6" in done.stdout


def test_jitter_blur_chance_and_strength_follow_the_config():
    from train._augment import AcquisitionJitter

    img = torch.zeros(1, 64, 64)
    img[0, :, 32:] = 1.0                                 # one sharp edge
    def softest(jitter, n=40):                           # the flattest edge step over n draws
        steps = []
        for seed in range(n):
            torch.manual_seed(seed)
            prof = jitter(img)[0].mean(0)                  # rows averaged: the noise cancels, the edge stays
            steps.append(float(prof[28:37].diff().abs().max() / (prof[44] - prof[20]).abs().clamp_min(1e-3)))
        return min(steps), sum(s < 0.6 for s in steps) / n
    never, _ = softest(AcquisitionJitter(1.0, blur_p=0.0))
    strong, share = softest(AcquisitionJitter(1.0, blur_p=1.0, blur_max=3.0))
    assert never > 0.8 and strong < 0.25 and share > 0.6  # no blur at chance 0; wide blurs at chance 1
    with pytest.raises(ValueError, match="blur_max"):
        AcquisitionJitter(1.0, blur_max=9.0)
    with pytest.raises(SystemExit, match="jitter_blur"):
        train_config.TrainConfig(archs=ARCHS, jitter_blur=[1.5, 2.0]).validate()


def test_pretrained_weights_offline(monkeypatch):
    """pretrained: true fails with advice when weights cannot be fetched; auto falls back and says so."""
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    cfg = train_config.TrainConfig(archs=["mobilenetv3_small_050"], pretrained=True)
    with pytest.raises(SystemExit, match="could not fetch ImageNet weights.*pretrained: auto"):
        train_loop.create_model("mobilenetv3_small_050", cfg, [])
    log: list[str] = []
    cfg.pretrained = "auto"
    model = train_loop.create_model("mobilenetv3_small_050", cfg, log)
    assert model.num_classes == 2 and "trained from scratch" in log[0]


def test_phone_variants_give_each_image_several_photos_and_a_sample_draws_among_them(tmp_path):
    rng = np.random.default_rng(3)
    _write_split(tmp_path / "train", 4, rng)
    cfg = train_config.TrainConfig(archs=ARCHS, phone_augment=1.0, phone_variants=3, phone_levels=[1, 4],
                                 preprocess={"resize_short": 72, "crop": 64, "train_resize_short": 72,
                                             "train_crop": 64})
    from as_ai.imaging import Preprocess

    pp = Preprocess.from_dict(cfg.preprocess)
    data = train_data.read_split(tmp_path / "train", cfg, pp, [64], train_size=True, phone=True)
    assert sorted(data.phone) == [0, 1, 2, 3]
    for photos in data.phone.values():
        assert len(photos) == 3 and all(p.dtype == torch.uint8 for p in photos)
        assert not torch.equal(photos[0], photos[1]) and not torch.equal(photos[1], photos[2])  # other scenes
    train_set = train_data.TrainSet(data, np.array([0]), lambda t: t, phone_p=1.0)
    torch.manual_seed(0)
    seen = {tuple(train_set[0][0].flatten()[:64].tolist()) for _ in range(30)}
    assert len(seen) == 3                                 # every variant is shown, only those
    with pytest.raises(SystemExit, match="phone_variants"):
        train_config.TrainConfig(archs=ARCHS, phone_variants=0).validate()


# The validation AUCs of the bundled demo run of 2026-11-27 (resnet_b fold 0 collapsed, resnet_c fold 1 dipped
# for two epochs and recovered), from runs/demo-v5d/run/checkpoints/*/progress.json.
_COLLAPSE = [0.50, 0.52, 0.51, 0.55, 0.47, 0.56, 0.68, 0.91, 0.53, 0.52, 0.55, 0.54, 0.57, 0.57]
_DIP = [0.53, 0.52, 0.59, 0.67, 0.85, 0.55, 0.59, 0.88, 0.90, 0.91, 0.91, 0.94]


def _first_action(aucs, anchor_epoch, restarts=()):
    from train._collapse import guard_action

    for e in range(anchor_epoch + 1, len(aucs) + 1):
        state = {"history": [{"epoch": i + 1, "val_auc": a} for i, a in enumerate(aucs[:e])],
                 "anchor": {"epoch": anchor_epoch, "auc": aucs[anchor_epoch - 1]}, "restarts": list(restarts)}
        action = guard_action(state, 0.2, 3)
        if action:
            return e, action
    return None


def test_collapse_guard_catches_a_collapse_and_leaves_a_dip_that_recovers():
    from train._collapse import MAX_RESTARTS, RESTART, STOP_AUGMENTING, collapsed

    assert _first_action(_COLLAPSE, 8) == (11, RESTART)        # three epochs 0.2 below 0.91
    assert _first_action(_DIP, 5) is None                      # 0.85 -> 0.55, 0.59 -> 0.88: recovered
    # only epochs after the latest restart count, and after MAX_RESTARTS it stops augmenting
    assert _first_action(_COLLAPSE[:13], 8, [{"epoch": 11}]) is None   # two epochs since the restart
    assert _first_action(_COLLAPSE, 8, [{"epoch": 11}]) == (14, RESTART)
    assert _first_action(_COLLAPSE, 8, [{"epoch": 11}] * MAX_RESTARTS) == (14, STOP_AUGMENTING)
    assert not collapsed([0.5, 0.5], 0.9, 0.2, 3) and collapsed([0.9, 0.5, 0.5, 0.5], 0.9, 0.2, 3)
    with pytest.raises(ValueError, match="epochs must be >= 1"):
        collapsed([0.5], 0.9, 0.2, 0)


def test_a_fold_that_collapses_goes_back_to_its_anchor_and_ramps_up_more_slowly(tmp_path, monkeypatch, capsys):
    """Validation AUC scripted per epoch: 1.0 (augmentation starts), then chance. The guard restarts twice with
    a doubled ramp, then trains on without augmentation; the fold ships the anchor's weights."""
    from safetensors.torch import load_file

    rng = np.random.default_rng(2)
    _write_split(tmp_path / "data" / "train", 16, rng)
    epochs = 5
    script = iter(([1.0] + [0.5] * (epochs - 1)) * 2)              # fold 0, then fold 1
    monkeypatch.setattr(train_loop, "validation_auc", lambda y, p: next(script))
    config = {
        "name": "guard", "archs": ARCHS[:1], "folds": 2, "top_k": 1, "epochs": epochs, "batch_size": 8,
        "lr": 0.003, "warmup_epochs": 0.5, "final": "best_fold", "threads": 1, "augment": "centred",
        "preprocess": {"resize_short": 72, "crop": 64, "train_resize_short": 72, "train_crop": 64},
        "eval_splits": [], "acquisition_jitter": 0.5, "augment_after_auc": 0.9, "augment_ramp_epochs": 1,
        "collapse_guard": [0.2, 1], "patience": 10,
    }
    (tmp_path / "g.yaml").write_text(yaml.safe_dump(config))
    argv = ["--config", str(tmp_path / "g.yaml"), "--data", str(tmp_path / "data"), "--out", str(tmp_path / "run")]
    assert train_diag.main(argv) == 0
    fold = tmp_path / "run" / "checkpoints" / ARCHS[0] / "fold0"
    state = json.loads((fold / "progress.json").read_text())
    assert state["anchor"]["epoch"] == 1
    assert [(r["epoch"], r["action"], r["ramp"]) for r in state["restarts"]] == \
        [(2, "restart", 2), (3, "restart", 4), (4, "stop_augmenting", 4)]
    # epoch 2 at full strength (ramp 1), epoch 3 half way up the doubled ramp, 4 a quarter, 5 none at all
    assert [h["augment"] for h in state["history"]] == [0.0, 1.0, 0.5, 0.25, 0.0]
    assert state["augment_off"] is True
    best, anchor = load_file(str(fold / "best.safetensors")), load_file(str(fold / "anchor.safetensors"))
    assert best.keys() == anchor.keys()
    # epoch 5 trained on from the anchor without augmentation and became the best (counting restarted)
    assert state["best_epoch"] == 5 and any(not torch.equal(best[k], anchor[k]) for k in best)
    assert "augmentation ramps up again over 2 epochs" in capsys.readouterr().out
    card = (tmp_path / "run" / "model" / "as_ai.json").read_text()
    assert "training on without augmentation" in card                # the training log reaches the model
    assert train_diag.main(argv + ["--resume"]) == 0                 # and stays there when a run is resumed
    notes = json.loads((tmp_path / "run" / "model" / "as_ai.json").read_text())["training"]["notes"]
    assert sum("augmentation ramps up again" in n for n in notes) == 4   # two restarts in each of two folds


def test_collapse_guard_config_is_checked(tmp_path):
    for value, match in [("[0.7, 3]", "collapse_guard must be"), ("[0.2, 0]", "collapse_guard must be"),
                         ("0.2", "collapse_guard must be")]:
        bad = tmp_path / "bad.yaml"
        bad.write_text(f"archs: [resnet18]\naugment_after_auc: 0.8\ncollapse_guard: {value}\n")
        with pytest.raises(SystemExit, match=match):
            train_config.TrainConfig.load(bad)
    bad.write_text("archs: [resnet18]\ncollapse_guard: [0.2, 3]\n")
    with pytest.raises(SystemExit, match="collapse_guard needs augment_after_auc"):
        train_config.TrainConfig.load(bad)


def test_clip_grad_norm_clips_every_step_and_is_checked(tmp_path, monkeypatch):
    from accelerate import Accelerator

    norms = []
    real = Accelerator.clip_grad_norm_

    def spy(self, parameters, max_norm, norm_type=2):
        norms.append(max_norm)
        return real(self, parameters, max_norm, norm_type)

    monkeypatch.setattr(Accelerator, "clip_grad_norm_", spy)
    rng = np.random.default_rng(3)
    _write_split(tmp_path / "data" / "train", 16, rng)
    config = {
        "name": "clip", "archs": ARCHS[:1], "folds": 2, "top_k": 1, "epochs": 1, "batch_size": 8, "lr": 0.003,
        "final": "best_fold", "threads": 1, "eval_splits": [], "clip_grad_norm": 0.5,
        "preprocess": {"resize_short": 72, "crop": 64, "train_resize_short": 72, "train_crop": 64},
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    assert train_diag.main(["--config", str(tmp_path / "c.yaml"), "--data", str(tmp_path / "data"),
                            "--out", str(tmp_path / "run")]) == 0
    assert norms == [0.5, 0.5]                   # one step of 8 images in each of the two folds
    for bad in ("0", "-1", "true", "abc"):
        (tmp_path / "b.yaml").write_text(f"archs: [resnet18]\nclip_grad_norm: {bad}\n")
        with pytest.raises(SystemExit, match="clip_grad_norm must be a positive number"):
            train_config.TrainConfig.load(tmp_path / "b.yaml")


class _Brightness(torch.nn.Module):
    """A stand-in model whose P(AS) follows the input's mean and its local contrast (blur lowers it)."""

    def forward(self, x):
        g = x[:, :1]
        edges = (g[..., 1:, :] - g[..., :-1, :]).abs().mean((1, 2, 3))
        z = 0.3 * g.mean((1, 2, 3)) + 0.5 * edges - 0.5              # unsaturated on these inputs
        return torch.stack([-z, z], 1)


def _images(n: int, size: int = 64) -> "train_data.Images":
    rng = np.random.default_rng(4)
    train = [torch.from_numpy((rng.random((1, 72, 72)) * 255).astype(np.uint8)) for _ in range(n)]
    return train_data.Images(files=[f"{i}.png" for i in range(n)], meta=pd.DataFrame({"label": ["AS"] * n}),
                             y=np.arange(n) % 2, train=train, eval={size: torch.zeros(n, 1, size, size)})


def test_reacquired_predictions_are_of_re_processed_images_seeded_and_leave_the_random_state():
    from as_ai.imaging import Preprocess

    cfg = train_config.TrainConfig(archs=["a"], folds=2, augment="centred", calibration_draws=3, seed=5)
    pp = Preprocess.from_dict({"resize_short": 72, "crop": 64, "train_resize_short": 72, "train_crop": 64})
    data = _images(8)
    folds = [(np.arange(4, 8), np.arange(0, 4)), (np.arange(0, 4), np.arange(4, 8))]
    models = {"a": [_Brightness().eval(), _Brightness().eval()], "b": [_Brightness().eval(), _Brightness().eval()]}
    before = torch.get_rng_state()
    p = ensemble_fit.reacquired_oof(models, folds, data, cfg, pp, 64)
    assert torch.equal(torch.get_rng_state(), before)                  # training's random stream is untouched
    assert p.shape == (3, 2, 8) and np.isfinite(p).all()
    assert np.array_equal(p, ensemble_fit.reacquired_oof(models, folds, data, cfg, pp, 64))   # seeded
    assert np.ptp(p, axis=0).max() > 1e-3                             # each draw re-processes anew
    clean = train_loop.predict_plain(_Brightness(), torch.utils.data.DataLoader(
        train_data.TrainSet(data, np.arange(8), train_views.training_view(cfg, pp, 64, torch.nn.Identity()), 0.0),
        batch_size=8, collate_fn=lambda b: torch.stack([x for x, _ in b])))
    assert np.abs(p[0, 0] - clean).mean() > 1e-3                      # not the images as they were


def test_calibration_on_reacquired_images_against_other_labels_is_recorded(tmp_path):
    rng = np.random.default_rng(5)
    _write_split(tmp_path / "data" / "train", 16, rng)
    meta = pd.read_csv(tmp_path / "data" / "train" / "metadata.csv")
    meta.loc[[0, 3], "true_label"] = ["AS", "non-AS"]                 # the panel disagrees with two labels
    meta.to_csv(tmp_path / "data" / "train" / "metadata.csv", index=False)
    config = {
        "name": "recal", "archs": ARCHS[:1], "folds": 2, "top_k": 1, "epochs": 1, "batch_size": 8, "lr": 0.003,
        "final": "best_fold", "threads": 1, "eval_splits": [], "augment": "centred", "acquisition_jitter": 0.5,
        "calibration": "platt", "calibrate_on": "reacquired", "calibration_draws": 3,
        "calibration_label_column": "true_label",
        "preprocess": {"resize_short": 72, "crop": 64, "train_resize_short": 72, "train_crop": 64},
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    argv = ["--config", str(tmp_path / "c.yaml"), "--data", str(tmp_path / "data"), "--out", str(tmp_path / "run")]
    assert train_diag.main(argv) == 0
    repo = json.loads((tmp_path / "run" / "model" / "as_ai.json").read_text())
    cs = repo["metrics"]["cv"]["calibration_set"]
    assert (cs["labels"], cs["calibrate_on"], cs["n"]) == ("true_label", "reacquired", 3 * 16)
    assert "re-acquired" in cs["images"] and repo["calibration"]["method"] == "platt"
    card = (tmp_path / "run" / "model" / "README.md").read_text()
    assert "against the labels `true_label` rather than the training labels `label`" in card
    assert "re-processed as other centres might have recorded them (3 draws" in card
    assert f"48 of re-acquired images, labels `true_label`), on which AUC {cs['auc']:.3f}, ECE {cs['ece']:.3f}" in card

    config["calibration_label_column"] = "panel_label"                # a column the data does not have
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(SystemExit, match="calibration_label_column 'panel_label' is not a column"):
        train_diag.main(argv[:-1] + [str(tmp_path / "run2")])
    assert not (tmp_path / "run2" / "checkpoints").exists()          # refused before any training


def test_calibration_config_is_checked(tmp_path):
    for line, match in [("calibrate_on: photos", "calibrate_on must be one of"),
                        ("calibration_draws: 0", "calibration_draws must be an integer from 1 to 16")]:
        (tmp_path / "b.yaml").write_text(f"archs: [resnet18]\n{line}\n")
        with pytest.raises(SystemExit, match=match):
            train_config.TrainConfig.load(tmp_path / "b.yaml")


class _Stamp(torch.nn.Module):
    """A stand-in transform: the sample's first pixel, then the chance ``p`` it was told to use."""

    p = 0.0

    def forward(self, x):
        return torch.tensor([float(x.flatten()[0]), self.p])


def test_loader_workers_see_each_epochs_augmentation_strength():
    """Augmenting in worker processes: each epoch's workers copy the dataset as the curriculum left it."""
    n = 8
    data = train_data.Images(files=[f"{i}.png" for i in range(n)], meta=pd.DataFrame({"label": ["AS"] * n}),
                             y=np.arange(n) % 2, train=[torch.zeros(1, 4, 4, dtype=torch.uint8)] * n,
                             eval={}, phone={i: [torch.full((1, 4, 4), 255, dtype=torch.uint8)] for i in range(n)})
    cfg = train_config.TrainConfig(archs=["a"], batch_size=4, loader_workers=2)
    stamp = _Stamp()                                                # its output shows the chance it was given
    train_set = train_data.TrainSet(data, np.arange(n), stamp, phone_p=0.0, jitter=stamp)
    loader = train_loop.training_loader(train_set, cfg)
    assert loader.num_workers == 2 and loader.persistent_workers and len(loader) == 2
    assert all(float(x[:, 0].max()) == 0.0 and float(x[:, 1].max()) == 0.0 for x, _ in loader)  # strength 0
    train_set.phone_p, train_set.jitter_p = 1.0, 0.25               # the next epoch, same workers
    assert all(float(x[:, 0].min()) == 1.0 and torch.all(x[:, 1] == 0.25) for x, _ in loader)
    for bad in (-1, 1.5, "two", True):
        with pytest.raises(SystemExit, match="loader_workers must be an integer from 0 to 64"):
            train_config.TrainConfig(archs=["a"], loader_workers=bad).validate()


@pytest.mark.parametrize("config", sorted(p.name for p in (Path(__file__).parents[1] / "train" / "configs").glob("*.yaml")))
def test_shipped_configs_load(config):
    cfg = train_config.TrainConfig.load(Path(__file__).parents[1] / "train" / "configs" / config)
    assert cfg.archs and cfg.synthetic
    if config == "paper.yaml":                      # the study's ten architectures, for a GPU
        assert len(cfg.archs) == 10 and cfg.pretrained is True and cfg.loader_workers > 0


def test_each_member_can_learn_its_own_readers_labels(tmp_path, monkeypatch):
    """member_labels: a member trains and early-stops on its reader's column; the others on label_column."""
    rng = np.random.default_rng(6)
    _write_split(tmp_path / "data" / "train", 16, rng)
    meta = pd.read_csv(tmp_path / "data" / "train" / "metadata.csv")
    meta["reader2"] = meta["label"]
    meta.loc[[0, 5, 10], "reader2"] = meta.loc[[0, 5, 10], "label"].map({"AS": "non-AS", "non-AS": "AS"})
    meta.to_csv(tmp_path / "data" / "train" / "metadata.csv", index=False)
    seen: dict[str, list[np.ndarray]] = {}
    real = train_diag.fit_one

    def spy(accelerator, arch, cfg, data, train_idx, val_idx, **kw):
        seen.setdefault(arch, []).append(np.asarray(kw["y"]).copy())
        return real(accelerator, arch, cfg, data, train_idx, val_idx, **kw)

    monkeypatch.setattr(train_diag, "fit_one", spy)
    validated: list[np.ndarray] = []                                  # labels each epoch's validation AUC used
    real_auc = train_loop.validation_auc
    monkeypatch.setattr(train_loop, "validation_auc", lambda y, p: validated.append(np.asarray(y)) or real_auc(y, p))
    archs = [f"a={ARCHS[0]}", f"b={ARCHS[1]}"]
    config = {
        "name": "readers", "archs": archs, "folds": 2, "top_k": 2, "epochs": 1, "batch_size": 8, "lr": 0.003,
        "final": "best_fold", "threads": 1, "eval_splits": [], "augment": "centred", "member_labels": {"b": "reader2"},
        "preprocess": {"resize_short": 72, "crop": 64, "train_resize_short": 72, "train_crop": 64},
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    argv = ["--config", str(tmp_path / "c.yaml"), "--data", str(tmp_path / "data"), "--out", str(tmp_path / "run")]
    assert train_diag.main(argv) == 0
    want = {archs[0]: (meta["label"] == "AS").to_numpy(), archs[1]: (meta["reader2"] == "AS").to_numpy()}
    assert not np.array_equal(*want.values())
    for arch in archs:                                                # both folds of each member
        assert len(seen[arch]) == 2 and all(np.array_equal(y, want[arch]) for y in seen[arch])
    from sklearn.model_selection import StratifiedKFold

    folds = list(StratifiedKFold(2, shuffle=True, random_state=0).split(np.zeros(16), want[archs[0]]))
    assert [v.tolist() for v in validated] == [want[a][va].tolist() for a in archs for _, va in folds]
    repo = json.loads((tmp_path / "run" / "model" / "as_ai.json").read_text())
    assert repo["training"]["config"]["member_labels"] == {"b": "reader2"}
    assert repo["training"]["member_labels"] == {"a": "label", "b": "reader2"}   # what each kept member learned
    assert repo["metrics"]["cv"]["label"] == "label"                  # CV AUCs and ranking stay on label_column
    card = (tmp_path / "run" / "model" / "README.md").read_text()
    assert "each member learned one reader's labels (a `label`, b `reader2`)" in card

    # the training samples carry the member's labels
    data = _images(4)
    own = np.array([1, 1, 0, 0])
    ts = train_data.TrainSet(data, np.arange(4), lambda x: x, 0.0, y=own)
    assert [ts[i][1] for i in range(4)] == [1, 1, 0, 0] != [int(v) for v in data.y]

    # a member that is not in archs, or a column the data lacks: stopped before any checkpoint is written
    for labels, match in [({"c": "reader2"}, "member_labels must map member names"),
                          ({"b": "panel"}, "'panel' \\(for b\\) is not a column")]:
        config["member_labels"] = labels
        (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
        out = tmp_path / f"bad-{len(match)}"
        with pytest.raises(SystemExit, match=match):
            train_diag.main(argv[:-1] + [str(out)])
        assert not (out / "checkpoints").exists()
