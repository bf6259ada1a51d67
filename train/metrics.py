"""The numbers of an evaluation, in one place: what training reports of its splits and what the study reports.

Training (``train/diagnosis.py``, steps 4-8, and ``train/intensity.py``): :func:`fold_metrics` of a fold's
out-of-fold predictions, and :func:`split_metrics`, each evaluation split read as the model reads it and
scored in memory (:func:`evaluate_split`; :func:`softness_split` on ``external``) -- what ``as_ai.json``'s
``metrics`` holds. The external evaluation (``train/evaluate.py``): :func:`study_metrics` of a predictions
table, :func:`softness_metrics` of the softness test and the project's :func:`targets`. Both build on the
primitives of :mod:`as_ai.metrics` (AUC with DeLong CI, threshold report, ECE, Cohen's kappa).
"""
from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
import pandas as pd

from as_ai.metrics import auc_ci, binary_report, cohen_kappa, delong_test
from train._columns import GRADE_COLUMNS, MEMBER, READER

if TYPE_CHECKING:
    import torch

    from train.config import TrainConfig
    from train.data import Images

TRUTHS = {"true": "true_label", "reference": "label"}
SOFTNESS_SIGMAS = (0.5, 1.0)  # Gaussian blur, px at the model's reading scale (sigma 1 is a slightly soft image)
TARGETS = {"auc": 0.95, "phone_auc_drop": 0.03, "ece": 0.05}


# ------------------------------------------------------------------------------------ training's numbers
def fold_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """AUC, accuracy, precision, recall, F1 (threshold 0.5) of one fold."""
    from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, roc_auc_score

    hard = (p >= 0.5).astype(int)
    return {"auc": float(roc_auc_score(y, p)), "accuracy": float(accuracy_score(y, hard)),
            "precision": float(precision_score(y, hard, zero_division=0)),
            "recall": float(recall_score(y, hard, zero_division=0)), "f1": float(f1_score(y, hard, zero_division=0))}


def oof_extra(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, Any]:
    """ECE and the threshold metrics of P(AS) ``p`` against ``y`` (beside :func:`fold_metrics`)."""
    rep = binary_report(y, p, threshold).to_dict()
    return {"ece": rep["ece"], "at_threshold": {k: rep[k] for k in ("accuracy", "precision", "recall", "specificity", "f1")}}


def evaluate_split(diagnoser: Any, data: Images, cfg: TrainConfig) -> dict[str, Any]:
    """Ensemble and member metrics of one split (AUC with DeLong CI, report at the threshold, ECE)."""
    import torch

    from train.data import binary_labels

    with torch.inference_mode():
        xs = {s: _normalise(data.eval[s], diagnoser.preprocess) for s in diagnoser.ensemble.sizes}
        probs, members = [], []
        for i in range(0, len(data.y), 64):
            p, m = diagnoser.predict_tensor({s: x[i:i + 64] for s, x in xs.items()})
            probs.append(p.double())
            members.append(m.double())
    p, m = torch.cat(probs).numpy(), torch.cat(members).numpy()
    out: dict[str, Any] = {"n": int(len(p)), "n_as_reference": int(data.y.sum())}
    truths = {"reference": data.y}
    if cfg.true_label_column in data.meta.columns:
        truths["true"] = binary_labels(data.meta[cfg.true_label_column], Path(cfg.true_label_column))
    for tname, y in truths.items():
        if len(np.unique(y)) < 2:
            continue
        lo, auc, hi = auc_ci(y, p)
        rep = binary_report(y, p, diagnoser.threshold).to_dict()
        member_auc = {n: auc_ci(y, m[:, j])[1] for j, n in enumerate(diagnoser.ensemble.names)}
        best = max(member_auc, key=member_auc.get)
        dl = delong_test(y, p, m[:, diagnoser.ensemble.names.index(best)]).to_dict()
        out[tname] = {"auc": auc, "auc_ci": [lo, hi], **{k: rep[k] for k in rep if k != "threshold"},
                      "members_auc": member_auc, "best_member": best, "vs_best_member": dl}
    return out


