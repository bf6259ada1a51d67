"""Fit the input gate of a diagnosis repo, choose its threshold on held-out data, store it, report.

    python -m train.input_gate --model runs/pxr/model --data data/pxr [--report runs/pxr/gate.json]

1. Read the phantom dataset written by ``as-ai synth pxr``: ``train/`` (training centre),
   ``external/`` (unseen centres) and ``external_phone/`` (phone photos of the external images).
2. Split the training images (seeded) into a fitting part and a held-out part; add a simulated phone
   photo of every training image (``as_ai.synthetic.phone``, levels 1-4) -- the model is meant to read
   phone photos, so they are part of what the gate must accept.
3. Fit the gate's two parts (a descriptor of the grey picture, the ensemble's penultimate features;
   see ``as_ai._gate``) on the fitting part; set each part's limit to ``margin`` x the ``quantile`` of
   its held-out distances (``InputGate.calibrate``); the defaults (the largest held-out distance x 1.25)
   leave room for unseen centres, whose phone photos lie further out than the training centre's.
4. Write ``input_gate.safetensors`` into the model folder, record the gate in ``as_ai.json["input_gate"]``
   and its sha256 in ``as_ai.json["files"]``.
5. Measure: false-abstain rate on the external phantoms and on their phone photos, abstain rate on the
   out-of-distribution set of :mod:`train._ood`, per category; print and write them as JSON.

Nothing from ``external/``, ``external_phone/`` or the OOD set is used to fit or to set the threshold.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path
from itertools import chain
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from as_ai.hub import CONFIG_NAME, sha256_file


def _load_split(folder: Path) -> list[tuple[str, dict]]:
    """(file path, metadata row) of every image of a dataset split; files are read by load_radiograph,
    as a user's upload would be (EXIF orientation of phone photos applied, DICOM windowed)."""
    from as_ai.synthetic.datasets import read_split

    return [(row["path"], row) for row in read_split(folder).to_dict("records")]


