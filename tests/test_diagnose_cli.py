"""``as-ai diagnose``: text, --json and --csv output, folders, unreadable files, batching."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from as_ai.cli import main
from as_ai.diagnosis import Diagnoser
from as_ai.ensemble import Calibration
from as_ai.imaging import Preprocess

ARCH = "mobilenetv3_small_050"


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    import timm

    members = {}
    for i, name in enumerate(("alpha", "beta")):
        torch.manual_seed(i)
        members[name] = timm.create_model(ARCH, num_classes=2)
    folder = tmp_path_factory.mktemp("cli") / "model"
    Diagnoser(members, archs={n: ARCH for n in members}, preprocess=Preprocess(resize_short=72, crop=64),
              calibration=Calibration("temperature", 0.7), threshold=0.5,
              config={"training": {"synthetic": True}}).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(1)
    paths = []
    for i in range(5):
        a = (rng.random((90, 80)) * (i + 1) / 5 * 65535).astype(np.uint16)
        p = folder / f"img{i}.png"
        Image.fromarray(a).save(p)
        paths.append(p)
    (folder / "notes.txt").write_text("not an image")  # ignored when the folder is expanded
    return folder, paths


def _reference(model, paths):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Diagnoser.from_pretrained(model).diagnose_batch(paths)


def test_json_output_matches_the_library(model, images, capsys):
    folder, paths = images
    rc = main(["diagnose", *map(str, paths[:3]), "--json", "--model", str(model), "--batch-size", "2", "--no-progress"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    ref = _reference(model, paths[:3])
    assert [r["file"] for r in out] == [str(p) for p in paths[:3]]
    assert [r["probability"] for r in out] == pytest.approx([d.probability for d in ref], abs=1e-9)
    assert set(out[0]["members"]) == {"alpha", "beta"} and out[0]["label"] in ("AS", "non-AS")


def test_csv_of_a_folder_with_an_unreadable_file(model, images, tmp_path, capsys):
    folder, paths = images
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    out = tmp_path / "scores.csv"
    rc = main(["diagnose", str(folder), str(broken), "--csv", str(out), "--model", str(model), "--batch-size", "3"])
    assert rc == 1  # one file failed, the others were scored
    df = pd.read_csv(out, keep_default_na=False)
    assert list(df["file"]) == [str(p) for p in paths] + [str(broken)]
    assert list(df.columns[:4]) == ["file", "label", "probability", "threshold"]
    assert {"member_alpha", "member_beta", "error", "finding", "in_distribution"} <= set(df.columns)
    ref = _reference(model, paths)
    np.testing.assert_allclose(df["probability"][:5].astype(float), [d.probability for d in ref], atol=1e-6)
    assert df["error"].iloc[-1].startswith("corrupt") and df["label"].iloc[-1] == ""
    assert "1 of 6 file(s) could not be read" in capsys.readouterr().err


def test_text_output_uses_clinician_wording(model, images, capsys):
    _, paths = images
    assert main(["diagnose", str(paths[0]), "--model", str(model), "--no-progress"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(str(paths[0]) + ": ")
    assert ("Findings suggest ankylosing spondylitis" in line) or ("No radiographic signs" in line)


def test_text_output_lists_the_cautions_under_the_finding(model, tmp_path, capsys):
    from as_ai.synthetic import pelvis
    from as_ai.synthetic.phone import photograph, save_photo, to_display

    photo = tmp_path / "phone.jpg"
    save_photo(photograph(to_display(pelvis.sample(3, size=256).image), level=3, seed=1), photo, exif_p=0.0)
    assert main(["diagnose", str(photo), "--model", str(model), "--no-progress"]) == 0
    lines = capsys.readouterr().out.rstrip("\n").split("\n")
    assert lines[0].startswith(str(photo) + ": ")
    assert any(ln.startswith("    - ") and "photo of a screen" in ln for ln in lines[1:])


def test_bad_model_is_one_clear_error(images, tmp_path, capsys):
    _, paths = images
    assert main(["diagnose", str(paths[0]), "--model", str(tmp_path)]) == 2
    assert "no as_ai.json" in capsys.readouterr().err


def test_json_and_csv_are_exclusive(images, capsys):
    _, paths = images
    with pytest.raises(SystemExit):
        main(["diagnose", str(paths[0]), "--json", "--csv", "x.csv"])


@pytest.mark.slow
def test_two_processes_split_the_files_and_gather_one_csv(model, images, tmp_path):
    """torchrun with 2 CPU processes (what accelerate launch does on GPUs): same rows, one file, input order."""
    import os
    import subprocess
    import sys

    folder, paths = images
    one, two = tmp_path / "one.csv", tmp_path / "two.csv"
    assert main(["diagnose", str(folder), "--csv", str(one), "--model", str(model), "--no-progress"]) == 0
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "as_ai.cli", "diagnose",
           str(folder), "--csv", str(two), "--model", str(model), "--no-progress"]
    subprocess.run(cmd, check=True, env=env, capture_output=True, timeout=300)
    a, b = pd.read_csv(one), pd.read_csv(two)
    assert list(b["file"]) == [str(p) for p in paths]
    np.testing.assert_allclose(a["probability"], b["probability"], atol=1e-9)


def test_a_device_that_is_not_here_is_one_clear_error(model, images):
    _, paths = images
    args = ["diagnose", str(paths[0]), "--model", str(model), "--no-progress", "--device"]
    with pytest.raises(SystemExit, match="unknown device 'banana'"):
        main([*args, "banana"])
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit, match="torch sees no CUDA GPU here; use 'cpu'"):
            main([*args, "cuda"])


def test_device_cpu_gives_the_library_results(model, images, capsys):
    _, paths = images
    assert main(["diagnose", *map(str, paths), "--json", "--model", str(model), "--no-progress",
                 "--device", "cpu"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["probability"] for r in out] == pytest.approx([d.probability for d in _reference(model, paths)], abs=1e-9)


def test_csv_gains_the_per_side_columns_with_joints(model, tmp_path, capsys):
    from as_ai.diagnosis_cli import BASE_COLUMNS, SIDE_COLUMNS
    from as_ai.synthetic import pelvis

    path = tmp_path / "pelvis.png"
    Image.fromarray(pelvis.render(31, (4, 3), center="B", size=512).image).save(path)
    plain, sides = tmp_path / "plain.csv", tmp_path / "sides.csv"
    assert main(["diagnose", str(path), "--csv", str(plain), "--model", str(model), "--no-progress"]) == 0
    assert main(["diagnose", str(path), "--csv", str(sides), "--model", str(model), "--no-progress", "--joints"]) == 0
    a, b = pd.read_csv(plain), pd.read_csv(sides)
    assert list(a.columns) == BASE_COLUMNS + ["member_alpha", "member_beta"]
    assert list(b.columns) == list(a.columns) + SIDE_COLUMNS
    assert a["probability"].iloc[0] == b["probability"].iloc[0]
    row = b.iloc[0]
    assert bool(row["sij_left_found"]) and bool(row["sij_right_found"])
    for side in ("left", "right"):
        assert row[[f"sij_{side}_p{g}" for g in range(5)]].sum() == pytest.approx(1.0, abs=1e-5)
        assert 0 <= row[f"sij_{side}_grade"] <= 4
    assert main(["diagnose", str(path), "--model", str(model), "--no-progress", "--joints"]) == 0
    assert "sacroiliac joints: left grade" in capsys.readouterr().out
