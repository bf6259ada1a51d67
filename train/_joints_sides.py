"""``train.evaluate``'s joint section: both sacroiliac joints as the diagnosis model's joint reader read them.

When the evaluated model carries a joint reader (its ``as_ai.json`` names one, or ``--joints``), every
:class:`~as_ai.result.Diagnosis` has ``sides``; :func:`reading_columns` flattens them into ``predictions.csv``
(the same names as ``as-ai diagnose --joints``' CSV) and :func:`measure_sides` measures them against the
phantoms' metadata with :mod:`train._joints_eval` (the figures ``train/joints.py`` reports): localisation vs the
stored ROI and vs the anatomical box, per-side grading vs the true grades and vs each simulated reader, the
readers' agreement with each other, and P(mNY) vs the true label. :func:`render_text` is what the command line
prints, :func:`render_markdown` the report's section.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from as_ai.result import SIDE_COLUMNS as READING_COLUMNS, side_columns

SIDES = ("left", "right")   # the patient's; as train/_joints_eval.SIDES (imported lazily: it brings torch)
_COORDS = ("x0", "y0", "x1", "y1")
SIDE_COLUMNS: tuple[str, ...] = (*READING_COLUMNS, "image_h", "image_w")   # the CLI's, and the image's size
READER_COLUMN = "joint_reader"        # the reader's provenance, per row of predictions.csv (the cache's key)
PHONE_SETS = (("phone_levels_1_3", lambda lv: lv <= 3), ("phone_level_4", lambda lv: lv == 4))

__all__ = ["SIDE_COLUMNS", "READER_COLUMN", "JointSection", "reading_columns", "measure_sides", "render_text",
           "render_markdown"]


# ------------------------------------------------------------------------------------------------ result
@dataclass(frozen=True)
class JointSection:
    """The joint reader's figures on an evaluation's data (``metrics.json["sides"]``).

    Attributes:
        reader: the reader's provenance (``<path>@<sha256 of joints.json, 12 chars>``).
        sets: per set (``clean``, ``phone_levels_1_3``, ``phone_level_4``): ``n_images``, ``localisation``
            (vs the stored ROI, with ``vs_anatomical_box``) and ``grading`` (:func:`train._joints_eval.grading_of`).
        by_centre: per centre of the clean set, localisation and per-side QWK.
        abstained: clean images whose diagnosis is indeterminate because a joint was not found.
        notes: what could not be measured and why (e.g. no ROIs in the metadata).
    """

    reader: str
    sets: dict[str, dict[str, Any]]
    by_centre: dict[str, dict[str, Any]] = field(default_factory=dict)
    abstained: int = 0
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return {"reader": self.reader, "sets": self.sets, "by_centre": self.by_centre, "abstained": self.abstained,
                "notes": list(self.notes)}


# ------------------------------------------------------------------------------------------- the columns
def reading_columns(diagnosis: Any) -> dict[str, Any]:
    """One diagnosis' joint reading as :data:`SIDE_COLUMNS` values (empty when it has no ``sides``)."""
    reading = getattr(diagnosis, "sides", None)
    if reading is None:
        return {}
    out = side_columns(reading)
    h, w = (list(getattr(diagnosis, "image", {}).get("size") or []) + [np.nan, np.nan])[:2]
    out["image_h"], out["image_w"] = float(h), float(w)
    return out


def _as_bool(v: pd.Series) -> np.ndarray:
    return v.map(lambda x: str(x).strip() in ("True", "true", "1", "1.0")).to_numpy()


def _readings(rows: pd.DataFrame) -> dict[str, np.ndarray]:
    """The predicted side of ``rows`` as arrays: boxes n x 2 x 4, found n x 2, probs n x 2 x 5, grades n x 2."""
    return {"boxes": np.stack([rows[[f"sij_{s}_{k}" for k in _COORDS]].to_numpy(float) for s in SIDES], 1),
            "found": np.stack([_as_bool(rows[f"sij_{s}_found"]) for s in SIDES], 1),
            "probs": np.stack([rows[[f"sij_{s}_p{g}" for g in range(5)]].to_numpy(float) for s in SIDES], 1),
            "grades": np.stack([rows[f"sij_{s}_grade"].to_numpy(float).astype(int) for s in SIDES], 1),
            "mny": rows["mny_probability"].to_numpy(float),
            "short_edge": np.minimum(rows["image_h"].to_numpy(float), rows["image_w"].to_numpy(float))}


