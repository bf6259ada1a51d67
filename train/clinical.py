"""Train the triage models (BASFI and BASDAI) and their surgical-risk cut-offs; write a model repo and a report.

The reference study's protocol, for each target: 7:3 split; imputation inside the pipeline (iterative,
MICE-style); variables ranked by the summed importances of four tree ensembles, top 7 kept; standardised;
six single and four ensemble models tuned by grid search (K-fold CV on MSE); the best four stacked.
Beyond the study: split-conformal prediction intervals from out-of-fold residuals, with test coverage.
Then, on the training set, the optimal cut-off of the *observed* score against time to surgery (maximally
selected log-rank statistic); on the test set, patients split by their *predicted* score at that cut-off.

    python -m train.clinical --data data/cohort.csv --out runs/triage          # a few minutes on 2 cores
    python -m train.clinical --synthetic 356 --seed 0 --out runs/triage --fast  # tiny grids, 3-fold
"""
from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from joblib import Memory
from sklearn.base import clone
from sklearn.ensemble import (AdaBoostRegressor, ExtraTreesRegressor, GradientBoostingRegressor,
                              RandomForestRegressor, StackingRegressor)
from sklearn.experimental import enable_iterative_imputer  # noqa: F401 - enables IterativeImputer
from sklearn.impute import IterativeImputer
from sklearn.linear_model import ElasticNet, Lasso, LinearRegression, Ridge
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score
from sklearn.model_selection import GridSearchCV, KFold, cross_val_predict, train_test_split
from sklearn.neighbors import KNeighborsRegressor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVR
from sklearn.tree import DecisionTreeRegressor

from as_ai import survival
from as_ai._schema import FeatureSchema
from as_ai.clinical import TARGETS, Triager
from as_ai.synthetic.cohort import OUTCOMES, VARIABLES, make_cohort
from train._clinical_figures import figures

REPO_ROOT = Path(__file__).resolve().parents[1]
CARD_TEMPLATE = REPO_ROOT / "model_cards" / "triage.md"
SINGLE = ("ridge", "lasso", "elastic_net", "svr", "knn", "decision_tree")
ENSEMBLE = ("random_forest", "extra_trees", "gradient_boosting", "adaboost")


@dataclass
class Config:
    out: str
    data: str | None = None
    synthetic: int | None = None      # generate a synthetic cohort of this size instead of reading --data
    seed: int = 0
    test_size: float = 0.3
    top_k: int = 7
    cv: int = 10
    stack_cv: int = 5
    level: float = 0.9
    minprop: float = 0.1
    fast: bool = False
    jobs: int = 1
    repo_out: str | None = None
    real_data: bool = False
    push_to_hub: str | None = None    # publish the model repo to this Hub repo id after training
    hub_tag: str | None = None


