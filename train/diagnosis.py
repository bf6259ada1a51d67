#!/usr/bin/env python
"""Train the diagnosis CNN ensemble the way the reference study did, and write a model repository.

    python train/diagnosis.py --config train/configs/demo.yaml --data data/pxr --out runs/pxr
    accelerate launch train/diagnosis.py --config train/configs/paper.yaml --data data/pxr --out runs/paper

Reads top to bottom (:func:`main`; each step's code lives in the module named beside it):
  1. config   typed :class:`TrainConfig` from YAML (``--set key=value`` overrides), saved as OUT/config.yaml
              (train/config.py)
  2. seed     everything seeded before the split
  3. data     DATA/train/metadata.csv + image files (the Hugging Face ``imagefolder`` layout); every file is
              read with ``as_ai.imaging.load_radiograph`` (PNG, JPEG, TIFF or DICOM -- ``datasets``' own
              imagefolder loader cannot decode DICOM), resized once and kept in memory (train/data.py)
  4. CV       per architecture, stratified k-fold (the same folds for all): train with early stopping
              on the validation AUC (train/loop.py), fold metrics (AUC, accuracy, precision, recall, F1),
              out-of-fold (OOF) probabilities
  5. rank     architectures by mean CV AUC, keep the top k
  6. final    ``final: refit`` retrains each kept architecture on all training images for the median of its
              best fold epochs (no validation set left, so no early stopping); ``final: common_fold`` keeps
              every architecture's model of one fold, the fold with the best mean validation AUC (cheaper;
              each saw (k-1)/k of the data); ``final: best_fold`` keeps each architecture's best fold model
  7. ensemble combine OOF probabilities (mean / AUC-weighted), fit the calibration (temperature or Platt)
              and the decision threshold (Youden) on them -- never on data the models were trained on.
              With ``common_fold`` they are fitted on that fold's validation images, which no member
              trained on, from the shipped members' own predictions (pooled OOF would mix in the other
              folds' models, which are not shipped and may have trained worse) (train/ensemble_fit.py)
  8. evaluate any extra splits present (e.g. DATA/external, DATA/external_phone) against the reference
              labels and, when the data engine wrote them, the true labels (train/metrics.py)
  9. save     OUT/model: members in timm format, as_ai.json, README.md from model_cards/diagnosis.md
              (train/cards.py)
 10. publish  optional ``--push-to-hub org/name`` (train/publish.py)

Accelerate style: bf16 autocast on GPU, channels-last, gradient accumulation, cosine schedule with linear
warm-up, ``save_state`` checkpoints in OUT/checkpoints (``--resume`` continues; never published), tqdm bars,
optional TensorBoard (``tensorboard: true``). Everything trained on synthetic data is marked so.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import yaml

if __package__ in (None, ""):            # run as a script (accelerate launch train/diagnosis.py): find train.*
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from train.cards import folder_mb, render_card, training_record  # noqa: E402
from train.config import TrainConfig, parse_arch  # noqa: E402
from train.data import fit_intensity_reference, read_split  # noqa: E402
from train.ensemble_fit import (calibration_labels, common_fold, cv_metrics, fit_ensemble, member_labels,  # noqa: E402
                                oof_table)
from train.loop import epoch_seconds, fit_one  # noqa: E402
from train.metrics import fold_metrics, split_metrics  # noqa: E402


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from accelerate.utils import set_seed
    from sklearn.model_selection import StratifiedKFold

    from as_ai.diagnosis import Diagnoser
    from as_ai.transforms import Preprocess

    # 1. config
    cfg = TrainConfig.load(args.config, args.set)
    out = Path(args.out)
    data_dir = Path(args.data)
    accelerator, mp = start_accelerator(cfg, out)
    started = time.time()
    log: list[str] = []

    # 2. seed
    set_seed(cfg.seed)

    # 3. data
    pp = Preprocess.from_dict(cfg.preprocess)
    if pp.intensity != "none" and "intensity_reference" not in cfg.preprocess:
        pp = fit_intensity_reference(data_dir / cfg.train_split, pp)
        accelerator.print(f"intensity {pp.intensity}: reference (low, high, median) {pp.intensity_reference} "
                          f"from the training images")
    size = pp.crop
    train = read_split(data_dir / cfg.train_split, cfg, pp, [size], train_size=True, phone=cfg.phone_augment > 0,
                       limit=cfg.max_images, desc="train images")
    accelerator.print(f"{len(train.y)} training images ({int(train.y.sum())} AS by {cfg.label_column!r}); "
                      f"archs {cfg.archs}; {cfg.folds}-fold CV; device {accelerator.device}; precision {mp}")
    folds = list(StratifiedKFold(cfg.folds, shuffle=True, random_state=cfg.seed).split(np.zeros(len(train.y)), train.y))
    calibration_labels(train, cfg)  # a bad calibration_label_column fails now, not after training
    labels = member_labels(train, cfg)  # and so does a bad member_labels column
    for name, column in (cfg.member_labels or {}).items():
        accelerator.print(f"{name} trains on {column!r}")

    # 4. cross-validation per architecture
    cv: dict[str, dict[str, Any]] = {}   # arch -> {"oof", "folds": [per fold], "mean_auc", "std_auc"}
    train_seconds = 0.0  # summed over epochs, also those of earlier (resumed) runs
    for arch in cfg.archs:
        oof = np.full(len(train.y), np.nan)
        results = []
        for k, (tr, va) in enumerate(folds):
            r = fit_one(accelerator, arch, cfg, train, tr, va, size=size, pp=pp, epochs=cfg.epochs,
                        ckpt=out / "checkpoints" / arch / f"fold{k}", resume=args.resume, log=log, tag=f"{arch} f{k}",
                        y=labels[arch])
            oof[va] = r.val_prob
            train_seconds += epoch_seconds(r.history, len(tr))
            results.append({**fold_metrics(train.y[va], r.val_prob), "best_epoch": r.best_epoch,
                            "history": r.history, "model": r.model, "augment_from": r.augment_from})
        aucs = [r["auc"] for r in results]
        cv[arch] = {"oof": oof, "folds": results, "mean_auc": float(np.mean(aucs)), "std_auc": float(np.std(aucs))}
        accelerator.print(f"{arch}: CV AUC {np.mean(aucs):.4f} ± {np.std(aucs):.4f}")

    # 5. rank and keep the top k
    ranked = sorted(cfg.archs, key=lambda a: cv[a]["mean_auc"], reverse=True)
    kept = ranked[:cfg.top_k]
    accelerator.print("ranking by mean CV AUC: " + ", ".join(f"{a} {cv[a]['mean_auc']:.4f}" for a in ranked))

    # 6. final models
    members: dict[str, torch.nn.Module] = {}
    common = common_fold([[r["auc"] for r in cv[a]["folds"]] for a in kept]) if cfg.final == "common_fold" else None
    for arch in kept:
        if common is not None:
            members[arch] = cv[arch]["folds"][common]["model"]
        elif cfg.final == "best_fold":
            members[arch] = max(cv[arch]["folds"], key=lambda r: r["auc"])["model"]
        else:
            epochs = max(1, int(np.median([r["best_epoch"] for r in cv[arch]["folds"]])))
            starts = [r["augment_from"] for r in cv[arch]["folds"] if r.get("augment_from") is not None]
            r = fit_one(accelerator, arch, cfg, train, np.arange(len(train.y)), None, size=size, pp=pp, epochs=epochs,
                        ckpt=out / "checkpoints" / arch / "final", resume=args.resume, log=log, tag=f"{arch} final",
                        augment_from=int(np.median(starts)) if starts else 1, y=labels[arch])
            members[arch] = r.model
            train_seconds += epoch_seconds(r.history, len(train.y))

    # 7. ensemble: combine OOF -> calibration -> threshold
    photo_input = {"photo_input": {"contrast_stretch": [float(v) for v in cfg.photo_stretch],
                                   **({"rectify": True} if cfg.photo_rectify else {})}} if cfg.photo_stretch else {}
    fit = fit_ensemble(cv, kept, folds, common, train, cfg, pp, size)
    cs = fit.calibration_set
    accelerator.print(f"calibration ({cfg.calibration}) and threshold {fit.threshold:.3f} fitted on {cs['images']}, "
                      f"labels {cs['labels']!r} ({cs['n']} predictions, AUC {cs['auc']:.4f}, ECE {cs['ece']:.4f})")
    if accelerator.is_main_process:  # for analysis (e.g. other calibrations); never published
        oof_table(train, folds, fit, cv, kept).to_csv(out / "oof.csv", index=False)
    metrics: dict[str, Any] = {"cv": cv_metrics(cv, ranked, kept, train, cfg, common, fit)}

    names = {a: parse_arch(a)[0] for a in kept}
    diagnoser = Diagnoser({names[a]: members[a] for a in kept}, archs={names[a]: parse_arch(a)[2] for a in kept},
                          preprocess=pp, weights={names[a]: fit.weights[a] for a in kept},
                          cv_aucs={names[a]: fit.cv_aucs[a] for a in kept}, combine=cfg.combine,
                          calibration=fit.calibration, threshold=fit.threshold, config=photo_input)

    # 8. evaluate extra splits (external centres, phone photos) when present, on the training device
    diagnoser.to(accelerator.device)
    metrics.update(split_metrics(diagnoser, data_dir, cfg, cfg.eval_splits, log=accelerator.print))

    # 9. save the model repository
    training = training_record(
        cfg, config_file=args.config, argv=argv if argv is not None else sys.argv[1:], data_dir=data_dir,
        device=str(accelerator.device), num_processes=accelerator.num_processes, mixed_precision=mp, kept=kept,
        log=log, minutes=round((time.time() - started) / 60, 1), train_seconds=train_seconds,
        throughput={a: float(np.mean([h["img_per_s"] for r in cv[a]["folds"] for h in r["history"]]))
                    for a in cfg.archs})
    diagnoser.config = {**photo_input, "metrics": metrics, "training": training}
    diagnoser.to("cpu")
    if accelerator.is_main_process:
        dtype = {"float16": torch.float16, "float32": torch.float32, "bfloat16": torch.bfloat16}[cfg.save_dtype]
        model_dir = out / "model"
        diagnoser.save_pretrained(model_dir, dtype=dtype)  # writes as_ai.json first (the card reads it)
        card = render_card(json.loads((model_dir / "as_ai.json").read_text()))
        (model_dir / "README.md").write_text(card, encoding="utf-8")
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2), encoding="utf-8")
        accelerator.print(f"model written to {model_dir} ({folder_mb(model_dir):.1f} MB) in "
                          f"{training['minutes']} min")
    accelerator.wait_for_everyone()
    accelerator.end_training()

    # 10. publish
    if args.push_to_hub and accelerator.is_main_process:
        try:
            from train.publish import publish
        except ImportError as exc:
            raise SystemExit(f"--push-to-hub needs train/publish.py ({exc})") from exc
        publish(out / "model", args.push_to_hub, tag=args.tag)
    return 0


def start_accelerator(cfg: TrainConfig, out: Path) -> tuple[Any, str]:
    """Step 1's end: the torch threads, the accelerator and its mixed precision, OUT/config.yaml written."""
    from accelerate import Accelerator

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    mp = cfg.mixed_precision if cfg.mixed_precision != "auto" else ("bf16" if torch.cuda.is_available() else "no")
    accelerator = Accelerator(cpu=not torch.cuda.is_available(), mixed_precision=mp, gradient_accumulation_steps=cfg.grad_accum,
                              log_with="tensorboard" if cfg.tensorboard else None, project_dir=str(out / "logs"))
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False), encoding="utf-8")
    if cfg.tensorboard:
        accelerator.init_trackers(cfg.name, config={k: str(v) for k, v in cfg.to_dict().items()})
    return accelerator, mp


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Train the as-ai diagnosis CNN ensemble (k-fold CV, top-k ensemble, "
                                "calibration, model repo).")
    p.add_argument("--config", required=True, help="YAML config (train/configs/demo.yaml, paper.yaml)")
    p.add_argument("--data", required=True, help="dataset root holding train/metadata.csv (+ external/, ...)")
    p.add_argument("--out", required=True, help="run folder: config.yaml, checkpoints/, metrics.json, model/")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints")
    p.add_argument("--push-to-hub", metavar="ORG/NAME", help="publish OUT/model with train.publish")
    p.add_argument("--tag", help="tag for --push-to-hub")
    return p


if __name__ == "__main__":
    sys.exit(main())
