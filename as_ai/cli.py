"""The ``as-ai`` console command.

Each subcommand's arguments are declared in its own ``_add_*`` function, which dispatches to a
``run_*`` function that lives next to the machinery it drives (imported lazily, so ``as-ai --help``
stays fast and one broken optional dependency does not break every command).
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from .errors import AsAiError


def _add_synth(sub: argparse._SubParsersAction) -> None:
    synth = sub.add_parser("synth", help="generate synthetic data (phantom radiographs, clinical cohort)")
    ssub = synth.add_subparsers(dest="synth_command", required=True)
    # Subcommands are added by the synthetic data engine (see as_ai/synthetic/cli.py).
    try:
        from .synthetic.cli import add_synth_commands
    except ImportError:  # pragma: no cover - while the engine is being built
        return
    add_synth_commands(ssub)


def _add_diagnose(sub: argparse._SubParsersAction) -> None:
    try:
        from .diagnosis_cli import add_diagnose_command
    except ImportError:  # pragma: no cover
        return
    add_diagnose_command(sub)


def _add_triage(sub: argparse._SubParsersAction) -> None:
    try:
        from .clinical_cli import add_triage_command
    except ImportError:  # pragma: no cover
        return
    add_triage_command(sub)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``as-ai`` (all subcommands)."""
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="as-ai",
        description="as-ai: AI for ankylosing spondylitis on pelvic radiographs and clinical data. "
        "Research use only; the bundled models are trained on synthetic phantoms.")
    parser.add_argument("--version", action="version", version=f"as-ai {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_synth(sub)
    _add_diagnose(sub)
    _add_triage(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: parse arguments, run the subcommand, turn as-ai errors into one clear line."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except AsAiError as exc:
        print(f"as-ai: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # pragma: no cover
        print("as-ai: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
