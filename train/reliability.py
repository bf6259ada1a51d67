"""How reliably a diagnosis model reads what users bring: entry points, exports and viewers, refusals.

    python -m train.reliability --model as_ai/demo_models/diagnosis --data runs/reliab/data \\
        --dicom runs/reliab-dcm/data --out runs/reliab/report

``--data`` is a phantom dataset (``as-ai synth pxr``; its ``external/`` split, centres B-D, is read) and
``--dicom`` the same phantoms written as DICOM (the same command with ``--format dicom``). Every image is
read through ``Diagnoser.diagnose_batch`` as a user's would be:

1. **Entry points**: float32 in [0, 1], the raw stored values as pydicom's ``pixel_array`` gives them
   (uint16, 10/12-bit), the same read as 16-bit (``bits_stored=16``, round 1's reading), an 8-bit PNG
   export, and the DICOM file (MONOCHROME1 for centres B and D). AUC against the true grades.
2. **Exports and viewers**: gain x0.25 and x4 of the stored values, offset -0.2 / +0.2 of the scale
   (clipped to [0, 1]), gamma 0.7 and 1.4, 8-bit quantisation, a window narrowed to the 1st-99th or
   2nd-98th percentile, an 8-bit JPEG export; and an inverted image. For each: the share refused (``indeterminate``, with the exposure
   fault named), the share that changed label without a refusal, the median |change of P(AS)|.

Writes ``reliability.json`` and ``reliability.md`` (the table docs/reliability.md quotes). Synthetic phantoms only.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np


def _window(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    a, b = np.percentile(x, [lo, hi])
    return np.clip((x - a) / max(b - a, 1e-6), 0.0, 1.0)


# name -> (stored uint16, bits) -> what the user hands to the library
def _entries(dicom: Path | None) -> dict[str, Callable[..., Any]]:
    out: dict[str, Callable[..., Any]] = {
        "float32 [0, 1]": lambda s, b, row: (s / (2 ** b - 1)).astype(np.float32),
        "raw uint16 (10/12-bit values)": lambda s, b, row: s,
        "raw uint16 read as 16-bit (bits_stored=16)": lambda s, b, row: _loaded(s, bits_stored=16),
        "8-bit PNG export": lambda s, b, row: _png8(s, b),
    }
    if dicom is not None:
        out["DICOM file"] = lambda s, b, row: dicom / "external" / row["file_name"].replace(".png", ".dcm")
    return out


TRANSFORMS: dict[str, Callable[[np.ndarray, int], Any]] = {
    "gain x0.25 (stored values)": lambda s, b: (s // 4).astype(np.uint16),
    "gain x4 (stored values)": lambda s, b: (s.astype(np.uint32) * 4).astype(np.uint16),
    "offset -0.2": lambda s, b: np.clip(s / (2 ** b - 1) - 0.2, 0, 1).astype(np.float32),
    "offset +0.2": lambda s, b: np.clip(s / (2 ** b - 1) + 0.2, 0, 1).astype(np.float32),
    "gamma 0.7": lambda s, b: ((s / (2 ** b - 1)) ** 0.7).astype(np.float32),
    "gamma 1.4": lambda s, b: ((s / (2 ** b - 1)) ** 1.4).astype(np.float32),
    "8-bit": lambda s, b: np.round(s / (2 ** b - 1) * 255).astype(np.uint8),
    "window 1st-99th percentile": lambda s, b: _window(s / (2 ** b - 1), 1, 99).astype(np.float32),
    "window 2nd-98th percentile": lambda s, b: _window(s / (2 ** b - 1), 2, 98).astype(np.float32),
    "8-bit JPEG export (quality 90)": lambda s, b: _jpeg8(s, b),
    "inverted": lambda s, b: (1.0 - s / (2 ** b - 1)).astype(np.float32),
}


def _loaded(stored: np.ndarray, **kw: Any) -> Any:
    from as_ai.imaging import load_radiograph

    return load_radiograph(stored, **kw)


def _png8(stored: np.ndarray, bits: int) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.round(stored / (2 ** bits - 1) * 255).astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _jpeg8(stored: np.ndarray, bits: int) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.round(stored / (2 ** bits - 1) * 255).astype(np.uint8)).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _stored(path: Path, bits: int) -> np.ndarray:
    """The detector's stored values of a data-engine PNG (written as round(v * 65535 / (2**bits - 1)))."""
    from PIL import Image

    v16 = np.asarray(Image.open(path)).astype(np.float64)
    return np.round(v16 * (2 ** bits - 1) / 65535.0).astype(np.uint16)