def split_metrics(diagnoser: Any, data_dir: Path, cfg: TrainConfig, splits: Sequence[str], *,
                  log: Any = print) -> dict[str, Any]:
    """Training's step 8: each of ``splits`` present under ``data_dir`` read as the model reads it and scored
    (:func:`evaluate_split`; the softness test on ``external``), plus the phone photos' AUC drop."""
    from train.data import read_split

    metrics: dict[str, Any] = {}
    for split in splits:
        if (data_dir / split / "metadata.csv").is_file():
            ev = read_split(data_dir / split, cfg, diagnoser.preprocess, diagnoser.ensemble.sizes, train_size=False,
                            desc=split, view=lambda rg: diagnoser.model_views([rg])[0])
            metrics[split] = evaluate_split(diagnoser, ev, cfg)
            if split == "external" and cfg.true_label_column in ev.meta.columns:
                metrics["external_softness"] = softness_split(diagnoser, ev, cfg)
            log(f"{split}: " + json.dumps({t: {k: round(metrics[split][t][k], 4) for k in ("auc", "ece")}
                                           for t in ("reference", "true") if t in metrics[split]}))
    if "external" in metrics and "external_phone" in metrics:
        metrics["phone_auc_drop"] = {t: metrics["external"][t]["auc"] - metrics["external_phone"][t]["auc"]
                                     for t in ("reference", "true") if t in metrics["external"] and t in metrics["external_phone"]}
    return metrics


def softness_split(diagnoser: Any, data: Images, cfg: TrainConfig) -> dict[str, Any]:
    """The evaluation's softness test (:func:`softness_metrics`) on a split's cached crops, against the true
    labels: the same images blurred by 0.5 and 1 px at the reading scale."""
    import torch

    from as_ai.transforms import soften_input
    from train.data import binary_labels

    y = binary_labels(data.meta[cfg.true_label_column], Path(cfg.true_label_column))
    probs = {}
    with torch.inference_mode():
        for sigma in (0.0, *SOFTNESS_SIGMAS):
            xs = {s: _normalise(soften_input(data.eval[s].float(), sigma), diagnoser.preprocess)
                  for s in diagnoser.ensemble.sizes}
            probs[sigma] = torch.cat([diagnoser.predict_tensor({s: x[i:i + 64] for s, x in xs.items()})[0].double()
                                      for i in range(0, len(y), 64)]).numpy()
    return softness_metrics(y, probs, diagnoser.threshold)


def _normalise(x: torch.Tensor, pp: Any) -> torch.Tensor:
    import torch

    from as_ai.transforms import normalise

    return normalise(x, pp).contiguous(memory_format=torch.channels_last)


# ----------------------------------------------------------------------------------------- the study's numbers
def softness_metrics(y: np.ndarray, probs: Mapping[float, np.ndarray], threshold: float) -> dict[str, Any]:
    """Per blur sigma: AUC, ECE, sensitivity, specificity at ``threshold`` and mean P(AS) of each class.

    ``probs`` maps sigma (0 = the image as it is) to P(AS) of the same images in the same order.
    """
    y = np.asarray(y).astype(int)
    rows = []
    for sigma, p in sorted(probs.items()):
        p = np.asarray(p, dtype=float)
        rep = binary_report(y, p, threshold).to_dict()
        rows.append({"sigma": float(sigma), "auc": auc_ci(y, p)[1] if len(np.unique(y)) == 2 else None,
                     "ece": rep["ece"], "sensitivity": rep["recall"], "specificity": rep["specificity"],
                     "mean_prob_non_as": float(p[y == 0].mean()) if (y == 0).any() else None,
                     "mean_prob_as": float(p[y == 1].mean()) if (y == 1).any() else None})
    return {"unit": "Gaussian sigma, px at the model's reading scale", "threshold": float(threshold), "n": int(len(y)),
            "n_as": int(y.sum()), "rows": rows}


def _auc(y: np.ndarray, score: np.ndarray, level: float) -> dict[str, Any] | None:
    """AUC with its DeLong interval, or None when a class has fewer than two cases."""
    if min(int(y.sum()), int(len(y) - y.sum())) < 2:
        return None
    low, auc, high = auc_ci(y, score, level=level)
    return {"auc": auc, "low": low, "high": high, "level": level}


def _classify(y: np.ndarray, prob: np.ndarray, threshold: float, level: float) -> dict[str, Any]:
    """AUC (DeLong CI) + threshold metrics of P(AS) against labels ``y``."""
    rep = binary_report(y, prob, threshold).to_dict()
    rep["auc"] = _auc(y, prob, level)
    rep["n_as"] = int(y.sum())
    return rep


def _calls(y: np.ndarray, calls: np.ndarray) -> dict[str, Any]:
    """Sensitivity, specificity, accuracy (and PPV, F1) of yes/no calls against ``y``."""
    rep = binary_report(y, calls.astype(float), 0.5).to_dict()
    for k in ("ece", "auc", "threshold"):
        rep.pop(k, None)
    return rep


def _kappa(a: np.ndarray, b: np.ndarray, *, weights: str | None = None) -> dict[str, Any] | None:
    try:
        return cohen_kappa(a, b, weights=weights).to_dict()
    except ValueError:  # both raters constant: kappa undefined
        return None


