"""PNG figures of the external evaluation (matplotlib, Agg canvas, no pyplot state).

ROC curves carry the DeLong AUC interval in the legend and a bootstrap band (pointwise 95 % of the
true-positive rate at each false-positive rate, stratified resampling, seeded) around the curve.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.metrics import roc_curve

from train._columns import MEMBER

_GRID = np.linspace(0.0, 1.0, 101)
_DPI = 120


def _new(w: float = 5.2, h: float = 5.0, **kw: Any) -> tuple[Figure, Any]:
    fig = Figure(figsize=(w, h), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(**kw)


def _auc_text(a: Mapping[str, Any] | None) -> str:
    return "AUC n/a" if not a else f"AUC {a['auc']:.3f} ({a['low']:.3f}–{a['high']:.3f})"


def roc_band(y: np.ndarray, score: np.ndarray, *, n_boot: int = 200, level: float = 0.95,
             seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Pointwise bootstrap interval of the ROC curve's TPR on a 0..1 FPR grid (stratified resampling)."""
    rng = np.random.default_rng(seed)
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    tprs = np.empty((n_boot, len(_GRID)))
    for b in range(n_boot):
        idx = np.r_[rng.choice(pos, len(pos)), rng.choice(neg, len(neg))]
        fpr, tpr, _ = roc_curve(y[idx], score[idx])
        tprs[b] = np.interp(_GRID, fpr, tpr)
    q = (1 - level) / 2
    return np.quantile(tprs, q, axis=0), np.quantile(tprs, 1 - q, axis=0)


def _roc_axes(ax: Any, title: str) -> None:
    ax.plot([0, 1], [0, 1], color="0.7", lw=0.8, ls=":")
    ax.set(xlim=(-0.01, 1.01), ylim=(-0.01, 1.01), xlabel="1 − specificity (false-positive rate)",
           ylabel="Sensitivity (true-positive rate)", title=title, aspect="equal")
    ax.legend(loc="lower right", fontsize=7.5)


def _operating_point(ax: Any, y: np.ndarray, p: np.ndarray, threshold: float, color: str) -> None:
    pred = p >= threshold
    tpr, fpr = pred[y == 1].mean(), pred[y == 0].mean()
    ax.plot([fpr], [tpr], "o", color=color, ms=6, mfc="white", mew=1.5, label=f"threshold {threshold:.2f}")


def draw_roc(y: np.ndarray, prob: np.ndarray, members: Mapping[str, np.ndarray], m: Mapping[str, Any],
             path: Path) -> Path:
    """Ensemble ROC with its bootstrap band, the members' ROC curves and the operating point."""
    fig, ax = _new()
    for name, s in members.items():
        fpr, tpr, _ = roc_curve(y, s)
        ax.plot(fpr, tpr, lw=0.9, alpha=0.7, label=f"{name}: {_auc_text(m['members'][name]['auc'])}")
    lo, hi = roc_band(y, prob)
    ax.fill_between(_GRID, lo, hi, color="C3", alpha=0.18, lw=0, label="ensemble 95 % bootstrap band")
    fpr, tpr, _ = roc_curve(y, prob)
    ax.plot(fpr, tpr, color="C3", lw=2.2, label=f"ensemble: {_auc_text(m['overall']['auc'])}")
    _operating_point(ax, y, prob, m["threshold"], "C3")
    _roc_axes(ax, f"External test set (n = {len(y)}, truth: {m['truth']})")
    fig.savefig(path)
    return path


def draw_phone_roc(y: np.ndarray, clean: np.ndarray, phone: np.ndarray, m: Mapping[str, Any], path: Path) -> Path:
    """ROC of the clean images and of their phone photos (the same cases)."""
    ph = m["phone"]
    fig, ax = _new()
    for s, name, color, a in ((clean, "clean", "C0", ph["clean"]["auc"]), (phone, "phone photo", "C1", ph["phone"]["auc"])):
        lo, hi = roc_band(y, s)
        ax.fill_between(_GRID, lo, hi, color=color, alpha=0.15, lw=0)
        fpr, tpr, _ = roc_curve(y, s)
        ax.plot(fpr, tpr, color=color, lw=2, label=f"{name}: {_auc_text(a)}")
    ax.plot([], [], " ", label=f"drop {ph['auc_drop']:+.3f}, DeLong p {ph['delong_clean_vs_phone']['p']:.3g}")
    _roc_axes(ax, f"Smartphone photos vs clean images (n = {len(y)})")
    fig.savefig(path)
    return path


