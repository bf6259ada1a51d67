"""``as-ai triage``: triage one patient given as JSON, or every patient of a CSV file.

    as-ai triage --json '{"age": 41, "male": true, "crp": 12.0, ...}'
    as-ai triage --csv patients.csv --out results.csv --keep patient_id
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

from .errors import InvalidPatientError, SyntheticModelWarning

_ID_COLUMNS = ("patient_id", "id")


def add_triage_command(sub: argparse._SubParsersAction) -> None:
    """Register ``as-ai triage`` on the top-level sub-parsers."""
    p = sub.add_parser(
        "triage", help="predict BASFI/BASDAI and the surgical-risk group from clinical variables",
        description="Predict BASFI and BASDAI with prediction intervals and place the patient in a higher- or "
        "lower-risk group for surgery. Research use only; the bundled model is trained on synthetic data.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--json", metavar="OBJECT", help="one patient as a JSON object of field -> value")
    src.add_argument("--csv", type=Path, metavar="FILE", help="a CSV with one patient per row")
    src.add_argument("--fields", action="store_true", help="list the fields the model reads, then exit")
    p.add_argument("--out", type=Path, help="with --csv: write results here (default: print CSV to stdout)")
    p.add_argument("--keep", action="append", default=[], metavar="COLUMN",
                   help="with --csv: copy this column to the output unchecked (e.g. an id); repeatable. "
                   "patient_id / id are kept automatically")
    p.add_argument("--ignore-unknown", action="store_true",
                   help="with --csv: drop columns the model does not read instead of refusing them")
    p.add_argument("--text", action="store_true", help="with --json: print a readable summary instead of JSON")
    p.add_argument("--curves", action="store_true", help="with --json: include the risk curves in the JSON")
    p.add_argument("--model", help="model folder or Hub repo id (default: AS_AI_TRIAGE_MODEL or the bundled demo)")
    p.add_argument("--revision", help="Hub revision (tag or commit) to pin")
    p.set_defaults(func=run_triage)


def _triager(args: argparse.Namespace):
    from . import hub
    from .clinical import Triager

    model_id = args.model or hub.default_model_id("triage")
    triager = hub.cached("triage", model_id, args.revision, lambda: Triager.from_pretrained(model_id, args.revision))
    if triager.resolved is not None:
        with warnings.catch_warnings(record=True) as caught:  # shown as one plain line, not a code location
            warnings.simplefilter("always", SyntheticModelWarning)
            hub.warn_if_demo(triager.resolved)
        for w in caught:
            print(f"as-ai: note: {w.message}", file=sys.stderr)
    return triager


def run_triage(args: argparse.Namespace) -> int:
    """Run ``as-ai triage``; returns the exit code (errors raise and become one line in ``as_ai.cli``)."""
    if args.json is not None:
        try:
            patient = json.loads(args.json)
        except json.JSONDecodeError as exc:
            raise InvalidPatientError(f"--json is not valid JSON ({exc.msg} at position {exc.pos}); pass one object "
                                      "such as '{\"age\": 41, \"male\": true}'", fields={}) from exc
        if not isinstance(patient, dict):
            raise InvalidPatientError(f"--json must be one JSON object of field -> value, got {type(patient).__name__}",
                                      fields={})
        result = _triager(args)(patient)
        if args.text:
            print(result.summary())
        else:
            d = result.to_dict()
            if not args.curves:
                d.pop("curves")
            print(json.dumps(d, indent=1))
        return 0

    triager = _triager(args)
    if args.fields:
        for f in triager.schema.features:
            rule = f.describe() + ("; may be missing (imputed)" if f.imputable else "; required")
            print(f"{f.name:22s} {f.label} — {rule}")
        for f in triager.schema.other:
            print(f"{f.name:22s} {f.label} — accepted but not used by this model")
        return 0

    import pandas as pd

    try:
        frame = pd.read_csv(args.csv)
    except (OSError, ValueError) as exc:
        raise InvalidPatientError(f"cannot read {args.csv} as CSV ({exc})", fields={}) from exc
    keep = list(dict.fromkeys(args.keep + [c for c in _ID_COLUMNS if c in frame.columns]))
    absent = [c for c in keep if c not in frame.columns]
    if absent:
        raise InvalidPatientError(f"--keep names columns that {args.csv} lacks: {', '.join(absent)}",
                                  fields={c: "column not in the CSV" for c in absent})
    inputs = frame.drop(columns=keep)
    if args.ignore_unknown:
        unknown = [c for c in inputs.columns if c not in triager.schema.names]
        if unknown:
            print(f"as-ai triage: ignoring columns the model does not read: {', '.join(unknown)}", file=sys.stderr)
        inputs = inputs.drop(columns=unknown)
    result = pd.concat([frame[keep], triager.predict_frame(inputs)], axis=1)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        result.to_csv(args.out, index=False)
        n_high = int((result["risk"] == "high").sum())
        print(f"triaged {len(result)} patients ({n_high} in a higher-risk group) -> {args.out}", file=sys.stderr)
    else:
        result.to_csv(sys.stdout, index=False)
    return 0


__all__ = ["add_triage_command", "run_triage"]
