"""Combine the whole-image members and the joint reader across views, and measure what it buys (issue #20).

    python -m train.cross_view --model as_ai/demo_models/diagnosis --reader bundled \\
        --fit runs/xview-dev/train --test runs/xview-ext/external --phone runs/xview-ext/external_phone \\
        --out runs/cross_view [--write]

Data (phantoms neither model trained on; about 4 minutes on 2 cores, then about 5 minutes of reading)::

    as-ai synth pxr --out runs/xview-dev --n 800 --n-external 1 --seed 11 --size 512   # the rule's fit set
    as-ai synth pxr --out runs/xview-ext --n 1 --n-external 600 --seed 0 --size 512    # external centres B-D

Top to bottom:

1. The fit set (centre A, a seed the members and the reader never saw) is read three ways, as the model will
   meet images (``--fit-views``): the files as they are; each re-acquired as another centre might have
   recorded it (the training's acquisition jitter at full strength, :func:`reacquired`); and a phone photo of
   each (``as_ai.synthetic.phone``, levels 1-4 in turn, :func:`photographed`). Only centre A and simulated
   shifts of it: the external centres stay unseen until step 3.
   Every image of these, the external test set and its phone photos is read by ``diagnose_batch`` with the
   reader attached: each whole-image member's own P(AS) and the reader's P(modified New York criterion)
   (cached in ``--out`` so a rerun is quick).
2. Each rule of :data:`as_ai.cross_view.RULES` is cross-validated on the fit set (stratified 5-fold by
   phantom, so that the views of one phantom stay in one fold; repeated): weights (and the stacking
   regression) and the calibration fitted on four folds, read on the fifth. The rule
   with the best out-of-fold AUC (log-loss breaks ties within 0.002) is chosen, refitted on the whole fit set,
   and its threshold is Youden's on its out-of-fold predictions.
3. On the external test set (true labels): AUC with its DeLong CI, ECE, sensitivity and specificity at the
   threshold, every member's AUC, the members' pairwise Spearman correlation, and DeLong's paired test of the
   cross-view ensemble against its best member and against the whole-image ensemble shipped today; the same on
   the phone photos, by capture level.
4. ``--write`` puts the rule into the model's ``as_ai.json`` (``cross_view``, ``joint_reader``) and re-renders
   its card. Synthetic phantoms: not for clinical use.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

COMMAND = ("python -m train.cross_view --model as_ai/demo_models/diagnosis --reader bundled --fit runs/xview-dev/train "
           "--test runs/xview-ext/external --phone runs/xview-ext/external_phone --out runs/cross_view --write")
DATA_COMMANDS = ("as-ai synth pxr --out runs/xview-dev --n 800 --n-external 1 --seed 11 --size 512",
                 "as-ai synth pxr --out runs/xview-ext --n 1 --n-external 600 --seed 0 --size 512")
AUC_TIE = 0.002


@dataclass(frozen=True)
class Predictions:
    """What every member said about one set of images: ``probs`` (N x members, the reader last), true labels."""

    names: tuple[str, ...]
    probs: np.ndarray
    y: np.ndarray
    indeterminate: np.ndarray
    level: np.ndarray      # phone capture level per image (0: a file)
    group: np.ndarray      # the phantom each image shows (its row in the set's metadata.csv)
    whole: np.ndarray      # the model's own probability without the rule: the whole-image ensemble's

    def save(self, path: Path) -> None:
        np.savez(path, names=np.array(self.names), probs=self.probs, y=self.y, indeterminate=self.indeterminate,
                 level=self.level, group=self.group, whole=self.whole)

    @classmethod
    def load(cls, path: Path) -> "Predictions":
        z = np.load(path, allow_pickle=False)
        return cls(tuple(str(n) for n in z["names"]), z["probs"], z["y"], z["indeterminate"], z["level"],
                   z["group"], z["whole"])

    @classmethod
    def joined(cls, parts: Sequence["Predictions"]) -> "Predictions":
        """Several reads of the same phantoms as one fit set (groups kept, so CV keeps a phantom in one fold)."""
        return cls(parts[0].names, *(np.concatenate([getattr(p, k) for p in parts])
                                     for k in ("probs", "y", "indeterminate", "level", "group", "whole")))


def read_set(diagnoser: Any, folder: Path, cache: Path) -> Predictions:
    """Every member's P(AS) and the reader's P(mNY) for the images of ``folder`` (metadata.csv), cached."""
    import pandas as pd

    from as_ai.cross_view import JOINTS

    if cache.is_file():
        try:
            return Predictions.load(cache)
        except KeyError:   # written by an earlier version of this script: read the set again
            pass
    meta = pd.read_csv(folder / "metadata.csv")
    results = diagnoser.diagnose_batch([folder / f for f in meta["file_name"]], batch_size=16, progress=True)
    names = (*diagnoser.ensemble.names, JOINTS)
    probs = np.array([[d.members[n] for n in diagnoser.ensemble.names] + [d.sides.mny_probability] for d in results])
    level = meta["phone_level"].to_numpy(int) if "phone_level" in meta else np.zeros(len(meta), int)
    p = Predictions(names, probs, (meta["true_label"] == "AS").to_numpy(int),
                    np.array([d.label == "indeterminate" for d in results]), level, np.arange(len(meta)),
                    np.array([d.probability for d in results]))
    p.save(cache)
    return p


FIT_VIEWS = ("clean", "reacquired", "phone")


def _derived(folder: Path, out: Path, make: Any, suffix: str) -> Path:
    """``out`` holding one derived image per image of ``folder`` (``make(path, index) -> (writer, row)``), with
    its metadata.csv; images already there are kept, so a rerun is quick."""
    import pandas as pd

    meta = pd.read_csv(folder / "metadata.csv")
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, row in enumerate(meta.to_dict("records")):
        name = f"{Path(row['file_name']).stem}{suffix}"
        write, extra = make(folder / row["file_name"], i)
        if not (out / name).is_file():
            write(out / name)
        rows.append({**row, "file_name": name, **extra})
    pd.DataFrame(rows).to_csv(out / "metadata.csv", index=False)
    return out


def reacquired(folder: Path, out: Path, *, seed: int = 0) -> Path:
    """Every image of ``folder`` re-processed once as another centre might have recorded it (the training's
    :class:`train._augment.AcquisitionJitter` at full strength: curve, window, detector blur, edge enhancement,
    noise), as 16-bit PNGs in ``out``."""
    import torch
    from PIL import Image

    from as_ai.decoding import load_radiograph
    from train._augment import AcquisitionJitter

    jitter = AcquisitionJitter(1.0)

    def make(path: Path, i: int):
        def write(to: Path) -> None:
            with torch.random.fork_rng():
                torch.manual_seed(seed * 100_003 + i)
                x = jitter(torch.from_numpy(load_radiograph(path).pixels.copy())[None]).clamp(0, 1)[0].numpy()
            Image.fromarray(np.round(x * 65535).astype(np.uint16)).save(to, format="PNG", compress_level=1)
        return write, {"format": "png"}

    return _derived(folder, out, make, ".png")


def photographed(folder: Path, out: Path, *, seed: int = 0) -> Path:
    """A phone photo of every image of ``folder`` displayed on a monitor (``as_ai.synthetic.phone``, capture
    levels 1-4 in turn), as JPEGs in ``out``."""
    from as_ai.decoding import load_radiograph
    from as_ai.synthetic.phone import photograph, save_photo

    def make(path: Path, i: int):
        level = 1 + i % 4

        def write(to: Path) -> None:
            photo = photograph(load_radiograph(path).pixels, level=level, seed=seed * 100_003 + i)
            save_photo(photo, to, seed=seed * 100_003 + i)
        return write, {"format": "jpeg", "phone_level": level}

    return _derived(folder, out, make, ".jpg")


def read_fit_views(diagnoser: Any, folder: Path, out: Path, views: Sequence[str]) -> Predictions:
    """The fit set read in each of ``views`` (:data:`FIT_VIEWS`), joined."""
    unknown = set(views) - set(FIT_VIEWS)
    if unknown or not views:
        raise ValueError(f"--fit-views must name some of {FIT_VIEWS}, got {list(views)}")
    made = {"clean": lambda: folder, "reacquired": lambda: reacquired(folder, out / "fit_reacquired"),
            "phone": lambda: photographed(folder, out / "fit_phone")}
    return Predictions.joined([read_set(diagnoser, made[v](), out / f"predictions_fit_{v}.npz") for v in views])


# -------------------------------------------------------------------------------------------- the rules
def fit_rule(rule: str, probs: np.ndarray, y: np.ndarray, names: Sequence[str]) -> Any:
    """A :class:`~as_ai.cross_view.CrossViewRule` of kind ``rule`` fitted on ``probs`` (N x members), ``y``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    from as_ai.cross_view import CrossViewRule, logit
    from as_ai.ensemble import Calibration, combine_weights

    if rule == "stacking":
        lr = LogisticRegression(C=1.0, max_iter=1000).fit(logit(probs), y)
        return CrossViewRule("stacking", tuple(names), tuple(float(w) for w in lr.coef_[0]),
                             bias=float(lr.intercept_[0]))
    aucs = [roc_auc_score(y, probs[:, j]) for j in range(probs.shape[1])]
    weights = combine_weights(rule, aucs)
    raw = CrossViewRule(rule, tuple(names), tuple(weights))
    calibration = Calibration.fit(raw.combined(probs[:, :-1], probs[:, -1]), y, method="platt")
    return CrossViewRule(rule, tuple(names), tuple(weights), calibration=calibration)


