"""Measuring the joint reader: localisation, per-side grading and the derived criterion (the one place for it).

``train/joints.py`` measures :class:`as_ai.joints.JointReader` s end to end on the image files (decoding
included); ``train.evaluate`` measures the reader attached to a diagnosis model from its predictions table
(``train/_joints_sides.py``). Both go through :func:`localisation_of` and :func:`grading_of` (arrays: n images x
2 sides), against the phantoms' true boxes and true grades; the simulated readers' grades
(:func:`reader_grades`) give the ceiling a human reaches on the same images.
"""
from __future__ import annotations

import time
from typing import Any, Sequence

import numpy as np

from as_ai.joints._view import box_iou
from as_ai.metrics import auc_ci, cohen_kappa, expected_calibration_error

SIDES = ("left", "right")


def read_rows(reader: Any, rows: Sequence[dict], *, log=print) -> list[Any]:
    """The reader's :class:`JointReading` of every row's image file."""
    out, t0 = [], time.time()
    for i, r in enumerate(rows):
        out.append(reader(r["path"]))
        if (i + 1) % 200 == 0:
            log(f"    read {i + 1}/{len(rows)} ({time.time() - t0:.0f} s)")
    return out


def _qwk(a: np.ndarray, b: np.ndarray) -> float | None:
    """Quadratic-weighted kappa to 4 decimals; None where it is undefined (one grade given to every joint)."""
    try:
        return round(float(cohen_kappa(a, b, weights="quadratic").kappa), 4)
    except ValueError:
        return None


def _rate(x: np.ndarray) -> float | None:
    return round(float(np.mean(x)), 4) if len(x) else None


def _auc(y: np.ndarray, score: np.ndarray) -> list[float] | None:
    """[low, AUC, high] (DeLong 95 % CI), None with fewer than two cases of a class."""
    try:
        return [round(v, 4) for v in auc_ci(y, score)]
    except ValueError:
        return None


def confusion(true: np.ndarray, pred: np.ndarray) -> list[list[int]]:
    """5 x 5 counts, rows true grade 0-4, columns predicted grade 0-4."""
    m = np.zeros((5, 5), int)
    np.add.at(m, (np.asarray(true).astype(int), np.asarray(pred).astype(int)), 1)
    return m.tolist()


def _flat(a: np.ndarray) -> np.ndarray:
    """n x 2 (x k) per-image, per-side values -> 2n (x k): every left joint, then every right joint."""
    a = np.asarray(a)
    return np.swapaxes(a, 0, 1).reshape(-1, *a.shape[2:])


