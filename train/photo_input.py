"""Change how a trained diagnosis model reads photos of a screen, and re-measure it, without retraining.

    python -m train.photo_input --model as_ai/demo_models/diagnosis --data runs/bundled-ext --rectify on

``as_ai.json["photo_input"]`` says what a model does to a photo of a screen before its view: ``rectify``
(find the radiograph in the photo and make it upright, :mod:`as_ai.rectify`) and ``contrast_stretch``
(percentiles mapped to black and white). This tool sets them, re-measures what ``as_ai.json["metrics"]``
reports of the external splits (``external/``, ``external_phone/``, the softness test) as training's step 8
does, records what it did in the training notes, and rewrites the model folder (members unchanged, bit for
bit) and its card, so that the card never quotes figures of the model before the change.

``--data`` must hold the external splits the model was evaluated on (for the bundled model:
``as-ai synth pxr --out runs/bundled-ext --n 1 --n-external 200 --seed 0 --size 512``, the same phantoms
and photos as its training run's external splits).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
from pathlib import Path
from typing import Sequence


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m train.photo_input", description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="local diagnosis model folder (rewritten in place unless --out)")
    ap.add_argument("--data", required=True, help="dataset root with external/ and external_phone/")
    ap.add_argument("--rectify", choices=("on", "off"), help="find the radiograph in a photo and make it upright")
    ap.add_argument("--stretch", nargs=2, type=float, metavar=("LOW", "HIGH"),
                    help="percentiles of a photo mapped to black and white")
    ap.add_argument("--out", help="write the model here instead of in place")
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import torch

    from as_ai.diagnoser import Diagnoser
    from as_ai.transforms import photo_rectify_from_config, photo_stretch_from_config
    from train.cards import render_card
    from train.config import TrainConfig
    from train.metrics import split_metrics

    data = Path(args.data)
    if not (data / "external_phone" / "metadata.csv").is_file():
        raise SystemExit(f"{data}/external_phone/metadata.csv not found: --data must be a dataset written by "
                         "as-ai synth pxr, with the external splits the model was evaluated on")
    if args.rectify is None and args.stretch is None:
        raise SystemExit("nothing to change: give --rectify on|off and/or --stretch LOW HIGH")
    d = Diagnoser.from_pretrained(args.model)
    photo_input = dict(d.config.get("photo_input") or {})
    if args.stretch is not None:
        photo_input["contrast_stretch"] = list(args.stretch)
    if args.rectify is not None:
        photo_input["rectify"] = args.rectify == "on"
    try:
        photo_stretch_from_config(photo_input)
        photo_rectify_from_config(photo_input)
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    if photo_input.get("rectify") and not photo_input.get("contrast_stretch"):
        raise SystemExit("--rectify on needs a contrast stretch (photos are only reworked when the model stretches "
                         "them): add --stretch 0.5 99.5")
    d.config = {**d.config, "photo_input": photo_input}

    cfg = TrainConfig(**{k: v for k, v in d.config.get("training", {}).get("config", {}).items()
                         if k in {f.name for f in dataclasses.fields(TrainConfig)}})
    before = d.config.get("metrics", {}).get("external_phone", {})
    metrics = dict(d.config.get("metrics", {}))
    with torch.inference_mode():
        metrics.update(split_metrics(d, data, cfg, ("external", "external_phone")))
    after = metrics["external_phone"]
    change = ", ".join(f"{t} labels AUC {before[t]['auc']:.3f} -> {after[t]['auc']:.3f}"
                       for t in ("true", "reference") if t in before and t in after)
    training = dict(d.config.get("training", {}))
    command = " ".join(["python -m train.photo_input", *map(shlex.quote, argv if argv is not None else sys.argv[1:])])
    training["notes"] = list(training.get("notes", [])) + [
        f"photo input set after training ({command}): {json.dumps(photo_input)}; external metrics re-measured "
        f"with it (phone photos: {change or 'not measured before'}), cross-validation figures as trained"]
    d.config = {**d.config, "metrics": metrics, "training": training}
    out = Path(args.out or args.model)
    d.save_pretrained(out)  # members are float16 already: written back unchanged
    (out / "README.md").write_text(render_card(json.loads((out / "as_ai.json").read_text())), encoding="utf-8")
    print(f"photo input {json.dumps(photo_input)}; phone photos: {change}; model written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