def out_of_fold(rule: str, probs: np.ndarray, y: np.ndarray, names: Sequence[str], *, groups: np.ndarray,
                folds: int = 5, repeats: int = 3, seed: int = 0) -> np.ndarray:
    """Out-of-fold calibrated probabilities of ``rule`` (repeats x N): fitted on the other folds each time, the
    images of one phantom (``groups``) always in the same fold."""
    from sklearn.model_selection import StratifiedGroupKFold

    out = np.zeros((repeats, len(y)))
    for r in range(repeats):
        split = StratifiedGroupKFold(folds, shuffle=True, random_state=seed + r).split(probs, y, groups)
        for fit_idx, read_idx in split:
            f = fit_rule(rule, probs[fit_idx], y[fit_idx], names)
            out[r, read_idx] = f.probability(probs[read_idx, :-1], probs[read_idx, -1])
    return out


def choose_rule(fit: Predictions) -> tuple[Any, dict[str, Any]]:
    """The rule cross-validation prefers, refitted on the whole fit set and thresholded; and every rule's CV."""
    from sklearn.metrics import log_loss, roc_auc_score

    from as_ai.cross_view import RULES
    from as_ai.ensemble import youden_threshold
    from as_ai.metrics import expected_calibration_error

    cv, oofs = {}, {}
    for rule in RULES:
        oof = out_of_fold(rule, fit.probs, fit.y, fit.names, groups=fit.group)
        oofs[rule] = oof
        cv[rule] = {"auc": float(np.mean([roc_auc_score(fit.y, o) for o in oof])),
                    "log_loss": float(np.mean([log_loss(fit.y, np.clip(o, 1e-6, 1 - 1e-6)) for o in oof])),
                    "ece": float(np.mean([expected_calibration_error(fit.y, o) for o in oof]))}
    best_auc = max(r["auc"] for r in cv.values())
    chosen = min((r for r in RULES if cv[r]["auc"] >= best_auc - AUC_TIE), key=lambda r: cv[r]["log_loss"])
    rule = fit_rule(chosen, fit.probs, fit.y, fit.names)
    threshold = youden_threshold(oofs[chosen].mean(axis=0), fit.y)
    return dataclasses.replace(rule, threshold=threshold), {"rules": cv, "chosen": chosen, "n": int(len(fit.y)),
                                                            "folds": 5, "repeats": 3, "auc_tie": AUC_TIE}


