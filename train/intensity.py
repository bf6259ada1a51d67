"""Give a trained diagnosis model the intensity standardisation, and re-measure it, without retraining.

    python -m train.intensity --model as_ai/demo_models/diagnosis --data runs/demo-diagnosis/data --window 10 90

1. Measure the reference on the training split (``train/``, the training centre): each image cut as the
   model's view cuts it, without the standardisation itself (``train.data.fit_intensity_reference``).
2. Set ``preprocess.intensity = "window_gamma"`` with that reference and ``--window``; from now on every
   path that reads an image for this model (``as_ai.transforms``) standardises each crop's grey levels.
3. Re-measure what ``as_ai.json["metrics"]`` reports of the external splits (``external/``,
   ``external_phone/``, the softness test), as training's step 8 does, so the card never quotes figures of
   the model before the change; the cross-validation figures stay as trained and the card says so.
4. Rewrite the model folder (members unchanged, bit for bit) and re-render its card.

Refit the input gate afterwards (``python -m train.input_gate``): the members' features of an image move a
little with the new view.
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
    ap = argparse.ArgumentParser(prog="python -m train.intensity", description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="local diagnosis model folder (rewritten in place unless --out)")
    ap.add_argument("--data", required=True, help="dataset root with train/ (and external/, external_phone/)")
    ap.add_argument("--window", nargs=2, type=float, default=(10.0, 90.0), metavar=("LOW", "HIGH"),
                    help="percentiles of each crop that set its window (default 10 90)")
    ap.add_argument("--max-images", type=int, default=300, help="training images the reference is measured on")
    ap.add_argument("--out", help="write the model here instead of in place")
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import torch

    from as_ai.diagnosis import Diagnoser
    from as_ai.transforms import Preprocess
    from train.cards import render_card
    from train.config import TrainConfig
    from train.data import fit_intensity_reference
    from train.metrics import split_metrics

    data = Path(args.data)
    if not (data / "train" / "metadata.csv").is_file():
        raise SystemExit(f"{data}/train/metadata.csv not found: --data must be a dataset written by as-ai synth pxr")
    d = Diagnoser.from_pretrained(args.model)
    try:
        wanted = Preprocess.from_dict({**d.preprocess.to_dict(), "intensity": "window_gamma",
                                       "intensity_window": list(args.window)})
    except Exception as exc:  # ModelLoadError names the bad value
        raise SystemExit(f"--window: {exc}") from None
    pp = fit_intensity_reference(data / "train", wanted, limit=args.max_images)
    print(f"intensity window {pp.intensity_window}, reference (low, high, median) {pp.intensity_reference}")
    d.set_preprocess(pp)

    cfg = TrainConfig(**{k: v for k, v in d.config.get("training", {}).get("config", {}).items()
                         if k in {f.name for f in dataclasses.fields(TrainConfig)}})
    metrics = dict(d.config.get("metrics", {}))
    with torch.inference_mode():
        metrics.update(split_metrics(d, data, cfg, ("external", "external_phone")))
    training = dict(d.config.get("training", {}))
    training["notes"] = list(training.get("notes", [])) + [
        f"intensity standardisation added after training ({' '.join(['python -m train.intensity', *map(shlex.quote, argv or sys.argv[1:])])}): "
        f"window {list(pp.intensity_window)} percentiles, reference {list(pp.intensity_reference)}; external "
        "metrics re-measured with it, cross-validation figures as trained"]
    d.config = {**d.config, "metrics": metrics, "training": training}
    out = Path(args.out or args.model)
    d.save_pretrained(out)  # members are float16 already: written back unchanged
    (out / "README.md").write_text(render_card(json.loads((out / "as_ai.json").read_text())), encoding="utf-8")
    print(f"model written to {out}; refit its input gate: python -m train.input_gate --model {out} --data {data}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