# ------------------------------------------------------------------------------------------- models
def candidates(cfg: Config) -> dict[str, tuple[Any, dict[str, list]]]:
    """The ten candidate models (six single, four ensembles) with their grids (tiny with --fast)."""
    s, fast = cfg.seed, cfg.fast
    # Forest sizes stay small: per-tree dispatch dominates one patient's latency (goal <= 10 ms), and on
    # ~250 patients more trees do not lower the CV error measurably.
    n_trees = [20] if fast else [25, 50]
    return {
        "ridge": (Ridge(), {"alpha": [1.0] if fast else [0.1, 1.0, 10.0, 100.0]}),
        "lasso": (Lasso(max_iter=5000), {"alpha": [0.05] if fast else [0.005, 0.02, 0.05, 0.2]}),
        "elastic_net": (ElasticNet(max_iter=5000), {"alpha": [0.05] if fast else [0.01, 0.05, 0.2],
                                                    "l1_ratio": [0.5] if fast else [0.2, 0.8]}),
        "svr": (SVR(), {"C": [1.0] if fast else [0.3, 1.0, 3.0], "gamma": ["scale"] if fast else ["scale", 0.05],
                        "epsilon": [0.2]}),
        "knn": (KNeighborsRegressor(), {"n_neighbors": [10] if fast else [5, 10, 20],
                                        "weights": ["uniform"] if fast else ["uniform", "distance"]}),
        "decision_tree": (DecisionTreeRegressor(random_state=s), {"max_depth": [3] if fast else [3, 5, 8],
                                                                  "min_samples_leaf": [5] if fast else [5, 15]}),
        "random_forest": (RandomForestRegressor(random_state=s), {"n_estimators": n_trees,
                                                                  "min_samples_leaf": [5] if fast else [3, 8],
                                                                  "max_features": [0.5]}),
        "extra_trees": (ExtraTreesRegressor(random_state=s), {"n_estimators": n_trees,
                                                              "min_samples_leaf": [5] if fast else [3, 8],
                                                              "max_features": [0.7]}),
        "gradient_boosting": (GradientBoostingRegressor(random_state=s, subsample=0.8),
                              {"n_estimators": [30] if fast else [50, 150], "learning_rate": [0.1] if fast else [0.03, 0.1],
                               "max_depth": [2]}),
        "adaboost": (AdaBoostRegressor(DecisionTreeRegressor(max_depth=3), random_state=s),
                     {"n_estimators": [20] if fast else [20, 40], "learning_rate": [0.1] if fast else [0.1, 0.5]}),
    }


def preprocessing(seed: int) -> list[tuple[str, Any]]:
    """Impute (iterative, BayesianRidge per feature) then standardise; fitted inside every CV fold."""
    return [("impute", IterativeImputer(max_iter=10, random_state=seed)), ("scale", StandardScaler())]


