"""How well the radiograph is found in phone photos, and what reading it rectified does to the diagnosis.

    python -m train.rectify_eval --data runs/joints-data --n 600 [--model as_ai/demo_models/diagnosis]

On the ``external_phone`` split of an ``as-ai synth pxr`` dataset (phone photos of the external phantoms,
levels 1-4) it measures, per photo level:

1. **Corners**: :func:`as_ai.rectify.find_radiograph` against the simulator's own corners
   (``as_ai.synthetic.phone.image_corners``): share found, share within 2 % of the side (issue #21's goal),
   median and 95th-percentile error, milliseconds per photo.
2. **AUC**: the diagnosis model on each photo as it is (what ``diagnose()`` does today), and on the photo
   rectified (cut out and made upright at the photo's resolution, contrast stretched to its 0.5th-99.5th
   percentiles), against the true labels; and on the original files, for the drop.

Prints both tables and writes them to ``--out`` (JSON) when given. Phantom data and a phantom-trained model:
synthetic, not for clinical use.
"""
from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from PIL import Image, ImageOps

STRETCH = (0.5, 99.5)


def corner_error(found: np.ndarray, true: np.ndarray) -> float:
    """The worst corner's distance from the truth, as a share of the mean side."""
    side = np.mean([np.hypot(*(true[k] - true[(k + 1) % 4])) for k in range(4)])
    return float(np.max(np.hypot(*(np.asarray(found, float) - true).T)) / side)


def stretched(grey: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(grey, STRETCH)
    return np.clip((grey - lo) / max(float(hi - lo), 1e-6), 0, 1).astype(np.float32)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, type=Path, help="dataset folder of `as-ai synth pxr`")
    ap.add_argument("--n", type=int, default=600, help="photos to read (the first n)")
    ap.add_argument("--model", default=None, help="diagnosis model (default: the bundled demo)")
    ap.add_argument("--out", type=Path, default=None, help="write the tables here as JSON")
    args = ap.parse_args(argv)

    import as_ai
    from as_ai.errors import SyntheticModelWarning
    from as_ai.metrics import auc_ci
    from as_ai.rectify import find_radiograph, rectify
    from as_ai.synthetic.phone import image_corners

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SyntheticModelWarning)
        model = as_ai.load_diagnoser(args.model)
    photos = pd.read_csv(args.data / "external_phone" / "metadata.csv").head(args.n)
    files = pd.read_csv(args.data / "external" / "metadata.csv").head(args.n)
    rows = []
    for r in photos.itertuples():
        path = args.data / "external_phone" / r.file_name
        photo = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))
        t0 = time.perf_counter()
        quad = find_radiograph(photo)
        ms = 1000 * (time.perf_counter() - t0)
        true = image_corners((r.size, r.size), r.phone_level, r.seed, out_size=photo.shape[0])
        rows.append(dict(level=r.phone_level, y=int(r.true_label == "AS"), found=quad.found, ms=ms,
                         error=corner_error(quad.corners, true), as_is=model(path).probability,
                         rectified=model(stretched(rectify(photo, quad))).probability))
    d = pd.DataFrame(rows)
    d["within_2pct"] = d.found & (d.error <= 0.02)
    clean = np.array([model(args.data / "external" / f).probability for f in files.file_name])
    y_all = (files.true_label == "AS").astype(int).to_numpy()

    def auc(y, p) -> float | None:   # None where a level has fewer than two cases of a class
        y = np.asarray(y)
        return round(float(auc_ci(y, p)[1]), 3) if min(y.sum(), len(y) - y.sum()) >= 2 else None

    corners = {str(lv): dict(n=int(len(g)), found=round(float(g.found.mean()), 3),
                             within_2pct=round(float(g.within_2pct.mean()), 3),
                             median_error=round(float(g.error.median()), 4),
                             p95_error=round(float(g.error.quantile(0.95)), 4), ms=round(float(g.ms.median()), 1))
               for lv, g in d.groupby("level")}
    corners["all"] = dict(n=int(len(d)), found=round(float(d.found.mean()), 3),
                          within_2pct=round(float(d.within_2pct.mean()), 3),
                          median_error=round(float(d.error.median()), 4),
                          p95_error=round(float(d.error.quantile(0.95)), 4), ms=round(float(d.ms.median()), 1))
    aucs = {str(lv): dict(n=int(len(g)), as_is=auc(g.y, g.as_is), rectified=auc(g.y, g.rectified))
            for lv, g in d.groupby("level")}
    aucs["all"] = dict(n=int(len(d)), as_is=auc(d.y, d.as_is), rectified=auc(d.y, d.rectified),
                       files=auc(y_all, clean))
    print("corners (share within 2 % of the side; error as a share of the side):")
    print(pd.DataFrame(corners).T.to_string())
    print("\nAUC against the true labels (files: the same phantoms' original files):")
    print(pd.DataFrame(aucs).T.to_string())
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"corners": corners, "auc": aucs, "model": model.provenance,
                                        "note": "phantom photos, phantom-trained model (synthetic)"}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
