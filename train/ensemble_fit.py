"""From cross-validated members to one ensemble: labels, the common fold, calibration and threshold.

Training's steps 4-7 beyond fitting the models themselves: the labels each member learns
(:func:`member_labels`) and the labels calibration is fitted to (:func:`calibration_labels`); the fold
whose models ``final: common_fold`` ships (:func:`common_fold`); the members' out-of-fold predictions
combined, calibrated and thresholded (:func:`fit_ensemble`) -- never on images a shipped member trained
on -- optionally on the validation images re-processed as other centres might have recorded them
(:func:`reacquired_oof`); and the ``cv`` record of ``metrics.json`` (:func:`cv_metrics`).

``cv`` below is training's per-architecture record: ``cv[arch] = {"oof": out-of-fold P(AS), "folds": [one
dict per fold: fold_metrics, best_epoch, history, model, augment_from], "mean_auc", "std_auc"}``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import pandas as pd
import torch

from train.config import parse_arch
from train.data import Images, TrainSet, binary_labels
from train.loop import predict_plain
from train.metrics import fold_metrics, oof_extra
from train.views import training_view

if TYPE_CHECKING:
    from train.config import TrainConfig

Folds = Sequence[tuple[np.ndarray, np.ndarray]]   # (train indices, validation indices) per fold


# ------------------------------------------------------------------------------------------------- labels
def calibration_labels(data: Images, cfg: TrainConfig) -> tuple[np.ndarray, str]:
    """The labels calibration and threshold are fitted to (1 = AS), and the metadata column they come from."""
    column = cfg.calibration_label_column or cfg.label_column
    if column == cfg.label_column:
        return data.y, column
    if column not in data.meta.columns:
        raise SystemExit(f"calibration_label_column {column!r} is not a column of the training metadata.csv "
                         f"(columns: {list(data.meta.columns)}); set it to one that holds AS / non-AS labels, "
                         "or null to calibrate on label_column")
    return binary_labels(data.meta[column], Path(cfg.train_split) / "metadata.csv"), column


def member_labels(data: Images, cfg: TrainConfig) -> dict[str, np.ndarray]:
    """The labels each architecture entry trains on (1 = AS): its ``member_labels`` column, else label_column."""
    columns = cfg.member_labels or {}
    out = {}
    for arch in cfg.archs:
        column = columns.get(parse_arch(arch)[0], cfg.label_column)
        if column not in data.meta.columns:
            raise SystemExit(f"member_labels: {column!r} (for {parse_arch(arch)[0]}) is not a column of the training "
                             f"metadata.csv (columns: {list(data.meta.columns)})")
        out[arch] = (data.y if column == cfg.label_column
                     else binary_labels(data.meta[column], Path(cfg.train_split) / "metadata.csv"))
    return out


# ---------------------------------------------------------------------------------------------- the folds
def common_fold(fold_aucs: Sequence[Sequence[float]]) -> int:
    """The fold whose models to ship: best mean validation AUC across the kept architectures.

    ``fold_aucs[a][k]`` is architecture ``a``'s validation AUC in fold ``k``. Keeping one fold for all
    members leaves that fold's validation images unseen by every member, so the ensemble can be
    calibrated on its own predictions; a fold where one architecture failed to train is passed over.
    """
    a = np.asarray(fold_aucs, dtype=float)
    if a.ndim != 2 or a.size == 0:
        raise ValueError(f"fold_aucs must be architectures x folds, got shape {a.shape}")
    return int(np.argmax(a.mean(axis=0)))


def reacquired_oof(fold_models: dict[str, list[torch.nn.Module]], folds: Folds,
                   data: Images, cfg: TrainConfig, pp: Any, size: int) -> np.ndarray:
    """Out-of-fold P(AS) on validation images re-processed as another centre might have recorded them.

    Each fold's validation images go through the training view with the acquisition jitter at full strength
    (no phone photos), ``cfg.calibration_draws`` times, and each architecture's model of that fold reads them:
    shape (draws, architectures in ``fold_models`` order, images). Calibrating on these instead of the clean
    validation images aims the probabilities at unseen centres, whose images the model reads more softly.
    Seeded by ``cfg.seed``; the global random state is left as it was.
    """
    from train._augment import AcquisitionJitter

    view = training_view(cfg, pp, size, AcquisitionJitter(1.0, blur_p=float(cfg.jitter_blur[0]),
                                                          blur_max=float(cfg.jitter_blur[1])))
    out = np.full((cfg.calibration_draws, len(fold_models), len(data.y)), np.nan)
    with torch.random.fork_rng():
        for d in range(cfg.calibration_draws):
            for k, (_, va) in enumerate(folds):
                torch.manual_seed(cfg.seed * 1000 + 100 * d + k)
                views = TrainSet(data, va, view, 0.0)
                x = torch.stack([views[i][0] for i in range(len(va))])
                for a, models in enumerate(fold_models.values()):
                    out[d, a, va] = predict_plain(models[k], torch.utils.data.DataLoader(x, batch_size=64))
    return out


# ------------------------------------------------------------------------------------------- the ensemble
@dataclass
class EnsembleFit:
    """The kept members combined: weights, out-of-fold P(AS), calibration and threshold, and what they were
    fitted on."""

    weights: dict[str, float]           # arch entry -> weight of its P(AS) in the ensemble
    cv_aucs: dict[str, float]           # arch entry -> mean CV AUC
    oof_raw: np.ndarray                 # the ensemble's out-of-fold P(AS) before calibration
    oof: np.ndarray                     # ... and calibrated
    calibration: Any                    # as_ai.ensemble.Calibration
    threshold: float
    calibration_set: dict[str, Any]     # what calibration and threshold were fitted on, and how they read there


def fit_ensemble(cv: dict[str, dict[str, Any]], kept: Sequence[str], folds: Folds, common: int | None,
                 data: Images, cfg: TrainConfig, pp: Any, size: int) -> EnsembleFit:
    """Training's step 7: combine the kept members' OOF probabilities, fit calibration and threshold on them.

    With ``common`` (``final: common_fold``) only that fold's validation images, which no shipped member
    trained on, from the shipped members' own predictions; else every out-of-fold prediction. With
    ``calibrate_on: reacquired`` those images re-processed (:func:`reacquired_oof`) instead of as they are.
    """
    from as_ai.ensemble import Calibration, combine_weights, youden_threshold

    cv_aucs = {a: cv[a]["mean_auc"] for a in kept}
    weights = dict(zip(kept, combine_weights(cfg.combine, [cv_aucs[a] for a in kept])))
    oof_ens = np.sum([weights[a] * cv[a]["oof"] for a in kept], axis=0)
    fit_idx = folds[common][1] if common is not None else np.arange(len(data.y))  # never seen by the members
    images = "common fold validation" if common is not None else "out-of-fold, all folds"
    y_cal, cal_column = calibration_labels(data, cfg)
    if cfg.calibrate_on == "reacquired":
        fold_models = {a: [r["model"] for r in cv[a]["folds"]] for a in kept}
        re_ens = np.einsum("a,dan->dn", np.array([weights[a] for a in kept]),
                           reacquired_oof(fold_models, folds, data, cfg, pp, size))
        raw_fit, y_fit = re_ens[:, fit_idx].ravel(), np.tile(y_cal[fit_idx], cfg.calibration_draws)
        images += f", re-acquired as other centres might ({cfg.calibration_draws} draws of the acquisition jitter)"
    else:
        raw_fit, y_fit = oof_ens[fit_idx], y_cal[fit_idx]
    calibration = Calibration.fit(raw_fit, y_fit, method=cfg.calibration)
    oof_cal = calibration.apply(oof_ens)
    p_fit = calibration.apply(raw_fit)
    threshold = youden_threshold(p_fit, y_fit) if cfg.threshold == "youden" else float(cfg.threshold)
    calibration_set = {"images": images, "fold": common, "n": int(len(y_fit)), "labels": cal_column,
                       "calibrate_on": cfg.calibrate_on, **fold_metrics(y_fit, p_fit), **oof_extra(y_fit, p_fit, threshold)}
    return EnsembleFit(weights=weights, cv_aucs=cv_aucs, oof_raw=oof_ens, oof=oof_cal, calibration=calibration,
                       threshold=threshold, calibration_set=calibration_set)


def oof_table(data: Images, folds: Folds, fit: EnsembleFit, cv: dict[str, dict[str, Any]],
              kept: Sequence[str]) -> pd.DataFrame:
    """``oof.csv``: the training metadata with each image's fold and out-of-fold P(AS), ensemble and members."""
    fold_of = np.empty(len(data.y), dtype=int)
    for k, (_, va) in enumerate(folds):
        fold_of[va] = k
    return data.meta.drop(columns=["rois"], errors="ignore").assign(
        fold=fold_of, ensemble_raw=fit.oof_raw, ensemble=fit.oof,
        **{f"member_{parse_arch(a)[0]}": cv[a]["oof"] for a in kept})


def cv_metrics(cv: dict[str, dict[str, Any]], ranked: Sequence[str], kept: Sequence[str], data: Images,
               cfg: TrainConfig, common: int | None, fit: EnsembleFit) -> dict[str, Any]:
    """``metrics.json``'s ``cv``: each architecture's folds, the calibration set and the ensemble's OOF figures."""
    return {
        "n": int(len(data.y)), "folds": cfg.folds, "label": cfg.label_column, "common_fold": common,
        "calibration_set": fit.calibration_set,
        "ensemble_oof": {**fold_metrics(data.y, fit.oof), **oof_extra(data.y, fit.oof, fit.threshold)},
        "architectures": {a: {"mean_auc": cv[a]["mean_auc"], "std_auc": cv[a]["std_auc"], "kept": a in kept,
                              "folds": [{k: v for k, v in r.items() if k not in ("model", "history")}
                                        for r in cv[a]["folds"]]} for a in ranked}}
