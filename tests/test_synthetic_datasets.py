"""Dataset writer and CLI: imagefolder layout, labels, resumability, DICOM, preview sheet."""
from __future__ import annotations

import json
import os

import numpy as np
import pydicom
import pytest
from PIL import Image

from as_ai.cli import main
from as_ai.synthetic import pelvis
from as_ai.synthetic.datasets import SPLITS, image_seed, read_split, write_pxr_dataset

N, N_EXT, SIZE = 6, 3, 128


@pytest.fixture(scope="module")
def pxr(tmp_path_factory):
    out = tmp_path_factory.mktemp("pxr")
    rc = main(["synth", "pxr", "--out", str(out), "--n", str(N), "--n-external", str(N_EXT), "--seed", "7",
               "--size", str(SIZE), "--workers", "2", "--quiet"])
    assert rc == 0
    return out


def test_layout_and_metadata(pxr):
    for split in SPLITS:
        df = read_split(pxr / split)
        assert len(df) == (N if split == "train" else N_EXT)
        for col in ("file_name", "label", "true_label", "grade_left", "grade_right", "reader_grade_left",
                    "reader_grade_right", "expert1_label", "expert2_label", "center", "mimic", "hip_involvement",
                    "sex", "seed", "rois", "pixel_spacing_mm"):
            assert col in df.columns, col
        assert all(os.path.isfile(p) for p in df["path"])
        assert set(df["label"]) <= {"AS", "non-AS"}
        assert df["synthetic"].all()
    tr, ex, ph = (read_split(pxr / s) for s in SPLITS)
    assert set(tr["center"]) == {"A"} and set(ex["center"]) == {"B", "C", "D"}
    assert list(ph["seed"]) == list(ex["seed"]) and (ph["phone_level"].between(1, 4)).all()
    # each row is the phantom its seed renders, with the same label and ROIs
    row = tr.iloc[2]
    assert row["seed"] == image_seed(7, "train", 2)
    meta = pelvis.describe(int(row["seed"]), (row["grade_left"], row["grade_right"]), size=SIZE,
                           mimic=None if row["mimic"] == "none" else row["mimic"],
                           hip_involvement=bool(row["hip_involvement"]))
    assert meta["label"] == row["label"] and meta["rois"] == row["rois"]


def test_images_are_16_bit_bone_bright_png_and_jpeg_photos(pxr):
    tr = read_split(pxr / "train")
    row = tr.iloc[0]
    im = Image.open(row["path"])
    assert im.format == "PNG" and im.mode.startswith("I")
    arr = np.asarray(im)
    assert arr.shape == (SIZE, SIZE) and arr.max() > 4096  # scaled to the full 16-bit range
    ph = pelvis.render(int(row["seed"]), (row["grade_left"], row["grade_right"]), size=SIZE,
                       mimic=None if row["mimic"] == "none" else row["mimic"],
                       hip_involvement=bool(row["hip_involvement"]))
    assert np.abs(arr / 65535.0 - ph.image / 4095.0).max() < 1e-4
    photo = Image.open(read_split(pxr / "external_phone")["path"][0])
    assert photo.format == "JPEG" and photo.mode == "RGB"


def test_loads_with_hugging_face_datasets(pxr):
    datasets = pytest.importorskip("datasets")
    ds = datasets.load_dataset("imagefolder", data_dir=str(pxr / "train"), split="train")
    meta = read_split(pxr / "train")
    assert len(ds) == N
    for ex in ds:
        assert ex["image"].size == (SIZE, SIZE)
    # rows come in metadata order with their labels and ROIs
    assert list(ds["seed"]) == list(meta["seed"])
    assert list(ds["label"]) == list(meta["label"])
    assert [json.loads(r) for r in ds["rois"]] == list(meta["rois"])
    all_splits = datasets.load_dataset(str(pxr))
    assert set(all_splits) == set(SPLITS)
    assert len(all_splits["external_phone"]) == N_EXT


def test_rerun_is_resumable_and_deterministic(pxr):
    f = pxr / "train" / "000001.png"
    before = {p.name: p.stat().st_mtime_ns for p in (pxr / "train").glob("*.png")}
    data = f.read_bytes()
    meta_csv = (pxr / "train" / "metadata.csv").read_text()
    f.unlink()
    write_pxr_dataset(pxr, n=N, n_external=N_EXT, seed=7, size=SIZE, workers=1, progress=False)
    assert f.read_bytes() == data  # regenerated identically
    after = {p.name: p.stat().st_mtime_ns for p in (pxr / "train").glob("*.png")}
    assert all(after[k] == v for k, v in before.items() if k != f.name)  # others were skipped
    assert (pxr / "train" / "metadata.csv").read_text() == meta_csv


def test_dicom_output(tmp_path):
    out = write_pxr_dataset(tmp_path, n=1, n_external=3, seed=1, size=SIZE, fmt="dicom", progress=False)
    ex = read_split(out / "external")
    for _, row in ex.iterrows():
        ds = pydicom.dcmread(row["path"])
        assert ds.Modality in ("DX", "CR") and ds.BodyPartExamined == "PELVIS" and ds.ViewPosition == "AP"
        assert ds.PatientID.startswith("PHANTOM-") and ds.PatientName.family_name == "PHANTOM"
        assert ds.PhotometricInterpretation == row["photometric"]
        assert float(ds.PixelSpacing[0]) == pytest.approx(row["pixel_spacing_mm"], rel=1e-4)
        px = ds.pixel_array.astype(int)
        ph = pelvis.render(int(row["seed"]), (row["grade_left"], row["grade_right"]), size=SIZE,
                           center=row["center"], mimic=None if row["mimic"] == "none" else row["mimic"],
                           hip_involvement=bool(row["hip_involvement"]))
        maxv = 2 ** ds.BitsStored - 1
        expect = maxv - ph.image.astype(int) if ds.PhotometricInterpretation == "MONOCHROME1" else ph.image
        assert np.array_equal(px, expect)
        assert "synthetic" in ds.ImageComments.lower()
    assert "MONOCHROME1" in set(ex["photometric"])


@pytest.mark.parametrize("kwargs,match", [
    (dict(n=0), "positive"), (dict(n=2, fmt="tiff"), "fmt"), (dict(n=2, workers=0), "workers")])
def test_bad_arguments(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        write_pxr_dataset(tmp_path, progress=False, **kwargs)


def test_read_split_names_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="metadata.csv"):
        read_split(tmp_path)


def test_preview_sheet(tmp_path):
    out = tmp_path / "sheet.png"
    assert main(["synth", "preview", "--out", str(out), "--size", "128"]) == 0
    im = Image.open(out)
    assert im.format == "PNG" and im.size[0] > 5 * 200 and im.size[1] > 4 * 200
    arr = np.asarray(im.convert("L")).astype(float)
    assert arr.std() > 20


def test_pool_workers_use_one_blas_thread_each():
    """N workers on N cores must not each start a BLAS thread per core (N x N threads)."""
    import subprocess
    import sys

    code = ("import multiprocessing as mp\n"
            "from as_ai.synthetic.datasets import _one_blas_thread\n"
            "def threads(_):\n"
            "    from threadpoolctl import threadpool_info\n"
            "    return sorted({i['num_threads'] for i in threadpool_info()})\n"
            "with mp.get_context('fork').Pool(2, initializer=_one_blas_thread) as pool:\n"
            "    print(pool.map(threads, range(2)))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, OPENBLAS_NUM_THREADS="4", OMP_NUM_THREADS="4"))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[[1], [1]]"