# -------------------------------------------------------------------------------------------- measuring
def evaluate(rule: Any, threshold: float, p: Predictions) -> dict[str, Any]:
    """The cross-view ensemble on one set against every member and the whole-image ensemble (at ``threshold``,
    its own)."""
    from scipy.stats import spearmanr

    from as_ai.metrics import auc_ci, binary_report, delong_test

    combined = rule.probability(p.probs[:, :-1], p.probs[:, -1])
    whole = p.whole
    members = {n: float(auc_ci(p.y, p.probs[:, j])[1]) for j, n in enumerate(p.names)}
    best = max(members, key=members.get)
    report = binary_report(p.y, combined, rule.threshold).to_dict()
    corr = spearmanr(p.probs).statistic
    pairs = {f"{a}~{b}": float(corr[i, j]) for i, a in enumerate(p.names) for j, b in enumerate(p.names) if i < j}
    def vs(other: np.ndarray) -> dict[str, Any]:
        r = delong_test(p.y, combined, other)
        return {"auc_a": r.auc_a, "auc_b": r.auc_b, "z": r.z, "p": r.p, "ci": list(r.ci)}

    return {"n": int(len(p.y)), "n_indeterminate": int(p.indeterminate.sum()), "cross_view": report,
            **accepted(rule, p),
            "auc_ci": [float(v) for v in auc_ci(p.y, combined)[::2]], "members_auc": members, "best_member": best,
            "vs_best_member": vs(p.probs[:, p.names.index(best)]), "whole_image": binary_report(p.y, whole, threshold).to_dict(),
            "vs_whole_image": vs(whole), "spearman": pairs}


