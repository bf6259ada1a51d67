"""PNG figures of the triage models' report (``python -m train.clinical``), drawn with matplotlib (Agg).

Per target: predicted against observed on the test set, the training distribution with its log-rank cut-off,
Kaplan-Meier cumulative surgical risk of the low and high groups (training and test); and the summed variable
importances of the four tree ensembles.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from as_ai.clinical import TARGETS
from as_ai.plots import draw_risk_curves


def figures(results: dict[str, Any], surv: dict[str, Any], yte: dict[str, np.ndarray], obs_tr: dict[str, np.ndarray],
            folder: Path) -> list[str]:
    """Every figure of the report into ``folder``; returns their file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    note = "synthetic cohort"
    for t in TARGETS:
        r, s = results[t], surv[t]
        fig, ax = plt.subplots(figsize=(4.5, 4.5))
        ax.scatter(yte[t], r["pred"], s=14, alpha=0.7)
        ax.plot([0, 10], [0, 10], "k--", lw=1)
        ax.set(xlim=(0, 10), ylim=(0, 10), xlabel=f"observed {t.upper()}", ylabel=f"predicted {t.upper()}",
               title=f"{t.upper()} test set: MSE {r['test']['mse']:.2f}, R² {r['test']['r2']:.2f}\n({note})")
        fig.tight_layout(); fig.savefig(folder / f"pred_vs_true_{t}.png", dpi=110); plt.close(fig)
        written.append(f"pred_vs_true_{t}.png")

        cp = s["cutpoint"]
        fig, ax = plt.subplots(figsize=(6, 3.8))
        ax.hist(obs_tr[t], bins=np.arange(0, 10.5, 0.5), color="#9ab", edgecolor="white")
        ax.axvline(cp.cutpoint, color="crimson", lw=2, label=f"cut-off {cp.cutpoint:g}")
        ax.set(xlabel=f"observed {t.upper()} (training set)", ylabel="patients",
               title=f"{t.upper()} distribution and optimal cut-off ({note})")
        ax2 = ax.twinx()
        ax2.plot(cp.candidates, cp.statistics, color="k", lw=1, label="standardised log-rank statistic")
        ax2.set_ylabel("log-rank statistic")
        ax.legend(loc="upper right", fontsize=8)
        fig.tight_layout(); fig.savefig(folder / f"distribution_{t}.png", dpi=110); plt.close(fig)
        written.append(f"distribution_{t}.png")

        fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
        for ax, split, by in ((axes[0], "train", "observed"), (axes[1], "test", "predicted")):
            draw_risk_curves(ax, s[f"curves_{split}"], name=t.upper())   # as the Space draws them
            lr = s[f"logrank_{split}"]
            p = f"log-rank p = {lr.p_value:.2g}" if lr else "one group only"
            ax.set(title=f"{split}: groups by {by} {t.upper()} (cut-off {cp.cutpoint:g}); {p}",
                   xlabel="years", ylabel="cumulative risk of surgery")
            ax.title.set_fontsize(9)
            ax.legend(fontsize=8, loc="upper left")
        fig.suptitle(f"Kaplan–Meier cumulative surgical risk by {t.upper()} group ({note})", fontsize=10)
        fig.tight_layout(); fig.savefig(folder / f"km_{t}.png", dpi=110); plt.close(fig)
        written.append(f"km_{t}.png")

    fig, axes = plt.subplots(1, 2, figsize=(11, 5))
    for ax, t in zip(axes, TARGETS):
        imp = results[t]["importances"].drop(columns="sum").iloc[::-1]
        left = np.zeros(len(imp))
        for col in imp.columns:
            ax.barh(imp.index, imp[col], left=left, label=col)
            left += imp[col].to_numpy()
        ax.axhline(len(imp) - 7 - 0.5, color="k", ls="--", lw=1)
        ax.set(title=f"{t.upper()}: top 7 above the line", xlabel="summed normalised importance (4 ensembles)")
    axes[0].legend(fontsize=8, loc="lower right")
    fig.tight_layout(); fig.savefig(folder / "importances.png", dpi=110); plt.close(fig)
    written.append("importances.png")
    return written