def centre_errors(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Distance between the predicted and the true box centres, n x 2 (px), from n x 2 x 4 boxes."""
    p, t = np.asarray(pred, float), np.asarray(true, float)
    return np.hypot((p[..., 0] + p[..., 2] - t[..., 0] - t[..., 2]) / 2, (p[..., 1] + p[..., 3] - t[..., 1] - t[..., 3]) / 2)


def localisation_of(pred: np.ndarray, true: np.ndarray, found: np.ndarray, *, spacing: np.ndarray | None = None,
                    short_edge: np.ndarray | None = None) -> dict[str, Any]:
    """IoU >= 0.5 rate (all joints, and per side), mean IoU, centre error (px; mm when ``spacing``, mm per px of
    each image; % of the image's short edge when ``short_edge``) and the share found, from n x 2 x 4 boxes
    (predicted, true) and n x 2 found flags."""
    pred, true = np.asarray(pred, float), np.asarray(true, float)
    ious = np.array([[box_iou(p, t) for p, t in zip(pi, ti)] for pi, ti in zip(pred, true)]).reshape(-1, 2)
    errs = centre_errors(pred, true)
    out: dict[str, Any] = {
        "n_joints": int(ious.size), "iou50_rate": _rate(ious >= 0.5),
        "mean_iou": round(float(ious.mean()), 4) if ious.size else None,
        "iou50_rate_by_side": {s: _rate(ious[:, k] >= 0.5) for k, s in enumerate(SIDES)},
        "centre_error_px_median": round(float(np.median(errs)), 2) if errs.size else None,
        "centre_error_px_p95": round(float(np.percentile(errs, 95)), 2) if errs.size else None,
        "found_rate": _rate(np.asarray(found, bool))}
    if errs.size and spacing is not None:
        mm = errs * np.asarray(spacing, float)[:, None]
        out["centre_error_mm_median"] = round(float(np.median(mm)), 2)
        out["centre_error_mm_p95"] = round(float(np.percentile(mm, 95)), 2)
    if errs.size and short_edge is not None:
        pct = 100 * errs / np.asarray(short_edge, float)[:, None]
        out["centre_error_pct_median"] = round(float(np.median(pct)), 2)
        out["centre_error_pct_p95"] = round(float(np.percentile(pct, 95)), 2)
    return out


def _boxes(readings: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    return (np.array([[s.box for s in r.sides] for r in readings], float).reshape(-1, 2, 4),
            np.array([[s.found for s in r.sides] for r in readings], bool).reshape(-1, 2))


def localisation(readings: Sequence[Any], true_boxes: Sequence[Sequence], spacing: Sequence[float] | None = None
                 ) -> dict[str, Any]:
    """:func:`localisation_of` the readers' :class:`JointReading` s against ``true_boxes`` (left, right per image)."""
    pred, found = _boxes(readings)
    return localisation_of(pred, np.asarray(true_boxes, float).reshape(-1, 2, 4), found,
                           spacing=None if spacing is None else np.asarray(spacing, float))


def reader_grades(rows: Sequence[dict]) -> dict[str, np.ndarray]:
    """Every simulated reader's grades (n x 2, left and right) of the phantoms in ``rows``: the reference
    reader's as stored (``reader_grade_left/right``), the two experts' recomputed from the true grades and the
    phantom seed (:mod:`as_ai.synthetic.readers` is deterministic) when that gives their stored labels on every
    row. Readers whose grades cannot be had are left out."""
    from as_ai.synthetic.readers import READERS, new_york

    out: dict[str, np.ndarray] = {}
    if rows and all(f"reader_grade_{s}" in r for r in rows for s in SIDES):
        out["reference"] = np.array([[int(r[f"reader_grade_{s}"]) for s in SIDES] for r in rows])
    if not rows or not all({"seed", "grade_left", "grade_right"} <= set(r) for r in rows):
        return out
    for name, reader in READERS.items():
        if name == "reference" or not all(f"{name}_label" in r for r in rows):
            continue
        g = np.array([reader.read((int(r["grade_left"]), int(r["grade_right"])), seed=int(r["seed"])) for r in rows])
        if all(new_york(*gi) == str(r[f"{name}_label"]) for gi, r in zip(g, rows)):
            out[name] = g
    return out


def grading_of(true: np.ndarray, pred: np.ndarray, probs: np.ndarray, readers: dict[str, np.ndarray], *,
               p_mny: np.ndarray | None = None, y_true: np.ndarray | None = None,
               y_reference: np.ndarray | None = None) -> dict[str, Any]:
    """Per-side QWK and exact accuracy vs the true grades, the confusion matrices vs the truth and vs each
    simulated reader, each reader vs the truth and the readers vs each other (the human ceiling), and, with
    ``p_mny``, P(mNY) vs the true label (AUC with DeLong CI, ECE) and vs the reference reader's label.

    ``true``, ``pred`` and each of ``readers`` are n x 2 grades (left, right), ``probs`` n x 2 x 5."""
    true, pred = np.asarray(true, int).reshape(-1, 2), np.asarray(pred, int).reshape(-1, 2)
    probs = np.asarray(probs, float).reshape(-1, 2, 5)
    if not len(true):
        return {"n_images": 0}
    t_all, p_all, pr = _flat(true), _flat(pred), _flat(probs)
    expected = pr @ np.arange(5)
    out: dict[str, Any] = {
        "n_images": int(len(true)),
        "qwk": {**{s: _qwk(true[:, k], pred[:, k]) for k, s in enumerate(SIDES)}, "both": _qwk(t_all, p_all)},
        "exact_accuracy": {**{s: _rate(true[:, k] == pred[:, k]) for k, s in enumerate(SIDES)},
                           "both": _rate(t_all == p_all)},
        "within_one": _rate(np.abs(t_all - p_all) <= 1),
        "qwk_expected_grade_rounded": _qwk(t_all, np.clip(np.rint(expected), 0, 4).astype(int)),
        "grade_nll": round(float(-np.log(np.clip(pr[np.arange(len(t_all)), t_all], 1e-9, 1)).mean()), 4),
        # calibration of the grade probabilities: top-label ECE (P(most probable grade) vs it being right), and
        # per grade the mean predicted probability next to the observed share
        "grade_top_label_ece": round(float(expected_calibration_error((p_all == t_all).astype(int),
                                                                      pr.max(1))), 4),
        "grade_mean_probability_vs_share": [[round(float(pr[:, g].mean()), 4), round(float((t_all == g).mean()), 4)]
                                            for g in range(5)],
        "confusion_vs_true": confusion(t_all, p_all),
        "readers": {}, "reader_agreement": {},
    }
    flat = {name: _flat(g) for name, g in readers.items()}
    for name, g in readers.items():
        out["readers"][name] = {
            "qwk_vs_true": {**{s: _qwk(true[:, k], g[:, k]) for k, s in enumerate(SIDES)}, "both": _qwk(t_all, flat[name])},
            "exact_accuracy_vs_true": _rate(t_all == flat[name]), "confusion_vs_true": confusion(t_all, flat[name]),
            "model_qwk": _qwk(flat[name], p_all), "model_exact_accuracy": _rate(flat[name] == p_all),
            "confusion_vs_model": confusion(flat[name], p_all)}   # rows: the reader's grade, columns the model's
    names = list(readers)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            out["reader_agreement"][f"{a}~{b}"] = {"qwk": _qwk(flat[a], flat[b]), "exact": _rate(flat[a] == flat[b]),
                                                   "confusion": confusion(flat[a], flat[b])}
    if "reference" in readers:   # the names train/joints.py's table and card read
        ref = out["readers"]["reference"]
        out["reader"] = {k: ref[k] for k in ("qwk_vs_true", "exact_accuracy_vs_true", "confusion_vs_true")}
        out["model_vs_reader"] = {"qwk": ref["model_qwk"], "confusion": ref["confusion_vs_model"]}
    if p_mny is None or y_true is None:
        return out
    p_mny, y_true = np.asarray(p_mny, float), np.asarray(y_true, int)
    out["mny"] = {"auc_vs_true": _auc(y_true, p_mny),
                  "ece_vs_true": round(float(expected_calibration_error(y_true, p_mny)), 4),
                  "accuracy_at_0.5_vs_true": _rate((p_mny >= 0.5) == y_true)}
    if y_reference is not None:
        y_reference = np.asarray(y_reference, int)
        out["mny"]["auc_vs_reader_label"] = _auc(y_reference, p_mny)
        out["mny"]["reader_label_accuracy_vs_true"] = _rate(y_reference == y_true)
    return out


def grading(readings: Sequence[Any], rows: Sequence[dict], *, with_auc: bool = True) -> dict[str, Any]:
    """:func:`grading_of` the reader's :class:`JointReading` s of ``rows`` (``read_split`` records)."""
    true = np.array([[int(r[f"grade_{s}"]) for s in SIDES] for r in rows])
    pred = np.array([[x.side(s).grade for s in SIDES] for x in readings])
    probs = np.array([[x.side(s).probabilities for s in SIDES] for x in readings])
    kw: dict[str, Any] = {}
    if with_auc:
        kw = {"p_mny": np.array([x.mny_probability for x in readings]),
              "y_true": np.array([r["true_label"] == "AS" for r in rows], int),
              "y_reference": np.array([r["label"] == "AS" for r in rows], int)}
    return grading_of(true, pred, probs, reader_grades(rows), **kw)


def table(metrics: dict[str, Any]) -> str:
    """The figures of issue 20's goals table, one line each."""
    ext, ph = metrics["external"], metrics["external_phone"]
    g = ext["grading"]
    lines = [
        f"{'figure':<52} {'measured':>10}  goal",
        f"{'joint boxes IoU>=0.5 vs stored ROI, external clean':<52} {ext['localisation']['iou50_rate']:>10.4f}  >= 0.99",
        f"{'  vs anatomical box, external clean':<52} {ext['localisation']['vs_anatomical_box']['iou50_rate']:>10.4f}"
        "  >= 0.99",
        f"{'joint boxes IoU>=0.5 vs stored ROI, phone levels 1-3':<52} "
        f"{ph['levels_1_3']['localisation']['iou50_rate']:>10.4f}  >= 0.95",
        f"{'  vs anatomical box, phone levels 1-3':<52} "
        f"{ph['levels_1_3']['localisation']['vs_anatomical_box']['iou50_rate']:>10.4f}  >= 0.95",
        f"{'joint boxes IoU>=0.5 vs stored ROI, phone level 4':<52} {ph['level_4']['localisation']['iou50_rate']:>10.4f}  -",
        f"{'  vs anatomical box, phone level 4':<52} "
        f"{ph['level_4']['localisation']['vs_anatomical_box']['iou50_rate']:>10.4f}  -",
        f"{'joint centre error, clean, median / p95 (mm)':<52} "
        f"{ext['localisation']['centre_error_mm_median']:>5.2f}/{ext['localisation']['centre_error_mm_p95']:<5.2f} -",
        f"{'per-side QWK vs true grade (predicted boxes)':<52} {g['qwk']['both']:>10.4f}  >= 0.85",
        f"{'per-side exact accuracy':<52} {g['exact_accuracy']['both']:>10.4f}  >= 0.75",
        f"{'reference reader QWK vs true (ceiling)':<52} {g['reader']['qwk_vs_true']['both']:>10.4f}  -",
        f"{'reference reader exact accuracy vs true':<52} {g['reader']['exact_accuracy_vs_true']:>10.4f}  -",
        f"{'P(mNY) AUC vs true label (clean)':<52} {g['mny']['auc_vs_true'][1]:>10.4f}  -",
        f"{'P(mNY) AUC vs true label (phone levels 1-3)':<52} "
        f"{ph['levels_1_3']['grading']['mny']['auc_vs_true'][1]:>10.4f}  -",
        f"{'per-side QWK, phone photos levels 1-3':<52} {ph['levels_1_3']['grading']['qwk']['both']:>10.4f}  -",
    ]
    return "\n".join(lines)


def evaluate_external(reader: Any, ext: Sequence[dict], ext_phone: Sequence[dict], *, log=print) -> dict[str, Any]:
    """Every figure on the external splits: localisation (vs the stored ROI and vs the anatomical box, see
    :func:`train._joints_data.anatomical_box`), per centre, grading, the criterion; phone photos by level."""
    from train._joints_data import anatomical_box, phone_box

    keys = ("sij_left", "sij_right")
    log(f"external evaluation ({len(ext)} clean + {len(ext_phone)} phone photos)")
    r_ext, r_ph = read_rows(reader, ext, log=log), read_rows(reader, ext_phone, log=log)
    roi = [[tuple(r["rois"][k]) for k in keys] for r in ext]
    anat = [[anatomical_box(r["rois"][k], r["center"], int(r["size"])) for k in keys] for r in ext]

    def on_photo(r: dict, box: Sequence[float]) -> tuple[float, ...]:
        return phone_box(box, (int(r["size"]), int(r["size"])), level=int(r["phone_level"]), seed=int(r["seed"]))

    roi_ph = [[on_photo(r, r["rois"][k]) for k in keys] for r in ext_phone]
    anat_ph = [[on_photo(r, anatomical_box(r["rois"][k], r["center"], int(r["size"]))) for k in keys] for r in ext_phone]

    def loc(readings, rows, idx, stored, anatomical, spacing=False):
        pick = lambda seq: [seq[i] for i in idx]  # noqa: E731
        sp = [rows[i]["pixel_spacing_mm"] for i in idx] if spacing else None
        out = localisation(pick(readings), pick(stored), sp)
        out["vs_anatomical_box"] = localisation(pick(readings), pick(anatomical), sp)
        return out

    every = list(range(len(ext)))
    m: dict[str, Any] = {"external": {"localisation": loc(r_ext, ext, every, roi, anat, spacing=True),
                                      "grading": grading(r_ext, ext)},
                         "external_by_centre": {}, "external_phone": {}}
    for c in sorted({r["center"] for r in ext}):
        idx = [i for i, r in enumerate(ext) if r["center"] == c]
        m["external_by_centre"][c] = {"localisation": loc(r_ext, ext, idx, roi, anat, spacing=True),
                                      "qwk": grading([r_ext[i] for i in idx], [ext[i] for i in idx], with_auc=False)["qwk"]}
    for name, keep in (("levels_1_3", lambda lv: lv <= 3), ("level_4", lambda lv: lv == 4)):
        idx = [i for i, r in enumerate(ext_phone) if keep(int(r["phone_level"]))]
        m["external_phone"][name] = {"n_images": len(idx), "localisation": loc(r_ph, ext_phone, idx, roi_ph, anat_ph),
                                     "grading": grading([r_ph[i] for i in idx], [ext_phone[i] for i in idx])}
    return m
