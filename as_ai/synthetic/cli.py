"""``as-ai synth ...`` subcommands: ``pxr`` (phantom radiograph dataset), ``preview`` (contact sheet),
and ``cohort`` (synthetic clinical cohort, when available)."""
from __future__ import annotations

import argparse
import os


def add_synth_commands(ssub: argparse._SubParsersAction) -> None:
    """Register the ``synth`` subcommands on ``ssub`` (the ``synth`` sub-parsers)."""
    p = ssub.add_parser("pxr", help="write a phantom AP pelvis radiograph dataset (imagefolder + metadata.csv)",
                        description="Write train/ (centre A), external/ (centres B-D) and external_phone/ "
                        "(smartphone photos) with metadata.csv each. Synthetic data, not for clinical use. "
                        "Deterministic in --seed; existing files are kept (rerun to resume).")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--n", type=int, required=True, help="number of training images (centre A)")
    p.add_argument("--n-external", type=int, default=None, help="number of external images (default n/5)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=512, help="image size in pixels (square)")
    p.add_argument("--format", choices=("png", "dicom"), default="png")
    p.add_argument("--workers", type=int, default=max(1, min(4, os.cpu_count() or 1)))
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_pxr)

    q = ssub.add_parser("preview", help="draw a contact sheet of the phantoms (grades, mimics, centres, phone)")
    q.add_argument("--out", required=True, help="output PNG file")
    q.add_argument("--seed", type=int, default=1)
    q.add_argument("--size", type=int, default=384, help="size of each tile's source image")
    q.set_defaults(func=_run_preview)
    try:
        from .cohort import add_cohort_command
    except ImportError:
        pass
    else:
        add_cohort_command(ssub)


def _run_pxr(args: argparse.Namespace) -> int:
    from .datasets import write_pxr_dataset

    out = write_pxr_dataset(args.out, n=args.n, seed=args.seed, size=args.size, fmt=args.format,
                            workers=args.workers, n_external=args.n_external, progress=not args.quiet)
    print(f"wrote phantom dataset to {out} (train/, external/, external_phone/; synthetic)")
    return 0


def _run_preview(args: argparse.Namespace) -> int:
    from .preview import contact_sheet

    path = contact_sheet(args.out, seed=args.seed, size=args.size)
    print(f"wrote {path}")
    return 0