# ------------------------------------------------------------------------------------------- the truth
def _metadata(folder: Path) -> pd.DataFrame:
    """A split's metadata with ROIs parsed (``read_split``); empty when it is no data-engine split."""
    from as_ai.synthetic.datasets import read_split

    try:
        return read_split(folder)
    except (KeyError, ValueError, FileNotFoundError):
        return pd.DataFrame()


def _true_boxes(rows: Sequence[dict], notes: list[str]) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The stored ROIs and the anatomical boxes (n x 2 x 4) of ``rows``, mapped onto the photo for phone photos;
    None where the metadata lacks what they need."""
    from as_ai.synthetic._acquisition import CENTRES
    from train._joints_data import SIDE_KEYS, anatomical_box, phone_box

    if not rows or not all(isinstance(r.get("rois"), dict) and set(SIDE_KEYS) <= set(r["rois"]) for r in rows):
        notes.append("no sij_left / sij_right ROIs in the metadata: localisation not measured")
        return None, None
    stored = [[tuple(float(v) for v in r["rois"][k]) for k in SIDE_KEYS] for r in rows]
    anat = None
    if all(str(r.get("center")) in CENTRES and r.get("size") not in (None, "") for r in rows):
        anat = [[anatomical_box(b, str(r["center"]), int(r["size"])) for b in bs] for r, bs in zip(rows, stored)]

    def photo(r: dict, boxes: list) -> list:
        level = int(float(r.get("phone_level") or 0))
        if not level:
            return boxes
        shape = (int(r["size"]), int(r["size"]))       # the data engine's radiographs are square
        return [phone_box(b, shape, level=level, seed=int(r["seed"])) for b in boxes]

    stored = [photo(r, b) for r, b in zip(rows, stored)]
    anat = None if anat is None else [photo(r, b) for r, b in zip(rows, anat)]
    return np.asarray(stored, float), None if anat is None else np.asarray(anat, float)


def _measure(rows: pd.DataFrame, meta: list[dict], notes: list[str], *, spacing: bool) -> dict[str, Any]:
    """Localisation and grading of one set's rows (``rows`` predictions, ``meta`` their metadata records)."""
    from train import _joints_eval as jev

    got = _readings(rows)
    out: dict[str, Any] = {"n_images": int(len(rows))}
    stored, anat = _true_boxes(meta, notes)
    if stored is not None:
        sp = None
        if spacing and all(r.get("pixel_spacing_mm") not in (None, "") for r in meta):
            sp = np.array([float(r["pixel_spacing_mm"]) for r in meta])
        se = got["short_edge"] if np.isfinite(got["short_edge"]).all() else None
        out["localisation"] = jev.localisation_of(got["boxes"], stored, got["found"], spacing=sp, short_edge=se)
        if anat is not None:
            out["localisation"]["vs_anatomical_box"] = jev.localisation_of(got["boxes"], anat, got["found"],
                                                                           spacing=sp, short_edge=se)
    if meta and all({"grade_left", "grade_right"} <= set(r) for r in meta):
        true = np.array([[int(r[f"grade_{s}"]) for s in SIDES] for r in meta])
        kw: dict[str, Any] = {}
        if all("true_label" in r for r in meta):
            kw = {"p_mny": got["mny"], "y_true": np.array([str(r["true_label"]) == "AS" for r in meta], int)}
            if all("label" in r for r in meta):
                kw["y_reference"] = np.array([str(r["label"]) == "AS" for r in meta], int)
        out["grading"] = jev.grading_of(true, got["grades"], got["probs"], jev.reader_grades(meta), **kw)
    else:
        notes.append("no grade_left / grade_right in the metadata: grading not measured")
    return out