def _inputs(diagnoser, images: Iterable[Any], batch: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """(penultimate features (N, D), image descriptors (N, 93)) of images, as the diagnoser sees them.

    Images are read and described a batch at a time, so that thousands of them never sit in memory.
    """
    from as_ai._gate import image_descriptor
    from as_ai.imaging import load_radiograph

    feats, descs, chunk = [], [], []

    def flush() -> None:
        rgs = [load_radiograph(im) for im in chunk]
        feats.append(diagnoser.features(rgs))
        descs.extend(image_descriptor(rg.pixels) for rg in rgs)
        chunk.clear()

    for im in images:
        chunk.append(im)
        if len(chunk) == batch:
            flush()
    if chunk:
        flush()
    if not feats:
        return np.zeros((0, 0), np.float32), np.zeros((0, 0), np.float32)
    return np.concatenate(feats), np.stack(descs)


def _photos(images: Sequence[Any], *, seed: int, per_image: int = 1) -> Iterator[np.ndarray]:
    """``per_image`` simulated phone photos (levels 1-4 in turn) of every image (paths or arrays)."""
    from as_ai.imaging import load_radiograph
    from as_ai.synthetic.phone import photograph

    for i, src in enumerate(images):
        im = load_radiograph(src).pixels
        for j in range(per_image):
            k = i * per_image + j
            yield photograph(im, level=1 + k % 4, seed=seed * 100_003 + k)


def fit_gate(diagnoser, train_images: Sequence[Any], *, seed: int = 0, heldout: float = 0.25,
             quantile: float = 1.0, margin: float = 1.25, feature_components: int = 16,
             image_components: int = 12, features_refuse: bool = False):
    """Fit an :class:`~as_ai.quality.InputGate` on training images (+ phone photos); limits on held-out.

    Fitting part: each image and 2 phone photos of it; held-out part: each image and 3 phone photos
    (more photos than images, since photos vary more and the limit sits in the tail).
    """
    from as_ai.quality import InputGate

    rng = np.random.default_rng(seed)
    order = rng.permutation(len(train_images))
    n_hold = max(4, int(round(heldout * len(order))))
    hold_idx, fit_idx = order[:n_hold], order[n_hold:]
    fit_imgs = [train_images[i] for i in fit_idx]
    hold_imgs = [train_images[i] for i in hold_idx]
    fit_f, fit_d = _inputs(diagnoser, chain(fit_imgs, _photos(fit_imgs, seed=seed + 1, per_image=2)))
    hold_f, hold_d = _inputs(diagnoser, chain(hold_imgs, _photos(hold_imgs, seed=seed + 2, per_image=3)))
    gate = InputGate.fit(features=fit_f, descriptors=fit_d, feature_components=feature_components,
                         image_components=image_components, features_refuse=features_refuse)
    gate.calibrate(features=hold_f, descriptors=hold_d, quantile=quantile, margin=margin)
    gate.info.update({"n_fit": int(len(fit_f)), "fitted_on": "training-centre phantoms and simulated phone photos "
                      "of them (synthetic)", "features": "penultimate (pre-logit) features of every member, "
                      "concatenated; image descriptor of the grey picture (as_ai._gate.image_descriptor)",
                      "synthetic": True})
    return gate


def store_gate(model_dir: Path, gate) -> dict[str, Any]:
    """Write the gate into ``model_dir`` and register it (entry + sha256) in ``as_ai.json``."""
    entry = gate.save(model_dir)
    cfg_path = model_dir / CONFIG_NAME
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    cfg["input_gate"] = entry
    files = dict(cfg.get("files", {}))
    files[entry["file"]] = sha256_file(model_dir / entry["file"])
    cfg["files"] = dict(sorted(files.items()))
    cfg_path.write_text(json.dumps(cfg, indent=2) + "\n", encoding="utf-8")
    return entry


def record_evaluation(model_dir: Path, report: dict[str, Any], *, command: str) -> None:
    """Keep the gate's headline measures in ``as_ai.json`` and re-render the model card with them."""
    from train.cards import update_repo

    summary: dict[str, Any] = {"command": command}
    for split in ("external", "external_phone"):
        if split in report:
            summary[f"{split}_false_abstain_rate"] = report[split]["false_abstain_rate"]
            summary[f"{split}_n"] = report[split]["n"]
    if "ood" in report:
        summary["ood_abstain_rate"] = report["ood"]["abstain_rate"]
        summary["ood_n"] = report["ood"]["n"]
        summary["ood_by_category"] = report["ood"]["by_category"]

    def keep(cfg: dict[str, Any]) -> None:
        cfg["input_gate"]["evaluation"] = summary

    update_repo(model_dir, keep)


def evaluate(diagnoser, gate, data: Path, *, ood_variants: int = 4) -> dict[str, Any]:
    """False-abstain rates on external phantoms / phone photos and abstain rates on the OOD set."""
    from train._ood import ood_images

    report: dict[str, Any] = {"threshold": gate.threshold}
    for split in ("external", "external_phone"):
        folder = data / split
        if not (folder / "metadata.csv").is_file():
            continue
        items = _load_split(folder)
        feats, descs = _inputs(diagnoser, [im for im, _ in items])
        scores = gate.score(feats, descriptors=descs)
        refused = scores > gate.threshold
        by_group: dict[str, list[bool]] = defaultdict(list)
        for (_, row), r in zip(items, refused):
            key = str(row.get("center")) + (f"/level{row['phone_level']}" if "phone_level" in row else "")
            by_group[key].append(bool(r))
        report[split] = {"n": int(len(scores)), "false_abstain_rate": float(refused.mean()),
                         "score_median": float(np.median(scores)), "score_max": float(scores.max()),
                         "by_group": {k: float(np.mean(v)) for k, v in sorted(by_group.items())}}
    ood = ood_images(variants=ood_variants)
    feats, descs = _inputs(diagnoser, [im for _, _, im in ood])
    parts = gate.distances(feats, descriptors=descs)  # every part, refusing or advisory
    scores = gate.score(feats, descriptors=descs)
    refused = scores > gate.threshold
    cats: dict[str, list[bool]] = defaultdict(list)
    for (cat, _, _), r in zip(ood, refused):
        cats[cat].append(bool(r))
    report["ood"] = {"n": int(len(scores)), "abstain_rate": float(refused.mean()),
                     "abstain_rate_by_part": {k: float((v > gate.threshold).mean()) for k, v in parts.items()},
                     "by_category": {k: float(np.mean(v)) for k, v in sorted(cats.items())},
                     "accepted": [name for (_, name, _), r in zip(ood, refused) if not r]}
    return report


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, type=Path, help="diagnosis model folder (written in place)")
    ap.add_argument("--data", required=True, type=Path, help="dataset folder of `as-ai synth pxr`")
    ap.add_argument("--report", type=Path, default=None, help="write the measures as JSON here")
    ap.add_argument("--quantile", type=float, default=1.0, help="of held-out distances (1.0 = the largest)")
    ap.add_argument("--margin", type=float, default=1.25, help="limit = margin x that quantile")
    ap.add_argument("--feature-components", type=int, default=16)
    ap.add_argument("--image-components", type=int, default=12)
    ap.add_argument("--features-refuse", action="store_true",
                    help="let the features part refuse too (default: it only adds a caution; see as_ai._gate)")
    ap.add_argument("--max-train", type=int, default=None, help="use at most this many training images")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--evaluate-only", action="store_true", help="measure the gate already in the model")
    args = ap.parse_args(argv)

    import warnings

    from as_ai.diagnosis import Diagnoser
    from as_ai.errors import NoInputGateWarning

    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoInputGateWarning)  # "no input gate yet" is expected here
        diagnoser = Diagnoser.from_pretrained(args.model)
    if args.evaluate_only:
        gate = diagnoser.gate
        if gate is None:
            print(f"{args.model} has no input gate; run without --evaluate-only to fit one.", file=sys.stderr)
            return 2
    else:
        train = [im for im, _ in _load_split(args.data / "train")]
        if args.max_train:
            train = train[: args.max_train]
        gate = fit_gate(diagnoser, train, seed=args.seed, quantile=args.quantile, margin=args.margin,
                        feature_components=args.feature_components, image_components=args.image_components,
                        features_refuse=args.features_refuse)
        entry = store_gate(args.model, gate)
        print(f"input gate stored in {args.model}: limits {entry['limits']}, fitted on {entry['n_fit']} images, "
              f"held-out abstain rate {entry['heldout_abstain_rate']:.3f}")
    report = evaluate(diagnoser, gate, args.data)
    report["seconds"] = round(time.perf_counter() - t0, 1)
    if not args.evaluate_only:
        record_evaluation(args.model, report, command=" ".join(["python -m train.input_gate", *map(str, argv or sys.argv[1:])]))
    text = json.dumps(report, indent=2)
    print(text)
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