def _auc(y: np.ndarray, prob: np.ndarray) -> float | None:
    """The AUC, or None with fewer than two cases of a class (too few to compare)."""
    from as_ai.metrics import auc_ci

    return float(auc_ci(y, prob)[1]) if min(int(y.sum()), int((1 - y).sum())) >= 2 else None


def by_level(rule: Any, p: Predictions) -> dict[str, Any]:
    """AUC of the cross-view and whole-image ensembles on phone photos, per capture level (levels with too few
    cases of a class for an AUC are left out)."""
    out = {}
    for lv in sorted(set(p.level.tolist())):
        m = p.level == lv
        if _auc(p.y[m], p.whole[m]) is None:
            continue
        combined = rule.probability(p.probs[m, :-1], p.probs[m, -1])
        kept = ~p.indeterminate[m]
        out[str(lv)] = {"n": int(m.sum()), "cross_view_auc": _auc(p.y[m], combined),
                        "whole_image_auc": _auc(p.y[m], p.whole[m]), "joints_auc": _auc(p.y[m], p.probs[m, -1]),
                        "accepted": float(kept.mean()), "cross_view_auc_accepted": _auc(p.y[m][kept], combined[kept])}
    return out


def accepted(rule: Any, p: Predictions) -> dict[str, Any]:
    """The share of images the model did not abstain on, and the cross-view AUC on those."""
    kept = ~p.indeterminate
    return {"accepted": float(kept.mean()),
            "auc_accepted": _auc(p.y[kept], rule.probability(p.probs[kept, :-1], p.probs[kept, -1]))}