def study_metrics(pred: pd.DataFrame, *, threshold: float, truth: str = "true", level: float = 0.95,
                  members: Sequence[str] | None = None) -> dict[str, Any]:
    """Every number of the study's external evaluation, from a predictions table (``predictions.csv``).

    ``pred`` has one row per image with ``set`` ("clean" / "phone"), ``key`` (pairs a photo with its clean
    image), ``center``, ``y_true`` / ``y_reference`` (1 = AS), ``prob`` (calibrated ensemble P(AS)),
    ``member:<name>`` (each member's P(AS)), ``reader:<name>`` (simulated experts' calls) and ``label``.

    Raises:
        ValueError: ``truth`` unknown or its column missing, or a clean set without both classes.

    Example:
        >>> import pandas as pd
        >>> p = pd.DataFrame({"set": "clean", "key": list("abcdef"), "center": "B", "y_true": [0, 0, 0, 1, 1, 1],
        ...                   "prob": [.1, .2, .6, .4, .8, .9], "label": "non-AS"})
        >>> round(study_metrics(p, threshold=0.5)["overall"]["auc"]["auc"], 3)
        0.889
    """
    if truth not in TRUTHS:
        raise ValueError(f"truth must be one of {sorted(TRUTHS)}, got {truth!r}.")
    ycol = f"y_{truth}"
    if ycol not in pred.columns:
        raise ValueError(f"truth={truth!r} needs the {TRUTHS[truth]!r} column in the metadata, which this data "
                         f"lacks; use truth='reference' (the reference reader's label) instead.")
    clean = pred[pred["set"] == "clean"].reset_index(drop=True)
    y = clean[ycol].to_numpy(dtype=np.int64)
    if min(int(y.sum()), int(len(y) - y.sum())) < 2:
        raise ValueError(f"the external set needs at least 2 AS and 2 non-AS images by {TRUTHS[truth]!r}; got "
                         f"{int(y.sum())} AS of {len(y)}. Use a larger external split.")
    prob = clean["prob"].to_numpy(dtype=float)
    names = list(members) if members is not None else [c[len(MEMBER):] for c in clean.columns
                                                       if c.startswith(MEMBER)]
    other = "reference" if truth == "true" else "true"
    m: dict[str, Any] = {
        "truth": truth, "truth_column": TRUTHS[truth], "threshold": float(threshold), "level": level,
        "n": int(len(y)), "n_as": int(y.sum()), "abstained": int((clean["label"] == "indeterminate").sum()),
        "centres_list": sorted(clean["center"].astype(str).unique()),
        "overall": _classify(y, prob, threshold, level),
    }
    if f"y_{other}" in clean.columns:
        m[f"overall_vs_{other}"] = _classify(clean[f"y_{other}"].to_numpy(dtype=np.int64), prob, threshold, level)
        m["label_agreement"] = _kappa(y, clean[f"y_{other}"].to_numpy())
    accepted = (clean["label"] != "indeterminate").to_numpy()
    if m["abstained"] and min(int(y[accepted].sum()), int((1 - y[accepted]).sum())) >= 2:
        m["accepted_only"] = _classify(y[accepted], prob[accepted], threshold, level)
    m["centres"] = {
        str(c): _classify(g[ycol].to_numpy(dtype=np.int64), g["prob"].to_numpy(dtype=float), threshold, level)
        for c, g in clean.groupby("center", sort=True)}
    m["members"], best = {}, None
    for n in names:
        s = clean[MEMBER + n].to_numpy(dtype=float)
        entry = {"auc": _auc(y, s, level), "vs_ensemble": delong_test(y, prob, s, level=level).to_dict()}
        m["members"][n] = entry
        if best is None or entry["auc"]["auc"] > m["members"][best]["auc"]["auc"]:
            best = n
    m["best_member"] = best
    m["ensemble_vs_best"] = m["members"][best]["vs_ensemble"] if best is not None else None
    m["phone"] = _phone_metrics(pred, ycol, threshold, level)
    m["readers"] = _reader_metrics(clean, ycol, prob >= threshold, level)
    return m