def measure_sides(pred: pd.DataFrame, splits: Mapping[str, Path], *, reader: str) -> JointSection:
    """The joint section of an evaluation: ``pred`` is the predictions table (``set``, ``file_name``,
    :data:`SIDE_COLUMNS`), ``splits`` maps each set (``clean``, ``phone``) to its folder."""
    notes: list[str] = []
    sets: dict[str, dict[str, Any]] = {}
    by_centre: dict[str, dict[str, Any]] = {}
    abstained = 0
    for role, folder in splits.items():
        rows = pred[pred["set"] == role].reset_index(drop=True)
        if rows.empty:
            continue
        meta_df = _metadata(folder)
        if meta_df.empty or "file_name" not in meta_df.columns:
            notes.append(f"{folder}: no data-engine metadata; the {role} set is not measured")
            continue
        by_name = {str(r["file_name"]): r for r in meta_df.to_dict("records")}
        meta = [by_name.get(str(f), {}) for f in rows["file_name"]]
        if role == "clean":
            abstained = int((~np.stack([_as_bool(rows[f"sij_{s}_found"]) for s in SIDES], 1).all(1)).sum())
            sets["clean"] = _measure(rows, meta, notes, spacing=True)
            for c in sorted({str(r.get("center")) for r in meta if r.get("center") not in (None, "")}):
                idx = [i for i, r in enumerate(meta) if str(r.get("center")) == c]
                m = _measure(rows.iloc[idx], [meta[i] for i in idx], [], spacing=True)
                by_centre[c] = {"n_images": m["n_images"], "localisation": m.get("localisation"),
                                "qwk": (m.get("grading") or {}).get("qwk")}
            continue
        levels = np.array([int(float(r.get("phone_level") or 0)) for r in meta])
        for name, keep in PHONE_SETS:
            idx = [i for i, lv in enumerate(levels) if lv and keep(lv)]
            if idx:
                sets[name] = _measure(rows.iloc[idx], [meta[i] for i in idx], notes, spacing=False)
    return JointSection(reader=reader, sets=sets, by_centre=by_centre, abstained=abstained,
                        notes=tuple(dict.fromkeys(notes)))


# -------------------------------------------------------------------------------------------- rendering
def _f(v: Any, nd: int = 3) -> str:
    return "n/a" if v is None else f"{v:.{nd}f}"


def _auc(a: Sequence[float] | None) -> str:
    return "n/a" if not a else f"{a[1]:.3f} ({a[0]:.3f}-{a[2]:.3f})"


def _loc_line(loc: Mapping[str, Any]) -> str:
    pct = (f", {_f(loc.get('centre_error_pct_median'), 2)} / {_f(loc.get('centre_error_pct_p95'), 2)} % of the "
           "short edge" if "centre_error_pct_median" in loc else "")
    mm = (f", {_f(loc.get('centre_error_mm_median'), 2)} / {_f(loc.get('centre_error_mm_p95'), 2)} mm"
          if "centre_error_mm_median" in loc else "")
    return (f"IoU>=0.5 {_f(loc['iou50_rate'])} (left {_f(loc['iou50_rate_by_side']['left'])}, right "
            f"{_f(loc['iou50_rate_by_side']['right'])}), mean IoU {_f(loc['mean_iou'])}; centre error median / p95 "
            f"{_f(loc['centre_error_px_median'], 1)} / {_f(loc['centre_error_px_p95'], 1)} px{pct}{mm}; "
            f"found {_f(loc['found_rate'])}")


def render_text(section: JointSection | Mapping[str, Any]) -> str:
    """The joint section as the command line prints it: a few lines per set, then the confusion matrices."""
    s = section.to_dict() if isinstance(section, JointSection) else dict(section)
    lines = [f"joint reader {s['reader']}"]
    for name, m in s["sets"].items():
        lines.append(f"  {name} ({m['n_images']} images)")
        loc = m.get("localisation")
        if loc:
            lines.append(f"    boxes vs stored ROI:      {_loc_line(loc)}")
            if "vs_anatomical_box" in loc:
                lines.append(f"    boxes vs anatomical box:  {_loc_line(loc['vs_anatomical_box'])}")
        g = m.get("grading")
        if not g:
            continue
        lines.append(f"    grades vs true: QWK {_f(g['qwk']['both'])} (left {_f(g['qwk']['left'])}, right "
                     f"{_f(g['qwk']['right'])}), exact {_f(g['exact_accuracy']['both'])}, within one "
                     f"{_f(g['within_one'])}")
        for r, v in g["readers"].items():
            lines.append(f"    reader {r:<10} vs true: QWK {_f(v['qwk_vs_true']['both'])}, exact "
                         f"{_f(v['exact_accuracy_vs_true'])};  model vs {r}: QWK {_f(v['model_qwk'])}, exact "
                         f"{_f(v['model_exact_accuracy'])}")
        for pair, v in g["reader_agreement"].items():
            lines.append(f"    readers {pair:<20} QWK {_f(v['qwk'])}, exact {_f(v['exact'])}")
        if "mny" in g:
            lines.append(f"    P(mNY) AUC vs true label {_auc(g['mny']['auc_vs_true'])}, vs reference label "
                         f"{_auc(g['mny'].get('auc_vs_reader_label'))}, ECE {_f(g['mny']['ece_vs_true'])}")
    clean = s["sets"].get("clean", {}).get("grading")
    if clean:
        lines.append("  clean, confusion of grades (rows true 0-4, columns predicted 0-4): "
                     f"{clean['confusion_vs_true']}")
        for r, v in clean["readers"].items():
            lines.append(f"    model vs reader {r} (rows the reader's grade): {v['confusion_vs_model']}")
    if s.get("abstained"):
        lines.append(f"  {s['abstained']} clean diagnoses indeterminate: a joint not found")
    lines += [f"  note: {n}" for n in s.get("notes", [])]
    return "\n".join(lines)


