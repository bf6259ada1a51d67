"""Measuring the joint reader (``train/joints.py``): localisation, per-side grading and the derived criterion.

Every figure is measured end to end through the public :class:`as_ai.joints.JointReader` on the image files
(decoding included), against the phantoms' true boxes and true grades; the simulated reference reader's grades
give the ceiling a human reaches on the same images.
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


def _qwk(a: np.ndarray, b: np.ndarray) -> float:
    return round(float(cohen_kappa(a, b, weights="quadratic").kappa), 4)


def confusion(true: np.ndarray, pred: np.ndarray) -> list[list[int]]:
    """5 x 5 counts, rows true grade 0-4, columns predicted grade 0-4."""
    m = np.zeros((5, 5), int)
    np.add.at(m, (true.astype(int), pred.astype(int)), 1)
    return m.tolist()


def localisation(readings: Sequence[Any], true_boxes: Sequence[Sequence], spacing: Sequence[float] | None = None
                 ) -> dict[str, Any]:
    """IoU >= 0.5 rate (all joints, and per side), mean IoU, centre error (px, and mm when ``spacing``)."""
    ious, errs, mm, per_side = [], [], [], {s: [] for s in SIDES}
    for k, (r, tb) in enumerate(zip(readings, true_boxes)):
        for s, side in enumerate(SIDES):
            pb, t = r.sides[s].box, tb[s]
            iou = box_iou(pb, t)
            ious.append(iou)
            per_side[side].append(iou)
            e = float(np.hypot((pb[0] + pb[2] - t[0] - t[2]) / 2, (pb[1] + pb[3] - t[1] - t[3]) / 2))
            errs.append(e)
            if spacing is not None:
                mm.append(e * float(spacing[k]))
    ious_a = np.asarray(ious)
    out = {"n_joints": len(ious), "iou50_rate": round(float((ious_a >= 0.5).mean()), 4),
           "mean_iou": round(float(ious_a.mean()), 4),
           "iou50_rate_by_side": {s: round(float((np.asarray(v) >= 0.5).mean()), 4) for s, v in per_side.items()},
           "centre_error_px_median": round(float(np.median(errs)), 2),
           "centre_error_px_p95": round(float(np.percentile(errs, 95)), 2),
           "found_rate": round(float(np.mean([s.found for r in readings for s in r.sides])), 4)}
    if mm:
        out["centre_error_mm_median"] = round(float(np.median(mm)), 2)
        out["centre_error_mm_p95"] = round(float(np.percentile(mm, 95)), 2)
    return out


def grading(readings: Sequence[Any], rows: Sequence[dict], *, with_auc: bool = True) -> dict[str, Any]:
    """Per-side QWK and exact accuracy vs the true grades (model, and the reference reader for the ceiling),
    the confusion matrices, and P(mNY) vs the true label (AUC with DeLong CI, ECE) and vs the reader's label."""
    true = {s: np.array([r[f"grade_{s}"] for r in rows]) for s in SIDES}
    read = {s: np.array([r[f"reader_grade_{s}"] for r in rows]) for s in SIDES}
    pred = {s: np.array([x.side(s).grade for x in readings]) for s in SIDES}
    t_all, p_all, r_all = (np.concatenate([d[s] for s in SIDES]) for d in (true, pred, read))
    probs = np.concatenate([[x.side(s).probabilities for x in readings] for s in SIDES])
    expected = probs @ np.arange(5)
    out: dict[str, Any] = {
        "n_images": len(rows),
        "qwk": {**{s: _qwk(true[s], pred[s]) for s in SIDES}, "both": _qwk(t_all, p_all)},
        "exact_accuracy": {**{s: round(float((true[s] == pred[s]).mean()), 4) for s in SIDES},
                           "both": round(float((t_all == p_all).mean()), 4)},
        "within_one": round(float((np.abs(t_all - p_all) <= 1).mean()), 4),
        "qwk_expected_grade_rounded": _qwk(t_all, np.clip(np.rint(expected), 0, 4).astype(int)),
        "grade_nll": round(float(-np.log(np.clip(probs[np.arange(len(t_all)), t_all], 1e-9, 1)).mean()), 4),
        # calibration of the grade probabilities: top-label ECE (P(most probable grade) vs it being right), and
        # per grade the mean predicted probability next to the observed share
        "grade_top_label_ece": round(float(expected_calibration_error((p_all == t_all).astype(int),
                                                                      probs.max(1))), 4),
        "grade_mean_probability_vs_share": [[round(float(probs[:, g].mean()), 4), round(float((t_all == g).mean()), 4)]
                                            for g in range(5)],
        "confusion_vs_true": confusion(t_all, p_all),
        "reader": {"qwk_vs_true": {**{s: _qwk(true[s], read[s]) for s in SIDES}, "both": _qwk(t_all, r_all)},
                   "exact_accuracy_vs_true": round(float((t_all == r_all).mean()), 4),
                   "confusion_vs_true": confusion(t_all, r_all)},
        "model_vs_reader": {"qwk": _qwk(r_all, p_all), "confusion": confusion(r_all, p_all)},
    }
    if not with_auc:
        return out
    p_mny = np.array([x.mny_probability for x in readings])
    y_true = np.array([r["true_label"] == "AS" for r in rows], int)
    y_read = np.array([r["label"] == "AS" for r in rows], int)
    lo, auc, hi = auc_ci(y_true, p_mny)
    lo_r, auc_r, hi_r = auc_ci(y_read, p_mny)
    out["mny"] = {"auc_vs_true": [round(lo, 4), round(auc, 4), round(hi, 4)],
                  "ece_vs_true": round(float(expected_calibration_error(y_true, p_mny)), 4),
                  "auc_vs_reader_label": [round(lo_r, 4), round(auc_r, 4), round(hi_r, 4)],
                  "accuracy_at_0.5_vs_true": round(float(((p_mny >= 0.5) == y_true).mean()), 4),
                  "reader_label_accuracy_vs_true": round(float((y_read == y_true).mean()), 4)}
    return out


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
