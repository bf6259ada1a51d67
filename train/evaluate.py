#!/usr/bin/env python
"""The study's external evaluation of a diagnosis ensemble: a report folder that reads like a results section.

    python -m train.evaluate --model runs/pxr/model --data data/pxr --out runs/pxr/report [--truth true|reference]

Reads top to bottom:
  1. data      the clean external split (``DATA/external`` or ``DATA`` itself when it holds a metadata.csv) and,
               when present, its phone-photo twin (``DATA/external_phone`` / ``<split>_phone``)
  2. score     every image through ``Diagnoser.diagnose_batch`` (batched, progress bar); ensemble and member
               probabilities are cached in ``OUT/predictions.csv`` and reused for the same model (resumable)
  3. measure   :func:`study_metrics` (train/metrics.py) on the predictions: overall and per centre (AUC with DeLong CI, threshold
               metrics, ECE), ensemble vs each member (paired DeLong), phone photos vs their clean images
               (AUC drop, paired DeLong), the reader study (each simulated expert alone, expert + model with the
               OR rule, Cohen's kappa between readers, vs the reference reader and vs the truth)
  4. soften    the clean images read again, blurred by a Gaussian of 0.5 and 1 px at the model's reading scale
               (:func:`softness`): how the scores move when the detector, the dose or the camera gives a softer
               image (blurred joint margins are also a sign of early sacroiliitis)
  5. sides     when the model carries a joint reader (its ``as_ai.json`` names one, or ``--joints bundled|PATH``):
               both sacroiliac joints of every image, measured against the phantoms' metadata
               (train/_joints_sides.py): box IoU >= 0.5 rate and centre error vs the true ROI, per-side QWK and
               exact accuracy vs the true grades, the 5 x 5 confusions vs the truth and vs each simulated reader,
               the readers' agreement with each other (the human ceiling), P(mNY) AUC vs the true label
  6. write     ``metrics.json`` (with the project's :func:`targets`), ``report.md`` (train/_report.py, and the
               joint section) and PNG figures (train/_figures.py)

Truth: ``--truth true`` (default) scores against the labels of the true grades (``true_label``, known only for
phantoms); ``--truth reference`` against the reference reader's label (``label``), the only truth a real
study has. The other one is always reported alongside.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from train._columns import GRADE_COLUMNS, MEMBER, PREDICTIONS, READER
from train._joints_sides import READER_COLUMN, SIDE_COLUMNS
from train.metrics import SOFTNESS_SIGMAS, TRUTHS, softness_metrics, study_metrics, targets

_SCORE_COLUMNS = ("prob", "label", "in_distribution")

__all__ = ["Evaluation", "evaluate", "find_splits", "softness", "softness_metrics", "study_metrics",
           "targets", "main", "TRUTHS", "SOFTNESS_SIGMAS"]


# ------------------------------------------------------------------------------------------------ result
@dataclass(frozen=True)
class Evaluation:
    """Where the evaluation wrote its outputs, and its metrics (the content of ``metrics.json``)."""

    out: Path
    metrics: dict[str, Any]
    report: Path
    predictions: Path
    figures: tuple[Path, ...]
    rescored: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return {"out": str(self.out), "report": str(self.report), "predictions": str(self.predictions),
                "figures": [str(f) for f in self.figures], "rescored": self.rescored, "metrics": self.metrics}


# --------------------------------------------------------------------------------------------- 1. data
def find_splits(data: str | Path, *, split: str | None = None,
                phone_split: str | None = None) -> tuple[Path, Path | None]:
    """The clean external split folder and its phone-photo twin (None when there is none).

    ``data`` is a dataset root (``external/``, ``external_phone/`` inside) or a split folder itself;
    ``split`` / ``phone_split`` name other folders of the root (``phone_split="none"`` skips photos).

    Raises:
        FileNotFoundError: no ``metadata.csv`` where the clean split should be, or a named phone split missing.
    """
    root = Path(data)
    if split is None and (root / "metadata.csv").is_file():
        clean, default_phone = root, root.parent / f"{root.name}_phone"
    else:
        clean = root / (split or "external")
        default_phone = root / f"{clean.name}_phone"
    if not (clean / "metadata.csv").is_file():
        raise FileNotFoundError(f"{clean / 'metadata.csv'} not found: --data must be a dataset root holding "
                                f"external/metadata.csv (as written by `as-ai synth pxr`) or a split folder with a "
                                f"metadata.csv; got {root}. Pass --split NAME for another split folder.")
    if phone_split == "none":
        return clean, None
    if phone_split is not None:
        phone = (root if split is not None or not (root / "metadata.csv").is_file() else root.parent) / phone_split
        if not (phone / "metadata.csv").is_file():
            raise FileNotFoundError(f"phone split {phone} has no metadata.csv; pass --phone-split none to skip it.")
        return clean, phone
    return clean, default_phone if (default_phone / "metadata.csv").is_file() else None


def _read_metadata(folder: Path) -> pd.DataFrame:
    """A split's metadata with an absolute ``path`` column (the data engine's reader when it applies)."""
    try:
        from as_ai.synthetic.datasets import read_split

        return read_split(folder)
    except (KeyError, ImportError):  # not written by the data engine (no rois column): plain imagefolder
        df = pd.read_csv(folder / "metadata.csv", keep_default_na=False)
        if "file_name" not in df.columns:
            raise ValueError(f"{folder / 'metadata.csv'} has no file_name column (columns: {list(df.columns)}); "
                             "an imagefolder metadata.csv names each image in file_name.") from None
        df["path"] = [str(folder / x) for x in df["file_name"]]
        return df


def _binary(values: pd.Series, column: str, where: Path) -> np.ndarray:
    """AS / non-AS (or 1/0, True/False) labels as 0/1 ints."""
    mapping = {"AS": 1, "non-AS": 0, "1": 1, "0": 0, "True": 1, "False": 0, "1.0": 1, "0.0": 0}
    text = values.astype(str).str.strip()
    bad = sorted(set(text) - set(mapping))
    if bad:
        raise ValueError(f"{where}: column {column!r} must hold 'AS' / 'non-AS' (or 1/0) labels; got {bad[:5]}. "
                         "Fix the metadata.csv or pass --truth reference.")
    return text.map(mapping).to_numpy(dtype=np.int64)


def _key(df: pd.DataFrame) -> pd.Series:
    """The key that pairs a phone photo with its clean image: centre + phantom seed, else the file stem."""
    if "seed" in df.columns:
        centre = df["center"].astype(str) if "center" in df.columns else ""
        return centre + "/" + df["seed"].astype(str)
    return df["file_name"].map(lambda n: Path(str(n)).stem)


def _frame(folder: Path, role: str) -> pd.DataFrame:
    """The study columns of one split: labels as 0/1, reader calls, centre, pairing key, grades."""
    meta = _read_metadata(folder)
    where = folder / "metadata.csv"
    out = pd.DataFrame({"set": role, "split": folder.name, "file_name": meta["file_name"].astype(str),
                        "path": meta["path"], "key": _key(meta)})
    out["center"] = meta["center"].astype(str) if "center" in meta.columns else "all"
    if "phone_level" in meta.columns:
        out["phone_level"] = pd.to_numeric(meta["phone_level"], errors="coerce")
    for truth, column in TRUTHS.items():
        if column in meta.columns:
            out[f"y_{truth}"] = _binary(meta[column], column, where)
    for column in sorted(c for c in meta.columns if c.startswith("expert") and c.endswith("_label")):
        out[READER + column[: -len("_label")]] = _binary(meta[column], column, where)
    for column in GRADE_COLUMNS:
        if column in meta.columns:
            out[column] = pd.to_numeric(meta[column], errors="coerce")
    return out


# -------------------------------------------------------------------------------------------- 2. score
def _score(diagnoser: Any, frame: pd.DataFrame, cached: pd.DataFrame | None, *, batch_size: int,
           progress: bool) -> tuple[pd.DataFrame, int]:
    """``frame`` with prob / label / in_distribution / member columns; rows in ``cached`` are not rescored."""
    names = list(diagnoser.ensemble.names)
    with_sides = getattr(diagnoser, "joint_reader", None) is not None
    score_cols = [*_SCORE_COLUMNS, *(MEMBER + n for n in names), *(SIDE_COLUMNS if with_sides else ())]
    known = pd.DataFrame(columns=["set", "file_name", *score_cols])
    if cached is not None and set(score_cols) <= set(cached.columns):
        known = cached[["set", "file_name", *score_cols]]
    merged = frame.merge(known, on=["set", "file_name"], how="left")
    todo = merged.index[merged["prob"].isna()]
    if len(todo):
        results = diagnoser.diagnose_batch(list(merged.loc[todo, "path"]), batch_size=batch_size, progress=progress)
        merged.loc[todo, "prob"] = [r.probability for r in results]
        merged.loc[todo, "label"] = [r.label for r in results]
        merged.loc[todo, "in_distribution"] = [bool(r.check.in_distribution) for r in results]
        for n in names:
            merged.loc[todo, MEMBER + n] = [r.members[n] for r in results]
        if with_sides:
            from train._joints_sides import reading_columns

            sides = pd.DataFrame([reading_columns(r) for r in results], index=todo, columns=list(SIDE_COLUMNS))
            for c in SIDE_COLUMNS:
                merged.loc[todo, c] = sides[c].astype(object)
    merged["prob"] = merged["prob"].astype(float)
    merged["in_distribution"] = merged["in_distribution"].map(lambda v: str(v) == "True")
    return merged, len(todo)


def softness(diagnoser: Any, paths: Sequence[str | Path], y: np.ndarray, *,
             sigmas: Sequence[float] = SOFTNESS_SIGMAS, batch_size: int = 16) -> dict[str, Any]:
    """Score ``paths`` as they are and blurred by each of ``sigmas``: :func:`softness_metrics` of the result.

    Every image is read as the model reads it (``Diagnoser.model_views``, its preprocessing), then blurred at
    the model's input scale, so one sigma means the same softness for a 512 px phantom and a 3000 px file.
    """
    import torch

    from as_ai.imaging import load_radiograph
    from as_ai.transforms import soften_input

    levels = [0.0, *sorted(float(s) for s in sigmas if s > 0)]
    probs: dict[float, list[np.ndarray]] = {s: [] for s in levels}
    with torch.inference_mode():
        for i in range(0, len(paths), batch_size):
            x = diagnoser.model_input(diagnoser.model_views([load_radiograph(p) for p in paths[i:i + batch_size]]))
            for s in levels:
                probs[s].append(diagnoser.predict_tensor({k: soften_input(v, s) for k, v in x.items()})[0]
                                .double().numpy())
    return softness_metrics(y, {s: np.concatenate(v) for s, v in probs.items()}, diagnoser.threshold)


def _load_cache(path: Path, provenance: str, joint_reader: str = "") -> pd.DataFrame | None:
    """Earlier predictions of the same model with the same joint reader (``""``: none), or None (no file, another
    model or reader, unreadable): a reader changes labels (a joint not found abstains) and adds the sides."""
    if not path.is_file():
        return None
    try:
        df = pd.read_csv(path, keep_default_na=False, na_values=[""])
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
        return None
    if "model" not in df.columns or set(df["model"].astype(str)) != {provenance}:
        return None
    readers = df[READER_COLUMN].fillna("").astype(str) if READER_COLUMN in df.columns else pd.Series([""] * len(df))
    if set(readers) - {joint_reader}:
        return None
    return df


# ------------------------------------------------------------------------------- 3.-5. measure, soften, write
def evaluate(model: str | Path, data: str | Path, *, out: str | Path, truth: str = "true", batch_size: int = 16,
             split: str | None = None, phone_split: str | None = None, level: float = 0.95,
             rescore: bool = False, progress: bool = True, figures: bool = True,
             softness_sigmas: Sequence[float] = SOFTNESS_SIGMAS, device: str = "cpu",
             joints: Any = None) -> Evaluation:
    """Run the external evaluation of the diagnosis model ``model`` on ``data`` and write it to ``out``.

    Writes ``predictions.csv`` (reused on the next run for the same model unless ``rescore``),
    ``metrics.json``, ``report.md`` and PNG figures. Returns where they are and the metrics.
    ``softness_sigmas`` are the blurs of the softness test on the clean images (empty: no test).
    ``device`` runs the members elsewhere (e.g. "cuda"); the CPU default makes reports reproduce digit for
    digit, where a GPU's TF32 convolutions move probabilities by about 1e-3.
    ``joints``: the joint reader to evaluate with (``"bundled"``, a reader folder or a
    :class:`~as_ai.joints.JointReader`; ``"none"`` evaluates without the model's own); None keeps what the model's
    ``as_ai.json`` names. With a reader, ``metrics["sides"]`` holds the joint section (:mod:`train._joints_sides`)
    and the diagnoses are the model's with that reader attached (a joint not found makes one indeterminate).

    Raises:
        FileNotFoundError: the data folder has no external split.
        ModelLoadError: the model or the joint reader cannot be loaded or verified.
        ValueError: unknown ``truth``, a label column that is not AS / non-AS, too few cases of a class,
            a device that is not here.

    Example:
        >>> ev = evaluate("runs/pxr/model", "data/pxr", out="runs/pxr/report")   # doctest: +SKIP
        >>> ev.metrics["overall"]["auc"]["auc"]                                   # doctest: +SKIP
        0.97
    """
    from as_ai.diagnosis import Diagnoser

    if truth not in TRUTHS:
        raise ValueError(f"truth must be one of {sorted(TRUTHS)}, got {truth!r}.")
    clean_dir, phone_dir = find_splits(data, split=split, phone_split=phone_split)
    frames = [_frame(clean_dir, "clean")] + ([_frame(phone_dir, "phone")] if phone_dir is not None else [])
    frame = pd.concat(frames, ignore_index=True)
    if f"y_{truth}" not in frame.columns:
        raise ValueError(f"{clean_dir / 'metadata.csv'} has no {TRUTHS[truth]!r} column for truth={truth!r}; "
                         "pass --truth reference to score against the reference reader's label.")
    diagnoser = Diagnoser.from_pretrained(model).to(device)
    if joints is not None:
        diagnoser.attach_joint_reader(None if str(joints).lower() == "none" else joints)
    reader = getattr(diagnoser, "joint_reader", None)
    reader_id = "" if reader is None else str(reader.provenance)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pred_path = out / PREDICTIONS
    cached = None if rescore else _load_cache(pred_path, diagnoser.provenance, reader_id)
    pred, rescored = _score(diagnoser, frame, cached, batch_size=batch_size, progress=progress)
    pred["model"] = diagnoser.provenance
    if reader is not None:
        pred[READER_COLUMN] = reader_id
    pred.drop(columns=["path"]).to_csv(pred_path, index=False)

    metrics = study_metrics(pred, threshold=diagnoser.threshold, truth=truth, level=level,
                            members=list(diagnoser.ensemble.names))
    metrics["model"] = {"provenance": diagnoser.provenance, "members": dict(diagnoser.archs),
                        "combine": diagnoser.combine, "calibration": diagnoser.calibration.to_dict(),
                        "synthetic": diagnoser.synthetic, "training_data": _training_data(diagnoser.config)}
    if softness_sigmas:
        clean = pred[pred["set"] == "clean"]
        metrics["softness"] = softness(diagnoser, list(clean["path"]), clean[f"y_{truth}"].to_numpy(),
                                       sigmas=softness_sigmas, batch_size=batch_size)
    metrics["data"] = {"clean": str(clean_dir), "phone": None if phone_dir is None else str(phone_dir),
                       "synthetic": _is_synthetic(clean_dir)}
    if reader is not None:
        from train._joints_sides import measure_sides

        splits = {"clean": clean_dir, **({"phone": phone_dir} if phone_dir is not None else {})}
        metrics["sides"] = measure_sides(pred, splits, reader=reader_id).to_dict()
    figs: list[Path] = []
    if figures:
        from train import _figures

        figs = _figures.draw_all(pred, metrics, out)
    metrics["targets"] = targets(metrics)
    metrics["figures"] = [f.name for f in figs]
    (out / "metrics.json").write_text(json.dumps(_jsonable(metrics), indent=2), encoding="utf-8")
    from train._report import render_report

    report = out / "report.md"
    text = render_report(metrics)
    if "sides" in metrics:
        from train._joints_sides import render_markdown

        text = text.rstrip("\n") + "\n\n" + render_markdown(metrics["sides"])
    report.write_text(text, encoding="utf-8")
    return Evaluation(out=out, metrics=metrics, report=report, predictions=pred_path, figures=tuple(figs),
                      rescored=rescored)


def _training_data(config: Mapping[str, Any]) -> dict[str, Any]:
    training = config.get("training", {}) or {}
    data = training.get("data", {}) or {}
    return {k: data[k] for k in ("path", "seed", "n", "centres", "train_metadata_sha256") if k in data}


def _is_synthetic(folder: Path) -> bool:
    meta = pd.read_csv(folder / "metadata.csv", nrows=5, keep_default_na=False)
    return "synthetic" in meta.columns and meta["synthetic"].astype(str).isin(["True", "true", "1"]).all()


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, float) and not np.isfinite(x):
        return None if np.isnan(x) else ("inf" if x > 0 else "-inf")
    return x


def _sigmas(text: str) -> tuple[float, ...]:
    """``--softness`` value: comma-separated positive blurs, or 'none'."""
    if text.strip().lower() in ("none", ""):
        return ()
    try:
        vals = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers such as 0.5,1 (or 'none'), got {text!r}")
    if not all(np.isfinite(v) and 0 < v <= 20 for v in vals):
        raise argparse.ArgumentTypeError(f"each blur must be a number of pixels in (0, 20], got {text!r}")
    return vals


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m train.evaluate --model DIR --data DIR --out DIR [--truth true|reference]``."""
    p = argparse.ArgumentParser(prog="python -m train.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="diagnosis model repository (local folder or Hub repo id)")
    p.add_argument("--data", required=True, help="dataset root (external/, external_phone/) or one split folder")
    p.add_argument("--out", required=True, help="report folder (report.md, metrics.json, figures, predictions.csv)")
    p.add_argument("--truth", choices=sorted(TRUTHS), default="true",
                   help="labels to score against: 'true' (true grades, phantoms only) or 'reference' (reader)")
    p.add_argument("--split", default=None, help="clean split folder under --data (default: external)")
    p.add_argument("--phone-split", default=None, help="phone-photo split folder (default: <split>_phone; 'none')")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--level", type=float, default=0.95, help="confidence level of intervals (default 0.95)")
    p.add_argument("--rescore", action="store_true", help="ignore cached predictions.csv and score every image")
    p.add_argument("--softness", type=_sigmas, default=SOFTNESS_SIGMAS, metavar="SIGMAS",
                   help="blurs of the softness test, px at the model's reading scale, comma-separated "
                        f"(default {','.join(map(str, SOFTNESS_SIGMAS))}; 'none' skips it)")
    p.add_argument("--device", default="cpu", help="where the members run: cpu (default: reports reproduce "
                   "digit for digit), cuda or cuda:N (TF32 moves probabilities by about 1e-3)")
    p.add_argument("--joints", nargs="?", const="bundled", default=None, metavar="bundled|PATH|none",
                   help="evaluate with this joint reader attached and add the joint section (boxes, per-side "
                        "grades, P(mNY)); bare --joints: the bundled reader; 'none': without the model's own "
                        "(default: the reader the model's as_ai.json names, if any)")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    from as_ai.errors import AsAiError

    try:
        ev = evaluate(args.model, args.data, out=args.out, truth=args.truth, batch_size=args.batch_size,
                      split=args.split, phone_split=args.phone_split, level=args.level, rescore=args.rescore,
                      progress=not args.no_progress, softness_sigmas=args.softness, device=args.device,
                      joints=args.joints)
    except (FileNotFoundError, ValueError, AsAiError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from train._report import headline

    print(headline(ev.metrics))
    if "sides" in ev.metrics:
        from train._joints_sides import render_text

        print(render_text(ev.metrics["sides"]))
    print(f"report: {ev.report}  ({len(ev.figures)} figures, {ev.rescored} images scored)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
