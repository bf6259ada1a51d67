"""Write and read phantom radiograph datasets in the Hugging Face ``imagefolder`` layout.

``write_pxr_dataset(out, n=..., seed=...)`` writes::

    out/train/            centre A (the training hospital), n images + metadata.csv
    out/external/         centres B, C, D in turn, n_external images + metadata.csv
    out/external_phone/   a smartphone photo (JPEG) of every external image + metadata.csv

Each split folder loads with ``datasets.load_dataset("imagefolder", data_dir=out / split)``; the
``label`` column is the reference reader's call ("AS" / "non-AS"), ``true_label`` the truth.
Everything is a pure function of ``seed``: rerunning gives the same files, and files that already
exist are skipped (resumable). PNGs are 16-bit grey, scaled to the full 16-bit range, bone bright;
DICOM files keep the centre's bit depth and photometric interpretation (MONOCHROME1 for B and D).

Example::

    >>> from as_ai.synthetic.datasets import write_pxr_dataset, read_split
    >>> out = write_pxr_dataset("/tmp/pxr_doc", n=4, seed=0, size=256, progress=False)
    >>> bool(read_split(out / "train")["label"].isin(["AS", "non-AS"]).all())
    True
"""
from __future__ import annotations

import json
import multiprocessing as mp
import os
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd
from PIL import Image

from . import pelvis
from .phone import photograph, save_photo, to_display

SPLITS = ("train", "external", "external_phone")
EXTERNAL_CENTRES = ("B", "C", "D")
_SPLIT_CODE = {"train": 0, "external": 1}
COLUMNS = ["file_name", "label", "true_label", "grade_left", "grade_right", "reader_grade_left",
           "reader_grade_right", "expert1_label", "expert2_label", "center", "mimic", "hip_involvement",
           "sex", "seed", "rois", "pixel_spacing_mm", "size", "bits_stored", "photometric", "format",
           "synthetic", "phone_level"]


def image_seed(seed: int, split: str, index: int) -> int:
    """The phantom seed of image ``index`` of ``split`` in the dataset made with ``seed``."""
    ss = np.random.SeedSequence([int(seed), _SPLIT_CODE[split], int(index)])
    return int(ss.generate_state(1, dtype=np.uint32)[0] >> 1)


def phone_level(seed: int, index: int) -> int:
    """The photo severity level (1-4) of external image ``index``."""
    return int(np.random.default_rng([int(seed), 5, int(index)]).integers(1, 5))


def _job_list(n: int, n_external: int, seed: int) -> list[tuple[str, int, int, str]]:
    jobs = [("train", i, image_seed(seed, "train", i), "A") for i in range(n)]
    jobs += [("external", i, image_seed(seed, "external", i), EXTERNAL_CENTRES[i % 3]) for i in range(n_external)]
    return jobs


def _row(meta: dict[str, Any], file_name: str, fmt: str) -> dict[str, Any]:
    return dict(
        file_name=file_name, label=meta["label"], true_label=meta["true_label"],
        grade_left=meta["grades"][0], grade_right=meta["grades"][1],
        reader_grade_left=meta["reader_grades"][0], reader_grade_right=meta["reader_grades"][1],
        expert1_label=meta["expert1_label"], expert2_label=meta["expert2_label"], center=meta["center"],
        mimic=meta["mimic"] or "none", hip_involvement=meta["hip_involvement"], sex=meta["sex"],
        seed=meta["seed"], rois=json.dumps(meta["rois"]), pixel_spacing_mm=meta["pixel_spacing_mm"],
        size=meta["size"], bits_stored=meta["bits_stored"], photometric=meta["photometric"], format=fmt,
        synthetic=True, phone_level=0)


def _work(args) -> tuple[dict, dict | None]:
    out, split, index, pseed, centre, size, fmt, phone_seed = args
    case = pelvis.draw_case(pseed)
    kw = dict(center=centre, size=size, mimic=case["mimic"], hip_involvement=case["hip_involvement"])
    ext = ".dcm" if fmt == "dicom" else ".png"
    name = f"{index:06d}{ext}"
    path = Path(out) / split / name
    phone_path = Path(out) / "external_phone" / f"{index:06d}.jpg" if split == "external" else None
    need_img = not path.exists()
    need_phone = phone_path is not None and not phone_path.exists()
    if need_img or need_phone:
        ph = pelvis.render(pseed, case["grades"], **kw)
        meta = ph.meta
        if need_img:
            _write_atomic(path, lambda p: write_image(ph, p, fmt=fmt))
        if need_phone:
            level = phone_level(phone_seed, index)
            photo = photograph(to_display(ph.image), level=level, seed=pseed)
            _write_atomic(phone_path, lambda p: save_photo(photo, p, seed=pseed))
    else:
        meta = pelvis.describe(pseed, case["grades"], **kw)
    row = _row(meta, name, fmt)
    prow = None
    if phone_path is not None:
        prow = dict(row, file_name=phone_path.name, format="jpeg", phone_level=phone_level(phone_seed, index))
    return row, prow


def _write_atomic(path: Path, write) -> None:
    tmp = path.with_name(path.stem + ".part" + path.suffix)
    write(tmp)
    os.replace(tmp, path)


