"""NormLIME over a dataset, and how faithful each explanation method is.

    python -m train.explain --model runs/pxr/model --data data/pxr --out runs/pxr/normlime

1. **NormLIME** (PaddleX's form, as the reference study used it): LIME on ``--n`` images of
   ``--split`` (superpixels as in ``as_ai.explain.lime``); each superpixel is described by the mean of an
   early feature map of the heaviest ensemble member and the descriptions are clustered (k-means,
   ``--clusters``); every LIME weight ``w`` of an image adds ``w**2 / sum|w|`` to its cluster, and a
   cluster's global importance is the mean of what it received. Written to ``--out`` as
   ``normlime.safetensors`` + ``normlime.json``: what ``as_ai.explain.normlime(d, image, OUT)`` needs.
2. **Faithfulness** (``--faithfulness K``): on K AS phantoms of ``--faith-split`` (default the
   external centres), per method (Grad-CAM, LIME, NormLIME; baselines: superpixels and single pixels in
   random order): the deletion-curve
   AUC (P(AS) as the top-ranked pixels are blurred away; lower = more faithful) and the SI-joint hit
   rate (the strongest region lies in an SI-joint ROI, ``meta["rois"]``), with the hit rate a random
   point would have. Written to ``--out/faithfulness.json`` and printed.

Everything here is computed on synthetic phantoms with a phantom-trained model, and says so.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np


def _rows(data: Path, split: str, *, n: int | None, seed: int, only_as: bool = False) -> list[dict]:
    from as_ai.synthetic.datasets import read_split

    df = read_split(data / split)
    if only_as:
        col = "true_label" if "true_label" in df else "label"
        df = df[df[col] == "AS"]
    rows = df.to_dict("records")
    order = np.random.default_rng(seed).permutation(len(rows))
    rows = [rows[i] for i in order]
    return rows[:n] if n else rows


def fit_normlime(diagnoser, images: Sequence[Any], *, num_samples: int, n_segments: int, clusters: int,
                 seed: int = 0, info: dict | None = None):
    """Fit :class:`as_ai.explain.NormLime` on LIME runs over ``images``."""
    from as_ai import explain as ex

    members, _ = ex.ensemble_view(diagnoser)
    member = max(members, key=lambda m: m[2])
    layer, stride = ex.early_layer(member[1])
    weights, feats = [], []
    for i, im in enumerate(images):
        w, f, _ = ex.lime_with_features(diagnoser, im, num_samples=num_samples, n_segments=n_segments, seed=seed + i,
                                        member=member[0])
        weights.append(w)
        feats.append(f)
    meta = {"member": member[0], "layer": layer, "layer_stride": stride, "n_segments": n_segments,
            "num_samples": num_samples, "label": "AS", "model": diagnoser.provenance, "synthetic": True,
            **(info or {})}
    return ex.NormLime.fit(weights, feats, clusters=clusters, seed=seed, info=meta)


def faithfulness(diagnoser, rows: Sequence[dict], normlime, *, num_samples: int, steps: int = 20,
                 seed: int = 0) -> dict[str, Any]:
    """Deletion AUCs and SI-joint hit rates per method on phantoms with ROIs."""
    from as_ai import _lime, explain as ex
    from as_ai.imaging import load_radiograph
    from train.faithfulness import deletion_curve, si_joint_hit

    methods = ("gradcam", "lime", "normlime", "random_regions", "random_pixels")
    aucs: dict[str, list[float]] = {m: [] for m in methods}
    hits: dict[str, list[bool]] = {m: [] for m in methods}
    chance, times = [], {m: [] for m in methods}
    rng = np.random.default_rng(seed)
    n_seg = int(normlime.info.get("n_segments", _lime.N_SEGMENTS)) if normlime is not None else _lime.N_SEGMENTS
    for i, row in enumerate(rows):
        rg = load_radiograph(row["path"])
        rois = row["rois"]
        t0 = time.perf_counter()
        maps = {"gradcam": ex.gradcam(diagnoser, rg).heatmap}
        times["gradcam"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        w, f, setup = ex.lime_with_features(diagnoser, rg, num_samples=num_samples, n_segments=n_seg, seed=seed + i,
                                            member=None if normlime is None else normlime.info.get("member"))
        times["lime"].append(time.perf_counter() - t0)
        maps["lime"] = ex.superpixel_explanation("lime", setup, w, 0.0, 0.0, {}).heatmap
        if normlime is not None:
            maps["normlime"] = ex.superpixel_explanation("normlime", setup, normlime.combine(w, f), 0.0, 0.0, {}).heatmap
        seen = ex.to_input_grid(np.ones((setup.preprocess.crop,) * 2, np.float32), rg.shape, setup.preprocess,
                                mode="nearest") > 0.5
        # baselines: superpixels (the regions LIME ranks) in random order, which removes compact regions
        # like the methods do; and single pixels in random order, which sprinkles blurred dots all over
        # (a different kind of damage: reported, but not the yardstick)
        maps["random_regions"] = ex.to_input_grid(rng.random(int(setup.segments.max()) + 1)[setup.segments],
                                                  rg.shape, setup.preprocess, mode="nearest")
        maps["random_pixels"] = np.where(seen, rng.random(rg.shape), 0.0)
        box = np.zeros(rg.shape, bool)
        for k in ("sij_left", "sij_right"):
            x0, y0, x1, y1 = rois[k]
            box[y0:y1, x0:x1] = True
        chance.append(float((box & seen).sum() / seen.sum()))
        for m, hm in maps.items():
            aucs[m].append(deletion_curve(diagnoser, rg, None if m == "random_pixels" else hm, steps=steps,
                                             seed=seed + i).auc)
            hits[m].append(si_joint_hit(hm, rois))
    return {
        "n_images": len(rows), "num_samples": num_samples, "deletion_steps": steps,
        "deletion_auc": {m: {"mean": float(np.mean(v)), "sd": float(np.std(v))} for m, v in aucs.items() if v},
        "si_joint_hit_rate": {m: float(np.mean(v)) for m, v in hits.items() if v},
        "si_joint_chance_rate": float(np.mean(chance)),
        "seconds_per_image": {m: float(np.mean(v)) for m, v in times.items() if v},
        "note": "phantom radiographs and a phantom-trained model (synthetic); lower deletion AUC = more faithful; "
                "random_regions = LIME's superpixels ranked at random (the baseline a method should beat), "
                "random_pixels = single pixels ranked at random",
    }


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, type=Path, help="diagnosis model folder or Hub id")
    ap.add_argument("--data", required=True, type=Path, help="dataset folder of `as-ai synth pxr`")
    ap.add_argument("--out", required=True, type=Path, help="folder for normlime.* and faithfulness.json")
    ap.add_argument("--split", default="train", help="split NormLIME is computed over")
    ap.add_argument("--n", type=int, default=60, help="images for NormLIME")
    ap.add_argument("--num-samples", type=int, default=500, help="LIME samples per image")
    ap.add_argument("--n-segments", type=int, default=64)
    ap.add_argument("--clusters", type=int, default=12)
    ap.add_argument("--faithfulness", type=int, default=0, metavar="K", help="also measure on K AS phantoms")
    ap.add_argument("--faith-split", default="external")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    from as_ai.diagnosis import Diagnoser
    from as_ai.errors import NoInputGateWarning

    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoInputGateWarning)
        diagnoser = Diagnoser.from_pretrained(args.model)
    rows = _rows(args.data, args.split, n=args.n, seed=args.seed)
    if not rows:
        print(f"no images in {args.data / args.split}", file=sys.stderr)
        return 2
    nl = fit_normlime(diagnoser, [r["path"] for r in rows], num_samples=args.num_samples,
                      n_segments=args.n_segments, clusters=args.clusters, seed=args.seed,
                      info={"split": args.split, "images": len(rows)})
    nl.info["seconds"] = round(time.perf_counter() - t0, 1)
    nl.save(args.out)
    rel = nl.importance / max(float(nl.importance.max()), 1e-30)
    print(f"NormLIME over {len(rows)} images of {args.split!r} -> {args.out} (cluster importances relative to "
          f"the largest: {[round(float(v), 3) for v in sorted(rel, reverse=True)]})")
    if args.faithfulness:
        frows = _rows(args.data, args.faith_split, n=args.faithfulness, seed=args.seed + 1, only_as=True)
        report = faithfulness(diagnoser, frows, nl, num_samples=args.num_samples, seed=args.seed)
        report["split"] = args.faith_split
        text = json.dumps(report, indent=2)
        (args.out / "faithfulness.json").write_text(text + "\n", encoding="utf-8")
        print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