# ------------------------------------------------------------------------------------------------- main
def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m train.cross_view", description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="diagnosis model folder (whole-image members)")
    ap.add_argument("--reader", default="bundled", help="joint reader folder, or 'bundled'")
    ap.add_argument("--fit", type=Path, required=True, help="phantom folder the rule is fitted on (not trained on)")
    ap.add_argument("--test", type=Path, required=True, help="external phantom folder (>= 600 images)")
    ap.add_argument("--phone", type=Path, help="phone photos of the external set")
    ap.add_argument("--fit-views", default=",".join(FIT_VIEWS),
                    help=f"how the fit set is read, some of {','.join(FIT_VIEWS)} (default: all)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--write", action="store_true", help="write the rule into the model's as_ai.json and card")
    args = ap.parse_args(argv)

    from as_ai.diagnoser import Diagnoser
    from as_ai.errors import AsAiError

    args.out.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        diagnoser = Diagnoser.from_pretrained(args.model).attach_joint_reader(args.reader)
    diagnoser.cross_view = None  # read every member on its own; the rule is what this script fits
    views = [v.strip() for v in args.fit_views.split(",") if v.strip()]
    sets = {"external": args.test, **({"external_phone": args.phone} if args.phone else {})}
    try:
        preds = {"fit": read_fit_views(diagnoser, args.fit, args.out, views)}
        preds.update({k: read_set(diagnoser, folder, args.out / f"predictions_{k}.npz") for k, folder in sets.items()})
    except (FileNotFoundError, ValueError, AsAiError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    rule, cv = choose_rule(preds["fit"])
    cv["fit_views"] = views
    metrics: dict[str, Any] = {"command": COMMAND, "data_commands": list(DATA_COMMANDS), "cv": cv, "external": evaluate(rule, diagnoser.threshold, preds["external"])}
    if "external_phone" in preds:
        metrics["external_phone"] = {**evaluate(rule, diagnoser.threshold, preds["external_phone"]),
                                     "by_level": by_level(rule, preds["external_phone"])}
    rule = dataclasses.replace(rule, metrics=metrics)
    (args.out / "cross_view.json").write_text(json.dumps(rule.to_json(), indent=2) + "\n", encoding="utf-8")
    print(summary(rule))
    if args.write:
        write_into(Path(args.model), rule, args.reader)
        print(f"wrote the rule into {Path(args.model) / 'as_ai.json'} and re-rendered its card")
    return 0


def summary(rule: Any) -> str:
    """The figures a reader of the log wants, one line each."""
    m = rule.metrics
    lines = [f"rule: {rule.rule} (CV AUC " + ", ".join(f"{k} {v['auc']:.4f}" for k, v in m["cv"]["rules"].items())
             + f"); weights {dict(zip(rule.members, np.round(rule.weights, 3)))}; threshold {rule.threshold:.3f}"]
    for split in ("external", "external_phone"):
        if split not in m:
            continue
        e = m[split]
        cvx, whole = e["cross_view"], e["whole_image"]
        lines.append(f"{split} (n={e['n']}): cross-view AUC {cvx['auc']:.4f} ECE {cvx['ece']:.3f} | whole-image "
                     f"{whole['auc']:.4f} ECE {whole['ece']:.3f} | best member {e['best_member']} "
                     f"{e['members_auc'][e['best_member']]:.4f}: dAUC {cvx['auc'] - e['members_auc'][e['best_member']]:+.4f} "
                     f"p {e['vs_best_member']['p']:.3g} | vs whole-image dAUC {cvx['auc'] - whole['auc']:+.4f} "
                     f"p {e['vs_whole_image']['p']:.3g}")
        on_kept = "n/a" if e["auc_accepted"] is None else f"{e['auc_accepted']:.4f}"
        lines.append(f"  accepted (not indeterminate) {100 * e['accepted']:.1f} %; cross-view AUC on those {on_kept}")
        lines.append("  spearman: " + ", ".join(f"{k} {v:.2f}" for k, v in e["spearman"].items()))
        for lv, r in e.get("by_level", {}).items():
            on_kept = "n/a" if r["cross_view_auc_accepted"] is None else f"{r['cross_view_auc_accepted']:.4f}"
            lines.append(f"  level {lv} (n={r['n']}): cross-view {r['cross_view_auc']:.4f}, whole-image "
                         f"{r['whole_image_auc']:.4f}, joints {r['joints_auc']:.4f}; accepted "
                         f"{100 * r['accepted']:.1f} %, cross-view on those {on_kept}")
    return "\n".join(lines)


def write_into(model: Path, rule: Any, reader: str) -> None:
    """Put the rule and the reader's entry into ``model/as_ai.json`` and re-render its card."""
    from train.cards import update_repo

    update_repo(model, lambda cfg: cfg.update(joint_reader=reader, cross_view=rule.to_json()))


if __name__ == "__main__":
    sys.exit(main())