def _md_matrix(m: Sequence[Sequence[int]], rows: str, cols: str) -> list[str]:
    out = [f"| {rows} \\ {cols} | 0 | 1 | 2 | 3 | 4 |", "|---|---|---|---|---|---|"]
    return out + [f"| {g} | " + " | ".join(str(v) for v in row) + " |" for g, row in enumerate(m)]


def render_markdown(section: JointSection | Mapping[str, Any]) -> str:
    """The report's section on both sacroiliac joints (appended to ``report.md``)."""
    s = section.to_dict() if isinstance(section, JointSection) else dict(section)
    lines = ["### Both sacroiliac joints (the joint reader)", "",
             f"Joint reader `{s['reader']}`: each joint located, graded 0-4, P(modified New York criterion) from the "
             "two grade distributions. Boxes are compared with the stored ROI (which carries the centre's "
             "detector-blur margin) and with the anatomical box (that margin removed; docs/anatomy.md).", "",
             "| set | images | IoU>=0.5 vs ROI | vs anatomical box | centre error median (px / % short edge) "
             "| QWK vs true | exact | reference reader QWK | P(mNY) AUC vs true |", "|---|---|---|---|---|---|---|---|---|"]
    for name, m in s["sets"].items():
        loc, g = m.get("localisation") or {}, m.get("grading") or {}
        anat = loc.get("vs_anatomical_box") or {}
        ref = (g.get("readers") or {}).get("reference", {})
        lines.append(f"| {name} | {m['n_images']} | {_f(loc.get('iou50_rate'))} | {_f(anat.get('iou50_rate'))} | "
                     f"{_f(loc.get('centre_error_px_median'), 1)} / {_f(loc.get('centre_error_pct_median'), 2)} | "
                     f"{_f((g.get('qwk') or {}).get('both'))} | {_f((g.get('exact_accuracy') or {}).get('both'))} | "
                     f"{_f((ref.get('qwk_vs_true') or {}).get('both'))} | "
                     f"{_auc((g.get('mny') or {}).get('auc_vs_true'))} |")
    clean = s["sets"].get("clean", {}).get("grading")
    if clean:
        agree = ", ".join(f"{p} QWK {_f(v['qwk'])} (exact {_f(v['exact'])})"
                          for p, v in clean["reader_agreement"].items())
        lines += ["", "Simulated readers vs the true grades (the ceiling a human reaches): " + ", ".join(
            f"{r} QWK {_f(v['qwk_vs_true']['both'])} (exact {_f(v['exact_accuracy_vs_true'])})"
            for r, v in clean["readers"].items()) + "." + (f" Readers with each other: {agree}." if agree else ""),
            "", "Confusion of grades, clean set (rows true grade, columns the model's):", "",
            *_md_matrix(clean["confusion_vs_true"], "true", "model")]
        for r, v in clean["readers"].items():
            lines += ["", f"Model vs reader `{r}` (rows the reader's grade, columns the model's):", "",
                      *_md_matrix(v["confusion_vs_model"], r, "model")]
    if s.get("by_centre"):
        lines += ["", "By centre (clean): " + "; ".join(
            f"{c} IoU>=0.5 vs anatomical box "
            f"{_f(((v.get('localisation') or {}).get('vs_anatomical_box') or {}).get('iou50_rate'))}, "
            f"QWK {_f((v.get('qwk') or {}).get('both'))}" for c, v in s["by_centre"].items()) + "."]
    if s.get("abstained"):
        lines += ["", f"{s['abstained']} clean diagnoses were indeterminate because a joint was not found."]
    lines += [f"\n_Not measured: {n}._" for n in s.get("notes", [])]
    return "\n".join(lines) + "\n"