def draw_centre_roc(clean: pd.DataFrame, ycol: str, m: Mapping[str, Any], path: Path) -> Path:
    """One ROC curve per centre."""
    fig, ax = _new()
    for i, (c, g) in enumerate(clean.groupby("center", sort=True)):
        y = g[ycol].to_numpy(dtype=np.int64)
        if 0 < y.sum() < len(y):
            fpr, tpr, _ = roc_curve(y, g["prob"].to_numpy(dtype=float))
            ax.plot(fpr, tpr, lw=1.8, color=f"C{i}", label=f"centre {c} (n = {len(y)}): {_auc_text(m['centres'][str(c)]['auc'])}")
    _roc_axes(ax, "External test set by centre")
    fig.savefig(path)
    return path


def draw_calibration(y: np.ndarray, prob: np.ndarray, m: Mapping[str, Any], path: Path, *, n_bins: int = 10) -> Path:
    """Reliability diagram (observed AS rate vs mean P(AS) per bin) over a histogram of P(AS)."""
    fig = Figure(figsize=(5.2, 6.0), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    ax, hx = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    idx = np.clip(np.ceil(prob * n_bins).astype(int) - 1, 0, n_bins - 1)
    edges = np.linspace(0, 1, n_bins + 1)
    count = np.bincount(idx, minlength=n_bins)
    used = count > 0
    mean_p = np.bincount(idx, weights=prob, minlength=n_bins)[used] / count[used]
    rate = np.bincount(idx, weights=y, minlength=n_bins)[used] / count[used]
    ax.plot([0, 1], [0, 1], color="0.6", ls=":", lw=1, label="perfect calibration")
    ax.bar(edges[:-1][used], rate, width=1 / n_bins, align="edge", color="C0", alpha=0.25, edgecolor="C0",
           label="observed AS rate per bin")
    ax.plot(mean_p, rate, "o-", color="C0", label=f"ensemble (ECE {m['overall']['ece']:.3f})")
    ax.axvline(m["threshold"], color="C3", lw=1, ls="--", label=f"threshold {m['threshold']:.2f}")
    ax.set(xlim=(0, 1), ylim=(0, 1), ylabel="Observed fraction AS", title="Calibration on the external test set")
    ax.legend(loc="upper left", fontsize=8)
    hx.hist([prob[y == 0], prob[y == 1]], bins=edges, stacked=True, color=["C2", "C1"], label=["non-AS", "AS"])
    hx.set(xlabel="Predicted P(AS)", ylabel="Images")
    hx.legend(fontsize=8)
    fig.savefig(path)
    return path


def draw_confusion(m: Mapping[str, Any], path: Path) -> Path:
    """2×2 confusion matrix at the stored threshold, counts and row percentages."""
    c = m["overall"]["confusion"]
    mat = np.array([[c["tn"], c["fp"]], [c["fn"], c["tp"]]])
    fig, ax = _new(4.4, 4.0)
    ax.imshow(mat, cmap="Blues")
    rows = mat.sum(axis=1, keepdims=True)
    for (i, j), v in np.ndenumerate(mat):
        share = v / rows[i, 0] if rows[i, 0] else 0.0
        ax.text(j, i, f"{v}\n({100 * share:.0f} %)", ha="center", va="center",
                color="white" if v > mat.max() / 2 else "black", fontsize=11)
    ax.set(xticks=[0, 1], yticks=[0, 1], xticklabels=["non-AS", "AS"], yticklabels=["non-AS", "AS"],
           xlabel="Model", ylabel=f"Truth ({m['truth']})", title=f"Confusion matrix at threshold {m['threshold']:.2f}")
    fig.savefig(path)
    return path


def draw_all(pred: pd.DataFrame, m: Mapping[str, Any], out: Path) -> list[Path]:
    """Every figure of the report into ``out``; returns their paths."""
    ycol = f"y_{m['truth']}"
    clean = pred[pred["set"] == "clean"]
    y, prob = clean[ycol].to_numpy(dtype=np.int64), clean["prob"].to_numpy(dtype=float)
    members = {n: clean[MEMBER + n].to_numpy(dtype=float) for n in m["members"]}
    paths = [draw_roc(y, prob, members, m, out / "roc.png"),
             draw_centre_roc(clean, ycol, m, out / "roc_centres.png"),
             draw_calibration(y, prob, m, out / "calibration.png"),
             draw_confusion(m, out / "confusion.png")]
    if m.get("phone") and "auc_drop" in m["phone"]:
        pair = pred[pred["set"] == "phone"].merge(clean[["key", "prob", ycol]], on="key", suffixes=("", "_clean"))
        paths.append(draw_phone_roc(pair[ycol].to_numpy(dtype=np.int64), pair["prob_clean"].to_numpy(dtype=float),
                                    pair["prob"].to_numpy(dtype=float), m, out / "roc_phone.png"))
    return paths
