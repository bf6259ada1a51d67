"""Train and measure the joint reader (issue 20): SI-joint localiser + per-side ordinal grader, on phantoms.

Commands (2 CPU cores; about 3 min for the data, about 11 min for this script on shared cores)::

    as-ai synth pxr --out runs/joints-data --n 1000 --n-external 600 --seed 0 --size 512 --workers 2
    python -m train.joints --data runs/joints-data --out runs/joints --bundle as_ai/demo_models/joints

Steps, top to bottom: config -> data (train split into fit / validation by seed; each training image also gets
a simulated phone photo of itself) -> intensity references -> localiser (heatmaps; acquisition jitter, zoom /
shift / rotation, phone photos, cropped films, images with no pelvis) -> grader (ordinal cumulative logits on
jittered crops around the TRUE boxes, against the TRUE grades) -> temperature on validation crops from the
PREDICTED boxes -> the localiser's confidence threshold (validation phantoms vs the out-of-distribution set of
``train/_ood.py``) -> external evaluation through the public reader (centres B-D, and phone photos of them) ->
``metrics.json``, the model folder and, with ``--bundle``, a copy in the package. Synthetic data only: the
model is for demonstration and research, not for clinical use.
"""
from __future__ import annotations

import argparse
import json
import shutil
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from as_ai.joints._view import box_iou, intensity_preprocess, standardise
from as_ai.joints.grader import GraderConfig, JointGrader, ordinal_probabilities
from as_ai.joints.localiser import JointLocaliser, LocaliserConfig, decode
from as_ai.joints.reader import JointReader
from as_ai.metrics import cohen_kappa
from as_ai.synthetic.datasets import read_split
from as_ai.transforms import intensity_reference
from train import _joints_eval as ev
from train._joints_data import load_items
from train._joints_fit import fit_temperature, grader_crops, train_grader, train_localiser

COMMAND = "python -m train.joints --data runs/joints-data --out runs/joints --bundle as_ai/demo_models/joints"


@dataclass
class JointsConfig:
    """Everything the run depends on (saved into metrics.json and the model's joints.json)."""

    seed: int = 0
    val_fraction: float = 0.15
    max_train: int | None = None
    max_external: int | None = None
    short_edge: int = 128
    stride: int = 4
    loc_width: int = 16
    loc_epochs: int = 30
    loc_lr: float = 3e-3
    phone_share: float = 0.3
    neg_share: float = 0.05
    crop: tuple[int, int] = (112, 80)
    margin: float = 0.12
    grader_width: int = 16
    grader_epochs: int = 20
    grader_lr: float = 2e-3
    grader_phone_share: float = 0.2
    batch: int = 32
    workers: int = 2
    in_keep: float = 0.99     # share of validation phantoms (clean, phone levels 1-3) the confidence threshold keeps
    ood_reject: float = 0.95  # and share of the OOD fitting half it rejects (the threshold lies midway)


def _log(msg: str) -> None:
    print(msg, flush=True)


def localise_items(net, items, pp, cfg: JointsConfig) -> list[list[tuple]]:
    """Predicted (box in original pixels, confidence) per side of every item, in batches of equal view size."""
    out = []
    net.eval()
    with torch.inference_mode():
        for it in items:
            o = net(standardise(it.view, pp)[None])
            (bl, cl), (br, cr) = decode(o, stride=cfg.stride, short_edge=cfg.short_edge)[0]
            sx, sy = it.scale
            out.append([((b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy), c) for b, c in ((bl, cl), (br, cr))])
    return out


def iou_rate(pred, items) -> float:
    return float(np.mean([box_iou(p[s][0], it.boxes[s]) >= 0.5 for p, it in zip(pred, items) for s in (0, 1)]))