def write_image(ph: pelvis.Phantom, path: str | os.PathLike, *, fmt: str = "png") -> None:
    """Write a phantom as a 16-bit PNG (full 16-bit range) or as a DICOM file (see :mod:`._dicom`)."""
    if fmt == "png":
        maxv = 2 ** ph.meta["bits_stored"] - 1
        v16 = np.round(ph.image.astype(np.float64) * (65535.0 / maxv)).astype(np.uint16)
        Image.fromarray(v16).save(path, format="PNG", compress_level=1)  # 5x faster than 6
    elif fmt == "dicom":
        from ._dicom import write_dicom
        write_dicom(ph, path)
    else:
        raise ValueError(f"fmt must be 'png' or 'dicom'; got {fmt!r}.")


def write_pxr_dataset(out: str | os.PathLike, *, n: int, seed: int = 0, size: int = 512, fmt: str = "png",
                      workers: int = 1, n_external: int | None = None, progress: bool = True) -> Path:
    """Write the phantom dataset (train / external / external_phone) to ``out``; returns ``out``.

    ``n`` train images (centre A); ``n_external`` external images (default ``max(1, n // 5)``,
    centres B, C, D in turn) and a phone photo of each. Existing files are kept (resumable);
    ``metadata.csv`` files are rewritten at the end.

    Raises:
        ValueError: a non-positive ``n``, an unknown ``fmt``, ``workers`` < 1.
    """
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n (the number of training images) must be a positive integer; got {n!r}.")
    if fmt not in ("png", "dicom"):
        raise ValueError(f"fmt must be 'png' or 'dicom'; got {fmt!r}.")
    if workers < 1:
        raise ValueError(f"workers must be >= 1; got {workers!r}.")
    n_ext = max(1, int(n) // 5) if n_external is None else int(n_external)
    out = Path(out)
    for split in SPLITS:
        (out / split).mkdir(parents=True, exist_ok=True)
        for stale in (out / split).glob("*.part.*"):  # left by an interrupted run
            stale.unlink()
    jobs = [(str(out), split, i, ps, c, int(size), fmt, int(seed)) for split, i, ps, c in _job_list(n, n_ext, seed)]
    results = _run(jobs, workers, progress)
    rows: dict[str, list] = {s: [] for s in SPLITS}
    for (row, prow), job in zip(results, jobs):
        rows[job[1]].append(row)
        if prow is not None:
            rows["external_phone"].append(prow)
    for split in SPLITS:
        df = pd.DataFrame(rows[split], columns=COLUMNS)
        df.to_csv(out / split / "metadata.csv", index=False)
    (out / "README.md").write_text(_readme(n, n_ext, seed, size, fmt), encoding="utf-8")
    return out


def _one_blas_thread() -> None:
    """Pool initializer: one BLAS thread per worker. Each process would otherwise start a BLAS thread per
    core, and N workers on N cores ran N x N threads (16 workers on 16 cores made 14 images/s)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - comes with scikit-learn
        return
    threadpool_limits(limits=1)


def _run(jobs: list, workers: int, progress: bool) -> list:
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover
        tqdm = None
    bar = tqdm(total=len(jobs), desc="phantoms", unit="img", disable=not progress) if tqdm else None
    results = []
    if workers == 1:
        for j in jobs:
            results.append(_work(j))
            if bar:
                bar.update()
    else:
        ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
        with ctx.Pool(workers, initializer=_one_blas_thread) as pool:
            for r in pool.imap(_work, jobs, chunksize=4):
                results.append(r)
                if bar:
                    bar.update()
    if bar:
        bar.close()
    return results


def _readme(n, n_ext, seed, size, fmt) -> str:
    return (
        "---\nconfigs:\n- config_name: default\n  data_files:\n"
        "  - split: train\n    path: train/*\n  - split: external\n    path: external/*\n"
        "  - split: external_phone\n    path: external_phone/*\n"
        "tags:\n- synthetic\n- medical-imaging\n---\n"
        "# Phantom AP pelvis radiographs (synthetic)\n\n"
        "Generated by `as-ai synth pxr` (as_ai.synthetic). **Synthetic data, not patients; not for clinical use.**\n\n"
        f"- seed {seed}, size {size} px, format {fmt}\n"
        f"- train: {n} images, centre A\n- external: {n_ext} images, centres B, C, D\n"
        "- external_phone: a simulated smartphone photo of each external image (JPEG)\n\n"
        "Each split folder has a `metadata.csv` (imagefolder layout): `label` is the reference reader's "
        "modified-New-York call, `true_label` the truth, grades are per side (left = patient left = image right).\n")


def read_split(split_dir: str | os.PathLike) -> pd.DataFrame:
    """Read a split's ``metadata.csv`` with ROIs parsed and an absolute ``path`` column.

    Raises:
        FileNotFoundError: the folder has no ``metadata.csv``.
    """
    d = Path(split_dir)
    f = d / "metadata.csv"
    if not f.is_file():
        raise FileNotFoundError(f"{f} not found: {d} is not a split folder written by `as-ai synth pxr` "
                                "(expected train/, external/ or external_phone/ with a metadata.csv).")
    df = pd.read_csv(f, keep_default_na=False)
    df["rois"] = df["rois"].map(json.loads)
    df["path"] = [str(d / x) for x in df["file_name"]]
    for c in ("hip_involvement", "synthetic"):
        if c in df and df[c].dtype == object:
            df[c] = df[c].map(lambda v: str(v) == "True")
    return df


def iter_images(split_dir: str | os.PathLike) -> Iterable[tuple[np.ndarray, dict]]:
    """Yield (array, row) for each image of a split (PNG/JPEG via PIL, DICOM via pydicom)."""
    for row in read_split(split_dir).to_dict("records"):
        p = row["path"]
        if p.endswith(".dcm"):
            import pydicom
            yield pydicom.dcmread(p).pixel_array, row
        else:
            yield np.asarray(Image.open(p)), row