def _score(diagnoser: Any, srcs: list[Any]) -> tuple[np.ndarray, np.ndarray, list[list[str]]]:
    results = diagnoser.diagnose_batch(srcs, batch_size=16)
    p = np.array([r.probability for r in results])
    refused = np.array([r.label == "indeterminate" for r in results])
    issues = [list(r.check.exposure.issues) if r.check.exposure is not None else [] for r in results]
    return p, refused, issues


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m train.reliability", description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True, help="phantom dataset root (its external/ split is read)")
    ap.add_argument("--dicom", help="the same phantoms as DICOM (as-ai synth pxr --format dicom, same seed)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--n", type=int, default=None, help="use the first N external images (default all)")
    args = ap.parse_args(argv)
    import warnings

    import pandas as pd

    from as_ai.diagnosis import Diagnoser
    from as_ai.metrics import auc_ci

    warnings.filterwarnings("ignore", message=".*synthetic.*")
    d = Diagnoser.from_pretrained(args.model)
    ext = Path(args.data) / "external"
    meta = pd.read_csv(ext / "metadata.csv")
    if args.n:
        meta = meta.iloc[:args.n]
    rows = meta.to_dict("records")
    y = (meta["true_label"] == "AS").to_numpy().astype(int)
    stored = [(_stored(ext / r["file_name"], int(r["bits_stored"])), int(r["bits_stored"])) for r in rows]
    dicom = Path(args.dicom) if args.dicom else None
    report: dict[str, Any] = {"model": d.provenance, "n": len(rows), "n_as": int(y.sum()), "entry_points": {},
                              "transforms": {}}
    base_p = base_refused = None
    for name, make in _entries(dicom).items():
        p, refused, _ = _score(d, [make(s, b, r) for (s, b), r in zip(stored, rows)])
        if base_p is None:
            base_p, base_refused = p, refused
        lo, auc, hi = auc_ci(y, p)
        report["entry_points"][name] = {"auc": auc, "auc_ci": [lo, hi], "refused": float(refused.mean()),
                                        "median_abs_change": float(np.median(np.abs(p - base_p)))}
        print(f"{name}: AUC {auc:.3f} ({lo:.3f}-{hi:.3f}), refused {refused.mean():.1%}", flush=True)
    base_label = base_p >= d.threshold
    for name, change in TRANSFORMS.items():
        p, refused, issues = _score(d, [change(s, b) for s, b in stored])
        read = ~refused & ~base_refused
        flips = (p >= d.threshold) != base_label
        named = [i for i, r in zip(issues, refused) if r]
        entry = {"refused": float(refused.mean()),
                 "refused_with_named_fault": float(np.mean([bool(i) for i in named])) if named else None,
                 "faults": pd.Series([f for i in named for f in i]).value_counts().to_dict(),
                 "label_changed_unrefused": float(np.mean(flips & read)),
                 "median_abs_change": float(np.median(np.abs(p - base_p)[read])) if read.any() else None,
                 "auc_unrefused": auc_ci(y[read], p[read])[1] if read.any() and len(set(y[read])) == 2 else None}
        report["transforms"][name] = entry
        print(f"{name}: refused {entry['refused']:.1%}, label changed unrefused {entry['label_changed_unrefused']:.1%}, "
              f"median |dP| {entry['median_abs_change'] if entry['median_abs_change'] is not None else float('nan'):.4f}",
              flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "reliability.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    (out / "reliability.md").write_text(_markdown(report), encoding="utf-8")
    print(f"written to {out}/reliability.md")
    return 0


def _markdown(r: dict[str, Any]) -> str:
    def pct(v: float | None) -> str:
        return "—" if v is None else f"{v:.1%}"

    lines = [f"Model `{r['model']}`, {r['n']} external phantoms (centres B–D, {r['n_as']} with AS by the true grades).",
             "", "| entry point | AUC (95 % CI) | refused | median \\|ΔP\\| vs float32 |", "|---|---|---|---|"]
    for name, e in r["entry_points"].items():
        lines.append(f"| {name} | {e['auc']:.3f} ({e['auc_ci'][0]:.3f}–{e['auc_ci'][1]:.3f}) | {pct(e['refused'])} | "
                     f"{e['median_abs_change']:.4f} |")
    lines += ["", "| change | refused (fault named) | label changed, not refused | median \\|ΔP\\| (read) | AUC (read) |",
              "|---|---|---|---|---|"]
    for name, e in r["transforms"].items():
        faults = ", ".join(f"{k} {v}" for k, v in e["faults"].items())
        med = "—" if e["median_abs_change"] is None else f"{e['median_abs_change']:.4f}"
        auc = "—" if e["auc_unrefused"] is None else f"{e['auc_unrefused']:.3f}"
        lines.append(f"| {name} | {pct(e['refused'])}{f' ({faults})' if faults else ''} | "
                     f"{pct(e['label_changed_unrefused'])} | {med} | {auc} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