def _phone_metrics(pred: pd.DataFrame, ycol: str, threshold: float, level: float) -> dict[str, Any] | None:
    phone = pred[pred["set"] == "phone"]
    if phone.empty:
        return None
    clean = pred[pred["set"] == "clean"][["key", "prob", ycol]]
    pair = phone.merge(clean, on="key", suffixes=("", "_clean"))
    y = pair[ycol].to_numpy(dtype=np.int64)
    p_phone, p_clean = pair["prob"].to_numpy(dtype=float), pair["prob_clean"].to_numpy(dtype=float)
    out: dict[str, Any] = {"n": int(len(pair)), "n_unmatched": int(len(phone) - len(pair)), "n_as": int(y.sum()),
                           "abstained": int((pair["label"] == "indeterminate").sum())}
    if min(int(y.sum()), int(len(y) - y.sum())) < 2:
        out["note"] = "fewer than 2 matched photos of a class: no AUC"
        return out
    out["phone"] = _classify(y, p_phone, threshold, level)
    accepted = (pair["label"] != "indeterminate").to_numpy()
    if out["abstained"] and min(int(y[accepted].sum()), int((1 - y[accepted]).sum())) >= 2:
        out["phone_accepted_only"] = _classify(y[accepted], p_phone[accepted], threshold, level)
    out["clean"] = _classify(y, p_clean, threshold, level)
    test = delong_test(y, p_clean, p_phone, level=level)
    out["auc_drop"] = test.difference
    out["delong_clean_vs_phone"] = test.to_dict()
    out["label_flips"] = int(np.sum((p_phone >= threshold) != (p_clean >= threshold)))
    out["mean_abs_prob_change"] = float(np.mean(np.abs(p_phone - p_clean)))
    if "phone_level" in pair.columns and pair["phone_level"].notna().any():
        out["levels"] = {}
        for lvl, g in pair.groupby("phone_level"):
            yl = g[ycol].to_numpy(dtype=np.int64)
            auc_p = _auc(yl, g["prob"].to_numpy(dtype=float), level)
            auc_c = _auc(yl, g["prob_clean"].to_numpy(dtype=float), level)
            out["levels"][str(int(lvl))] = {"n": int(len(g)), "n_as": int(yl.sum()), "phone_auc": auc_p,
                                            "clean_auc": auc_c}
    return out


def _reader_metrics(clean: pd.DataFrame, ycol: str, model_calls: np.ndarray, level: float) -> dict[str, Any] | None:
    readers = [c[len(READER):] for c in clean.columns if c.startswith(READER)]
    if not readers:
        return None
    y = clean[ycol].to_numpy(dtype=np.int64)
    calls = {r: clean[READER + r].to_numpy(dtype=np.int64) for r in readers}
    out: dict[str, Any] = {"model": _calls(y, model_calls), "readers": {}, "kappa": {}}
    for r, c in calls.items():
        out["readers"][r] = {"alone": _calls(y, c), "with_model": _calls(y, c | model_calls.astype(np.int64))}
    raters = dict(calls)
    raters["model"] = model_calls.astype(np.int64)
    if "y_reference" in clean.columns and ycol != "y_reference":
        raters["reference"] = clean["y_reference"].to_numpy(dtype=np.int64)
    for a, b in itertools.combinations(raters, 2):
        out["kappa"][f"{a} vs {b}"] = _kappa(raters[a], raters[b])
    for a in raters:
        out["kappa"][f"{a} vs truth"] = _kappa(raters[a], y)
    if all(c in clean.columns for c in GRADE_COLUMNS):
        true = np.r_[clean["grade_left"].to_numpy(), clean["grade_right"].to_numpy()]
        read = np.r_[clean["reader_grade_left"].to_numpy(), clean["reader_grade_right"].to_numpy()]
        ok = np.isfinite(true) & np.isfinite(read)
        out["grades"] = {"reference vs true grade (per joint, quadratic)":
                         _kappa(read[ok].astype(int), true[ok].astype(int), weights="quadratic"),
                         "reference vs true grade (per joint, unweighted)":
                         _kappa(read[ok].astype(int), true[ok].astype(int))}
    return out


def targets(m: Mapping[str, Any]) -> dict[str, Any]:
    """The project's goals for the demo ensemble (issue 5), each with its value and whether it is met.

    External AUC >= 0.95, phone-photo AUC drop <= 0.03, ECE <= 0.05, ensemble AUC >= best member's AUC.
    """
    o, ph, vs = m["overall"], m.get("phone") or {}, m.get("ensemble_vs_best")
    out: dict[str, Any] = {
        "auc": {"goal": f">= {TARGETS['auc']}", "value": o["auc"]["auc"], "met": o["auc"]["auc"] >= TARGETS["auc"]},
        "ece": {"goal": f"<= {TARGETS['ece']}", "value": o["ece"], "met": o["ece"] <= TARGETS["ece"]},
    }
    if "auc_drop" in ph:
        out["phone_auc_drop"] = {"goal": f"<= {TARGETS['phone_auc_drop']}", "value": ph["auc_drop"],
                                 "met": ph["auc_drop"] <= TARGETS["phone_auc_drop"]}
    if vs:
        out["ensemble_vs_best_member"] = {"goal": ">= 0 (AUC difference)", "value": vs["difference"],
                                          "met": vs["difference"] >= 0}
    return out