def rank_variables(X: np.ndarray, y: np.ndarray, names: list[str], cfg: Config) -> pd.DataFrame:
    """Importances of four tree ensembles (each normalised to sum 1) and their sum, sorted descending."""
    Xi = IterativeImputer(max_iter=10, random_state=cfg.seed).fit_transform(X)
    n = 30 if cfg.fast else 200
    rankers = {
        "random_forest": RandomForestRegressor(n_estimators=n, min_samples_leaf=3, random_state=cfg.seed),
        "extra_trees": ExtraTreesRegressor(n_estimators=n, min_samples_leaf=3, random_state=cfg.seed),
        "gradient_boosting": GradientBoostingRegressor(n_estimators=n // 2, max_depth=2, random_state=cfg.seed),
        "adaboost": AdaBoostRegressor(DecisionTreeRegressor(max_depth=3), n_estimators=n // 4, random_state=cfg.seed),
    }
    imp = pd.DataFrame(index=names)
    for name, model in rankers.items():
        w = model.fit(Xi, y).feature_importances_
        imp[name] = w / w.sum()
    imp["sum"] = imp.sum(axis=1)
    return imp.sort_values("sum", ascending=False)


def scores(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    return {"mse": float(mean_squared_error(y, p)), "mae": float(mean_absolute_error(y, p)),
            "r2": float(r2_score(y, p))}


def conformal_halfwidth(pipe: Pipeline, X: np.ndarray, y: np.ndarray, cfg: Config) -> float:
    """Split-conformal half-width from out-of-fold absolute residuals: the ceil((n+1)·level)-th smallest."""
    folds = 3 if cfg.fast else cfg.cv
    oof = np.clip(cross_val_predict(clone(pipe), X, y, cv=KFold(folds, shuffle=True, random_state=cfg.seed)), 0, 10)
    r = np.sort(np.abs(y - oof))
    k = min(len(r), math.ceil((len(r) + 1) * cfg.level))
    return float(r[k - 1])


def fit_target(target: str, Xtr: np.ndarray, ytr: np.ndarray, Xte: np.ndarray, yte: np.ndarray,
               names: list[str], cfg: Config, cache: str) -> dict[str, Any]:
    """Rank, select, tune the ten candidates, stack the best four, measure test error and intervals."""
    importances = rank_variables(Xtr, ytr, names, cfg)
    inputs = importances.index[: cfg.top_k].tolist()
    cols = [names.index(c) for c in inputs]
    Xs, Xt = Xtr[:, cols], Xte[:, cols]
    folds = KFold(3 if cfg.fast else cfg.cv, shuffle=True, random_state=cfg.seed)
    models: dict[str, dict[str, Any]] = {}
    fitted = {}
    for name, (est, grid) in candidates(cfg).items():
        pipe = Pipeline(preprocessing(cfg.seed) + [("model", est)], memory=Memory(cache, verbose=0))
        gs = GridSearchCV(pipe, {f"model__{k}": v for k, v in grid.items()}, cv=folds,
                          scoring="neg_mean_squared_error", n_jobs=cfg.jobs).fit(Xs, ytr)
        fitted[name] = gs.best_estimator_.named_steps["model"]
        models[name] = {"kind": "single" if name in SINGLE else "ensemble", "cv_mse": float(-gs.best_score_),
                        "params": {k.removeprefix("model__"): v for k, v in gs.best_params_.items()},
                        "test": scores(yte, np.clip(gs.predict(Xt), 0, 10))}
        print(f"  {target:6s} {name:18s} cv MSE {models[name]['cv_mse']:.3f}  test MSE {models[name]['test']['mse']:.3f}",
              flush=True)
    best4 = sorted(models, key=lambda m: models[m]["cv_mse"])[:4]
    stack = StackingRegressor([(m, clone(fitted[m])) for m in best4],
                              final_estimator=LinearRegression(positive=True), cv=3 if cfg.fast else cfg.stack_cv)
    pipe = Pipeline(preprocessing(cfg.seed) + [("model", stack)])
    pipe.fit(Xs, ytr)
    pred = np.clip(pipe.predict(Xt), 0, 10)
    half = conformal_halfwidth(pipe, Xs, ytr, cfg)
    coverage = float(np.mean(np.abs(yte - pred) <= half))
    best_single = min(models, key=lambda m: models[m]["test"]["mse"])
    print(f"  {target:6s} stacked ({', '.join(best4)}) test MSE {scores(yte, pred)['mse']:.3f}; "
          f"{cfg.level:.0%} interval ±{half:.2f}, test coverage {coverage:.3f}", flush=True)
    return {"pipeline": pipe, "inputs": inputs, "importances": importances, "models": models, "stacked": best4,
            "stack_weights": dict(zip(best4, map(float, stack.final_estimator_.coef_))),
            "test": scores(yte, pred), "best_single_test": best_single, "halfwidth": half,
            "coverage": coverage, "pred": pred}


# ----------------------------------------------------------------------------------------- survival
def risk_groups(target: str, obs_tr: np.ndarray, pred_te: np.ndarray, tr: pd.DataFrame, te: pd.DataFrame,
                cfg: Config) -> dict[str, Any]:
    """Cut-off on the training set's observed scores; test patients split by predicted scores."""
    t_tr, e_tr = tr["time_to_surgery"].to_numpy(float), tr["surgery"].to_numpy(float)
    t_te, e_te = te["time_to_surgery"].to_numpy(float), te["surgery"].to_numpy(float)
    cut = survival.optimal_cutpoint(t_tr, e_tr, obs_tr, minprop=cfg.minprop, variable=target)
    g_tr, g_te = survival.split_groups(obs_tr, cut.cutpoint), survival.split_groups(pred_te, cut.cutpoint)
    horizon = float(max(t_tr.max(), t_te.max()))
    grid = np.round(np.arange(0.0, horizon + 0.25, 0.25), 2)
    out: dict[str, Any] = {"cutpoint": cut, "groups_train": g_tr, "groups_test": g_te}
    for split, t, e, g in (("train", t_tr, e_tr, g_tr), ("test", t_te, e_te, g_te)):
        out[f"curves_{split}"] = survival.cumulative_risk(t, e, groups=g, timeline=grid)
        out[f"logrank_{split}"] = (survival.logrank(t, e, g) if len(set(g.tolist())) == 2 else None)
    return out


# ------------------------------------------------------------------------------------------- report
def report_markdown(results: dict[str, Any], surv: dict[str, Any], meta: dict[str, Any], figs: list[str]) -> str:
    lines = [f"# Triage training report", "",
             f"Data: {meta['data']} — {meta['n']} patients ({meta['n_train']} train / {meta['n_test']} test), "
             f"{meta['events']} surgeries. " + ("**Synthetic cohort: results describe the generator, not patients.**"
                                                if meta["synthetic"] else ""),
             f"Command: `{meta['command']}` (seed {meta['seed']}{', fast mode' if meta['fast'] else ''}).", ""]
    for t in TARGETS:
        r, s = results[t], surv[t]
        st, bs = r["test"], r["models"][r["best_single_test"]]["test"]
        lines += [f"## {t.upper()}", "", f"Top {len(r['inputs'])} variables: {', '.join(r['inputs'])}.", "",
                  "| model | kind | CV MSE | test MSE | test MAE | test R² |", "|---|---|---|---|---|---|"]
        for name, m in sorted(r["models"].items(), key=lambda kv: kv[1]["cv_mse"]):
            lines.append(f"| {name} | {m['kind']} | {m['cv_mse']:.3f} | {m['test']['mse']:.3f} | "
                         f"{m['test']['mae']:.3f} | {m['test']['r2']:.3f} |")
        lines.append(f"| **stacked** ({' + '.join(r['stacked'])}) | stack | – | **{st['mse']:.3f}** | {st['mae']:.3f} | "
                     f"{st['r2']:.3f} |")
        lr_tr, lr_te = s["logrank_train"], s["logrank_test"]
        lines += ["", f"- Stacked vs best single model on the test set ({r['best_single_test']}): MSE {st['mse']:.3f} vs "
                  f"{bs['mse']:.3f} (ratio {st['mse'] / bs['mse']:.3f}).",
                  f"- {meta['level']:.0%} split-conformal interval: ±{r['halfwidth']:.2f}; measured test coverage "
                  f"{r['coverage']:.3f}.",
                  f"- Optimal cut-off of observed {t.upper()} on the training set: **{s['cutpoint'].cutpoint:g}** "
                  f"(standardised log-rank statistic {s['cutpoint'].statistic:.2f}); training log-rank p = "
                  f"{lr_tr.p_value:.3g}." if lr_tr else "",
                  f"- Test set split by *predicted* {t.upper()} at that cut-off: log-rank p = {lr_te.p_value:.3g} "
                  f"(low n={s['curves_test'].get('low').n if 'low' in s['curves_test'] else 0}, "
                  f"high n={s['curves_test'].get('high').n if 'high' in s['curves_test'] else 0})." if lr_te
                  else "- Test set: every patient fell in one predicted group; no log-rank test.", ""]
        lines += [f"![predicted vs true](figures/pred_vs_true_{t}.png) ![distribution](figures/distribution_{t}.png)",
                  "", f"![KM](figures/km_{t}.png)", ""]
    lines += ["## Variable importances", "", "![importances](figures/importances.png)", "",
              "The reference study (Li et al. 2023) found cut-offs BASFI 3.6 and BASDAI 2.1 on its data; the values "
              "above come from this data set.", ""]
    return "\n".join(lines)


def render_card(context: dict[str, Any]) -> str:
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(CARD_TEMPLATE.parent)),
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    return env.get_template(CARD_TEMPLATE.name).render(**context)


# --------------------------------------------------------------------------------------------- main
def load_cohort(cfg: Config) -> tuple[pd.DataFrame, str]:
    if cfg.synthetic:
        return make_cohort(cfg.synthetic, seed=cfg.seed), f"synthetic cohort (make_cohort(n={cfg.synthetic}, seed={cfg.seed}))"
    df = pd.read_csv(cfg.data)
    missing = [c for c in OUTCOMES if c not in df.columns]
    if missing:
        raise SystemExit(f"train.clinical: {cfg.data} lacks the outcome columns {missing}")
    return df, str(cfg.data)


def run(cfg: Config, command: str) -> dict[str, Any]:
    t0 = time.time()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    df, source = load_cohort(cfg)
    df = df.dropna(subset=list(OUTCOMES)).reset_index(drop=True)
    candidates_schema = FeatureSchema.from_config([v.to_dict() for v in VARIABLES if v.name in df.columns])
    names = candidates_schema.names
    # Training data pass the same validation as patients at inference; outcomes are never inputs.
    X, _ = candidates_schema.validate_frame(df[names])
    idx_tr, idx_te = train_test_split(np.arange(len(df)), test_size=cfg.test_size, random_state=cfg.seed)
    tr, te = df.iloc[idx_tr], df.iloc[idx_te]
    results, surv = {}, {}
    with tempfile.TemporaryDirectory() as cache:
        for t in TARGETS:
            y = df[t].to_numpy(float)
            results[t] = fit_target(t, X[idx_tr], y[idx_tr], X[idx_te], y[idx_te], names, cfg, cache)
            surv[t] = risk_groups(t, y[idx_tr], results[t]["pred"], tr, te, cfg)

    used = [n for n in names if any(n in results[t]["inputs"] for t in TARGETS)]
    meta = {"data": source, "n": len(df), "n_train": len(tr), "n_test": len(te), "events": int(df["surgery"].sum()),
            "synthetic": not cfg.real_data, "command": command, "seed": cfg.seed, "fast": cfg.fast, "level": cfg.level}
    import sklearn
    import skops

    config = {
        "kind": "triage", "format_version": 1,
        "features": [f.to_dict() for f in candidates_schema.features if f.name in used],
        # candidate variables neither model reads: accepted in a patient record (and range-checked), then unused
        "other_fields": [f.to_dict() for f in candidates_schema.features if f.name not in used],
        "targets": {t: {"file": f"{t}.skops", "cutoff": surv[t]["cutpoint"].cutpoint, "inputs": results[t]["inputs"],
                        "range": [0, 10],
                        "interval": {"level": cfg.level, "halfwidth": results[t]["halfwidth"],
                                     "method": "split-conformal on out-of-fold absolute residuals (training set)",
                                     "test_coverage": results[t]["coverage"]}} for t in TARGETS},
        "curves": {t: {"grouped_by": f"observed {t} at the cut-off (training set)",
                       **{g: c.to_dict() for g, c in surv[t]["curves_train"].items()}} for t in TARGETS},
        "logrank": {t: {"train": surv[t]["logrank_train"].to_dict() if surv[t]["logrank_train"] else None,
                        "test": surv[t]["logrank_test"].to_dict() if surv[t]["logrank_test"] else None,
                        "cutpoint_statistic": surv[t]["cutpoint"].statistic} for t in TARGETS},
        "metrics": {t: {"test": results[t]["test"], "models": results[t]["models"], "stacked": results[t]["stacked"],
                        "stack_weights": results[t]["stack_weights"], "best_single": results[t]["best_single_test"],
                        "importances": results[t]["importances"]["sum"].round(4).to_dict()} for t in TARGETS},
        "training": {"synthetic": not cfg.real_data, "data": source, "n": len(df), "n_train": len(tr),
                     "n_test": len(te), "events": meta["events"], "seed": cfg.seed, "command": command,
                     "config": asdict(cfg), "sklearn": sklearn.__version__, "skops": skops.__version__,
                     "protocol": "7:3 split; IterativeImputer in pipeline; top-7 by summed importances of RF/ET/GB/"
                                 "AdaBoost; StandardScaler; 10 candidates tuned by GridSearchCV (K-fold, MSE); best 4 "
                                 "stacked (StackingRegressor, non-negative linear meta-model); maxstat cut-offs"},
    }
    triager = Triager(config, {t: results[t]["pipeline"] for t in TARGETS}, provenance="unsaved")
    figs = figures(results, surv, {t: df[t].to_numpy(float)[idx_te] for t in TARGETS},
                   {t: df[t].to_numpy(float)[idx_tr] for t in TARGETS}, out / "figures")
    card = render_card({"config": config, "meta": meta, "targets": TARGETS})
    repo = triager.save_pretrained(Path(cfg.repo_out) if cfg.repo_out else out / "model", card=card)
    (out / "report.md").write_text(report_markdown(results, surv, meta, figs), encoding="utf-8")
    summary = {t: {"cutoff": config["targets"][t]["cutoff"], "test_mse_stacked": results[t]["test"]["mse"],
                   "test_mse_best_single": results[t]["models"][results[t]["best_single_test"]]["test"]["mse"],
                   "best_single": results[t]["best_single_test"], "coverage": results[t]["coverage"],
                   "logrank_p_test": config["logrank"][t]["test"]["p_value"] if config["logrank"][t]["test"] else None}
               for t in TARGETS}
    (out / "metrics.json").write_text(json.dumps({"summary": summary, "metrics": config["metrics"],
                                                  "logrank": config["logrank"]}, indent=1), encoding="utf-8")
    (out / "config.json").write_text(json.dumps(asdict(cfg), indent=1), encoding="utf-8")
    print(f"wrote model repo {repo} and report {out / 'report.md'} in {time.time() - t0:.0f} s")
    return {"repo": repo, "summary": summary, "config": config}


def parse_args(argv: list[str] | None = None) -> Config:
    p = argparse.ArgumentParser(prog="python -m train.clinical", description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", help="cohort CSV (inputs, basfi, basdai, surgery, time_to_surgery)")
    src.add_argument("--synthetic", type=int, metavar="N", help="generate a synthetic cohort of N patients (seed --seed)")
    p.add_argument("--out", required=True, help="output folder: model/, report.md, figures/, metrics.json")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fast", action="store_true", help="tiny grids and 3-fold CV (tests, smoke runs)")
    p.add_argument("--jobs", type=int, default=1, help="parallel jobs for the grid searches")
    p.add_argument("--repo-out", help="write the model repository here instead of OUT/model")
    p.add_argument("--real-data", action="store_true", help="the data are real (do not mark the model synthetic)")
    p.add_argument("--push-to-hub", metavar="ORG/NAME", help="publish the model repo to the Hub (needs HF_TOKEN)")
    p.add_argument("--hub-tag", metavar="TAG", help="tag the published commit (with --push-to-hub), e.g. v1")
    a = p.parse_args(argv)
    if a.hub_tag and not a.push_to_hub:
        p.error("--hub-tag needs --push-to-hub ORG/NAME")
    return Config(out=a.out, data=a.data, synthetic=a.synthetic, seed=a.seed, fast=a.fast, jobs=a.jobs,
                  repo_out=a.repo_out, real_data=a.real_data, push_to_hub=a.push_to_hub, hub_tag=a.hub_tag)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    cfg = parse_args(argv)
    result = run(cfg, "python -m train.clinical " + " ".join(shlex.quote(a) for a in argv))
    if cfg.push_to_hub:
        from train.publish import publish

        pushed = publish(result["repo"], cfg.push_to_hub, tag=cfg.hub_tag)
        print(f"published {pushed.repo_id}@{pushed.commit_sha}" + (f" (tag {pushed.tag})" if pushed.tag else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
