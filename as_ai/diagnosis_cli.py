"""``as-ai diagnose FILES...``: score radiographs in batches, print or write JSON / CSV.

    as-ai diagnose a.png b.dcm scans/ [--json | --csv out.csv] [--batch-size 16] [--model M] [--revision R]

Folders are expanded to the image files inside them (recursively, sorted). A file that cannot be read
as a radiograph gets a row with its error and the others are still scored; the exit code is then 1.

For archives larger than one machine the same command runs under ``accelerate launch --multi_gpu`` (several
GPUs or nodes) or ``torchrun --nproc_per_node N -m as_ai.cli diagnose ...`` (CPU processes): the files are
split across processes with ``PartialState().split_between_processes`` and the rows gathered into one
output written by the main process, in input order. Each process runs the members on its own GPU
(``--device auto``, the default: the process's accelerator device, else CUDA when torch sees one, else the
CPU); decoding and image checks stay on the CPU.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
from pathlib import Path
from typing import Any, Sequence

from .result import SIDE_COLUMNS as RESULT_SIDE_COLUMNS, side_columns

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".dcm", ".dicom"}
BASE_COLUMNS = ["file", "label", "probability", "threshold", "spread", "in_distribution", "gate_score",
                "finding", "reasons", "model", "error"]
SIDE_COLUMNS = list(RESULT_SIDE_COLUMNS)   # written when a joint reader is configured (--joints or the model's own)


def add_diagnose_command(sub: argparse._SubParsersAction) -> None:
    """Register ``diagnose`` on the ``as-ai`` sub-parsers (sets ``func=run_diagnose``)."""
    p = sub.add_parser(
        "diagnose", help="score AP pelvic radiographs with the CNN ensemble (P(AS), label, input checks)",
        description="Score AP pelvic radiographs (PNG, JPEG, TIFF, DICOM; folders are searched) with the "
        "diagnosis ensemble. Research use only; the bundled model is phantom-trained.")
    p.add_argument("files", nargs="+", help="image files or folders")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print one JSON list of results")
    out.add_argument("--csv", metavar="OUT", help="write a CSV file (one row per image)")
    p.add_argument("--batch-size", type=int, default=16, help="images per forward pass (default 16)")
    p.add_argument("--model", help="model repo: local folder or Hub repo id (default: AS_AI_DIAGNOSIS_MODEL "
                   "or the bundled demo)")
    p.add_argument("--revision", help="Hub revision (tag or commit) to pin")
    p.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    p.add_argument("--device", default="auto", help="where the members run: auto (a GPU when torch sees one; "
                   "under accelerate, the process's own), cpu, cuda or cuda:N (default auto)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--joints", nargs="?", const="bundled", metavar="READER",
                   help="also find and grade both sacroiliac joints (0-4 per side, P(modified New York)) with the "
                   "joint reader in folder READER (default: the bundled phantom-trained one); adds sij_* columns")
    p.set_defaults(func=run_diagnose)


def expand_files(items: Sequence[str]) -> list[str]:
    """Files as given; folders replaced by the image files inside them (recursive, sorted)."""
    out: list[str] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            out += sorted(str(p) for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            out.append(item)
    return out


def run_diagnose(args: argparse.Namespace) -> int:
    """Score ``args.files``; returns 0 when every file was scored, 1 when some could not be read."""
    import warnings

    import torch

    from . import hub
    from .diagnoser import Diagnoser
    from .errors import InvalidImageError
    from .decoding import load_radiograph

    if args.batch_size < 1:
        raise SystemExit(f"as-ai diagnose: --batch-size must be >= 1, got {args.batch_size}")
    if args.threads:
        torch.set_num_threads(args.threads)
    files = expand_files(args.files)
    if not files:
        print("as-ai diagnose: no image files found in " + ", ".join(args.files), file=sys.stderr)
        return 1

    state = _partial_state()
    device = _device(args.device, state)
    model_id = args.model or hub.default_model_id("diagnosis")
    diagnoser = Diagnoser.from_pretrained(model_id, args.revision)
    if getattr(args, "joints", None):
        diagnoser.attach_joint_reader(args.joints)
    try:
        diagnoser.to(device)
    except ValueError as exc:
        raise SystemExit(f"as-ai diagnose: --device: {exc}") from None
    if state is None or state.is_main_process:
        hub.warn_if_demo(diagnoser.resolved)
    else:
        warnings.filterwarnings("ignore", module=__name__)

    indexed = list(enumerate(files))
    if state is not None and state.num_processes > 1:
        with state.split_between_processes(indexed) as part:
            mine = list(part)
    else:
        mine = indexed
    show = not args.no_progress and (state is None or state.is_main_process)
    rows = _score(diagnoser, mine, batch_size=args.batch_size, progress=show,
                  load=load_radiograph, invalid=(InvalidImageError,))
    if state is not None and state.num_processes > 1:
        from accelerate.utils import gather_object

        rows = gather_object(rows)
        if not state.is_main_process:
            return 0
    rows = [r for _, r in sorted(rows, key=lambda t: t[0])]
    names = diagnoser.ensemble.names

    if args.json:
        print(json.dumps([r["json"] for r in rows], indent=2))
    elif args.csv:
        write_csv(args.csv, [r["flat"] for r in rows], members=names, sides=diagnoser.joint_reader is not None)
        print(f"wrote {len(rows)} rows to {args.csv}", file=sys.stderr)
    else:
        for r in rows:
            j = r["json"]
            if "error" in j:
                print(f"{j['file']}: ERROR {j['error']}")
            else:
                print(f"{j['file']}: {j['label']} (P(AS) = {j['probability']:.3f}, threshold {j['threshold']:.3f}) "
                      f"- {j['finding']}")
                for reason in j["check"]["reasons"]:  # cautions and advice, one per line under the finding
                    print(f"    - {reason}")
                if j.get("sides"):
                    print("    sacroiliac joints: " + ", ".join(
                        f"{k} grade {v['grade']}" + ("" if v["found"] else " (not found)")
                        for k, v in j["sides"]["sides"].items())
                        + f"; P(modified New York criterion) {j['sides']['mny_probability']:.3f}")
    failed = sum("error" in r["json"] for r in rows)
    if failed:
        print(f"as-ai diagnose: {failed} of {len(rows)} file(s) could not be read", file=sys.stderr)
    return 1 if failed else 0


def _score(diagnoser: Any, items: list[tuple[int, str]], *, batch_size: int, progress: bool, load: Any,
           invalid: tuple[type, ...]) -> list[tuple[int, dict[str, Any]]]:
    """Load, batch and score; rows carry their input index so gathered results can be re-ordered."""
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(items), unit="img", desc="diagnose", file=sys.stderr)
    rows: list[tuple[int, dict[str, Any]]] = []
    pending: list[tuple[int, str, Any]] = []

    def flush() -> None:
        if not pending:
            return
        results = diagnoser.diagnose_batch([rg for _, _, rg in pending], batch_size=len(pending))
        for (i, f, _), d in zip(pending, results):
            rows.append((i, _row(f, d)))
        if bar is not None:
            bar.update(len(pending))
        pending.clear()

    try:
        for i, f in items:
            try:
                pending.append((i, f, load(f)))
            except invalid as exc:
                rows.append((i, _error_row(f, exc)))
                if bar is not None:
                    bar.update(1)
            if len(pending) >= batch_size:
                flush()
        flush()
    finally:
        if bar is not None:
            bar.close()
    return rows


def _row(file: str, d: Any) -> dict[str, Any]:
    j = {"file": file, **d.to_dict()}
    flat = {"file": file, "label": d.label, "probability": f"{d.probability:.6f}", "threshold": f"{d.threshold:.6f}",
            "spread": f"{d.spread:.6f}", "in_distribution": d.check.in_distribution,
            "gate_score": "" if d.check.score is None else f"{d.check.score:.4f}", "finding": d.finding,
            "reasons": " | ".join(d.check.reasons), "model": d.model, "error": ""}
    flat.update({f"member_{n}": f"{p:.6f}" for n, p in d.members.items()})
    if getattr(d, "sides", None) is not None:
        flat.update({k: _csv_value(k, v) for k, v in side_columns(d.sides).items()})
    return {"json": j, "flat": flat}


def _csv_value(column: str, v: Any) -> Any:
    """A side column as the CSV writes it: flags and grades as they are, box corners to 0.1 px, the localiser's
    confidence to 4 decimals, probabilities to 6."""
    if isinstance(v, (bool, int)):
        return v
    digits = 1 if column[-2:] in ("x0", "y0", "x1", "y1") else 4 if column.endswith("_confidence") else 6
    return f"{v:.{digits}f}"


def _error_row(file: str, exc: Exception) -> dict[str, Any]:
    reason = getattr(exc, "reason", type(exc).__name__)
    return {"json": {"file": file, "error": str(exc), "reason": reason},
            "flat": {"file": file, "error": f"{reason}: {exc}"}}


def write_csv(path: str | os.PathLike, rows: Sequence[dict[str, Any]], *, members: Sequence[str],
              sides: bool = False) -> None:
    """One row per image: BASE_COLUMNS, ``member_<name>`` columns, then (``sides``) the per-side SIDE_COLUMNS."""
    columns = BASE_COLUMNS + [f"member_{n}" for n in members] + (SIDE_COLUMNS if sides else [])
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", restval="")
    w.writeheader()
    w.writerows(rows)
    Path(path).write_text(buf.getvalue(), encoding="utf-8")


def _device(choice: str, state: Any) -> str:
    """The device the members run on: ``auto`` picks the accelerate process's device, else CUDA if present."""
    import torch

    if choice != "auto":
        return choice
    if state is not None:
        return str(state.device)
    return "cuda" if torch.cuda.is_available() else "cpu"


def _partial_state() -> Any:
    """accelerate's PartialState when running under ``accelerate launch`` (None without accelerate)."""
    if not any(k in os.environ for k in ("ACCELERATE_MIXED_PRECISION", "LOCAL_RANK", "WORLD_SIZE")):
        return None
    try:
        import torch
        from accelerate import PartialState
    except ImportError:
        return None
    # cpu=True lets CPU-only processes started by torchrun / accelerate form a gloo group
    return PartialState(cpu=not torch.cuda.is_available())


__all__ = ["add_diagnose_command", "run_diagnose", "expand_files", "write_csv", "SIDE_COLUMNS"]