def loc_score(pred, items) -> float:
    """What picks the localiser's epoch: the IoU >= 0.5 rate, ties broken by the mean IoU."""
    mean_iou = float(np.mean([box_iou(p[s][0], it.boxes[s]) for p, it in zip(pred, items) for s in (0, 1)]))
    return iou_rate(pred, items) + 0.1 * mean_iou


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, type=Path, help="folder written by `as-ai synth pxr`")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--bundle", type=Path, default=None, help="also copy the model folder here")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override a JointsConfig field")
    ap.add_argument("--evaluate", type=Path, default=None, metavar="MODEL",
                    help="only re-measure the reader in MODEL (written by this script) on the external splits")
    args = ap.parse_args(argv)
    cfg = JointsConfig()
    for kv in args.set:
        k, v = kv.split("=", 1)
        value = json.loads(v)
        cfg = replace(cfg, **{k: tuple(value) if isinstance(value, list) else value})
    t_start = time.time()
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(max(1, cfg.workers))
    args.out.mkdir(parents=True, exist_ok=True)

    # --- data ------------------------------------------------------------------------------------------
    ext = read_split(args.data / "external").to_dict("records")[: cfg.max_external]
    ext_phone = read_split(args.data / "external_phone").to_dict("records")[: cfg.max_external]
    if args.evaluate is not None:
        reader = JointReader.load(args.evaluate)
        metrics = ev.evaluate_external(reader, ext, ext_phone, log=_log)
        metrics["confidence_threshold"] = reader.config.get("confidence_threshold", {})
        cfg = JointsConfig(**{k: tuple(v) if isinstance(v, list) else v
                              for k, v in reader.config["training"]["config"].items()})
        return finish(reader, metrics, cfg, args.evaluate, args, t_start)
    rows = read_split(args.data / "train").to_dict("records")[: cfg.max_train]
    rng = np.random.default_rng([cfg.seed, 7])
    is_val = rng.random(len(rows)) < cfg.val_fraction
    _log(f"data: {len(rows)} training images ({int(is_val.sum())} for validation), {len(ext)} external, "
         f"{len(ext_phone)} external phone photos")
    t0 = time.time()
    items, phones = load_items(rows, short_edge=cfg.short_edge, workers=cfg.workers, phone=True, seed=cfg.seed)
    fit = [it for it, v in zip(items, is_val) if not v]
    fit_ph = [it for it, v in zip(phones, is_val) if not v]
    val = [it for it, v in zip(items, is_val) if v]
    val_ph = [it for it, v in zip(phones, is_val) if v]
    _log(f"  loaded and photographed in {time.time() - t0:.0f} s")

    # --- intensity references (measured on the fitting images, as the whole-image model's are) -----------
    window = (1.0, 99.0)
    loc_ref = intensity_reference([it.view[0].numpy() for it in fit], window)
    gcfg = GraderConfig(crop=tuple(cfg.crop), margin=cfg.margin, width=cfg.grader_width, intensity_window=window)
    raw_crops, _ = grader_crops(fit, gcfg)
    gcfg = replace(gcfg, intensity_reference=intensity_reference(raw_crops[:, 0], window))
    loc_pp = intensity_preprocess(window, loc_ref)
    g_pp = intensity_preprocess(window, gcfg.intensity_reference)

    # --- localiser ---------------------------------------------------------------------------------------
    _log(f"localiser: {cfg.loc_epochs} epochs on {len(fit)} images (+ phone photos {cfg.phone_share:.0%})")
    t0 = time.time()
    net = train_localiser(fit, fit_ph, pp=loc_pp, epochs=cfg.loc_epochs, batch=cfg.batch, lr=cfg.loc_lr,
                          phone_share=cfg.phone_share, neg_share=cfg.neg_share, short_edge=cfg.short_edge,
                          stride=cfg.stride, width=cfg.loc_width, seed=cfg.seed,
                          validate=lambda n: (loc_score(localise_items(n, val, loc_pp, cfg), val)
                                              + loc_score(localise_items(n, val_ph, loc_pp, cfg), val_ph)) / 2,
                          log=_log)
    t_loc = time.time() - t0
    lcfg = LocaliserConfig(short_edge=cfg.short_edge, stride=cfg.stride, width=cfg.loc_width,
                           intensity_window=window, intensity_reference=loc_ref)
    localiser = JointLocaliser(net, lcfg)
    pred_val, pred_val_ph = localise_items(net, val, loc_pp, cfg), localise_items(net, val_ph, loc_pp, cfg)
    _log(f"  validation IoU>=0.5: clean {iou_rate(pred_val, val):.4f}, phone {iou_rate(pred_val_ph, val_ph):.4f} "
         f"({t_loc:.0f} s)")

    # --- grader --------------------------------------------------------------------------------------------
    def grader_val(n) -> float:
        x, y = grader_crops(val, gcfg)
        with torch.inference_mode():
            n.eval()
            score, th = n(standardise(x, g_pp))
            pred = ordinal_probabilities(score, th).argmax(1)
        return float(cohen_kappa(y.numpy(), pred.numpy(), weights="quadratic").kappa)

    _log(f"grader: {cfg.grader_epochs} epochs on {2 * len(fit)} joints (crops {cfg.crop[0]}x{cfg.crop[1]})")
    t0 = time.time()
    gnet = train_grader(fit, fit_ph, gcfg, pp=g_pp, epochs=cfg.grader_epochs, batch=cfg.batch, lr=cfg.grader_lr,
                        phone_share=cfg.grader_phone_share, seed=cfg.seed, validate=grader_val, log=_log)
    t_grader = time.time() - t0
    # temperature: clean validation crops from the PREDICTED boxes, as the reader sees a radiograph (fitted on
    # photos too, one temperature left clean radiographs under-confident, their own optimum being sharper)
    x, y = grader_crops(val, gcfg, boxes=[[p[0][0], p[1][0]] for p in pred_val])
    with torch.inference_mode():
        score, th = gnet(standardise(x, g_pp))
    temperature = fit_temperature(score, th, y)
    gcfg = replace(gcfg, temperature=temperature)
    _log(f"  temperature {temperature:.3f} ({t_grader:.0f} s)")

    # --- the localiser's confidence threshold: validation phantoms vs images that are no AP pelvis -----------
    # fitted on half of the OOD set (alternate images), measured on the other half
    from train._ood import ood_images
    in_conf = np.array([min(p[0][1], p[1][1]) for p in pred_val]
                       + [min(p[0][1], p[1][1]) for p, it in zip(pred_val_ph, val_ph) if it.row["phone_level"] < 4])
    ood = ood_images(seed=cfg.seed)
    ood_conf = np.array([min(b.confidence for b in localiser(img)) for _, _, img in ood])
    fit_half = np.arange(len(ood)) % 2 == 0
    q_in = float(np.quantile(in_conf, 1 - cfg.in_keep, method="lower"))
    q_ood = float(np.quantile(ood_conf[fit_half], cfg.ood_reject, method="higher"))
    min_conf = (q_in + q_ood) / 2 if q_ood < q_in else q_in   # midway; where they overlap, keep the phantoms
    by_cat: dict[str, list] = {}
    for (cat, _, _), c in zip(ood, ood_conf):
        by_cat.setdefault(cat, []).append(bool(c < min_conf))
    threshold_info = {"min_confidence": round(min_conf, 4), "validation_q01": round(q_in, 4),
                      "ood_fit_q": round(q_ood, 4),
                      "in_distribution_kept": round(float((in_conf >= min_conf).mean()), 4), "n_in": len(in_conf),
                      "ood_rejected_held_out": round(float((ood_conf[~fit_half] < min_conf).mean()), 4),
                      "ood_rejected": round(float((ood_conf < min_conf).mean()), 4), "n_ood": len(ood),
                      "ood_rejected_by_category": {k: round(float(np.mean(v)), 3) for k, v in sorted(by_cat.items())}}
    _log(f"  min_confidence {min_conf:.3f}: keeps {threshold_info['in_distribution_kept']:.3f} of validation "
         f"phantoms, rejects {threshold_info['ood_rejected_held_out']:.3f} of the held-out OOD half "
         f"({len(ood)} OOD images in all)")

    # --- the reader, saved; then external evaluation through it ------------------------------------------
    training = {"synthetic": True, "data": str(args.data), "command": COMMAND, "config": asdict(cfg),
                "n_fit": len(fit), "n_val": len(val), "seconds": {"localiser": round(t_loc), "grader": round(t_grader)}}
    localiser = JointLocaliser(net, replace(lcfg, training=training))
    reader = JointReader(localiser, JointGrader(gnet, replace(gcfg, training=training)), min_confidence=min_conf,
                         config={"training": training, "confidence_threshold": threshold_info})
    model_dir = args.out / "model"
    reader.save(model_dir)
    reader = JointReader.load(model_dir)        # evaluate what was written
    t0 = time.time()
    metrics = ev.evaluate_external(reader, ext, ext_phone, log=_log)
    metrics["confidence_threshold"] = threshold_info
    metrics["seconds"] = {"localiser": round(t_loc), "grader": round(t_grader), "evaluation": round(time.time() - t0),
                          "total": round(time.time() - t_start)}
    return finish(reader, metrics, cfg, model_dir, args, t_start)


def finish(reader: JointReader, metrics: dict, cfg: JointsConfig, model_dir: Path, args, t_start: float) -> dict:
    """Write metrics.json, the figures into joints.json and the model card; copy to ``--bundle``; print the table."""
    from train._joints_card import card

    metrics["config"] = asdict(cfg)
    metrics["temperature"] = reader.grader.config.temperature
    metrics["synthetic"] = True
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    reader.config["metrics"] = {k: metrics[k] for k in ("external", "external_by_centre", "external_phone")}
    reader.config["confidence_threshold"] = metrics["confidence_threshold"]
    reader.save(model_dir, card=card(metrics, COMMAND))
    if args.bundle is not None:
        shutil.rmtree(args.bundle, ignore_errors=True)
        shutil.copytree(model_dir, args.bundle)
    _log("\n" + ev.table(metrics))
    _log(f"\nwrote {args.out / 'metrics.json'} and {model_dir} in {time.time() - t_start:.0f} s")
    return metrics


if __name__ == "__main__":
    main()
