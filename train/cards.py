"""The model card and the provenance it quotes: how, on what and with which code a model was trained.

:func:`render_card` writes a model repository's ``README.md`` from ``model_cards/diagnosis.md`` (Jinja2) and
its ``as_ai.json``; training (``train/diagnosis.py``) and the tools that change a trained model afterwards
(``train/intensity.py``, ``train/input_gate.py``, ``train/cross_view.py``) all render it so; :func:`update_repo`
changes entries of a trained model's ``as_ai.json`` and re-renders its card. :func:`training_record` is
``as_ai.json``'s ``training`` entry: the config, the command, the data's checksum and manifest, the git
commit, package versions, device, notes and timings.
"""
from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from train.config import parse_arch

if TYPE_CHECKING:
    from train.config import TrainConfig

REPO_ROOT = Path(__file__).resolve().parents[1]


def render_card(config: dict[str, Any]) -> str:
    """The model card from ``model_cards/diagnosis.md`` (Jinja2) and the repo's ``as_ai.json``."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(REPO_ROOT / "model_cards")),
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                             keep_trailing_newline=True)
    env.filters["f3"] = lambda v: "n/a" if v is None else f"{float(v):.3f}"
    env.filters["num"] = lambda v: "null" if v is None else f"{float(v):.4f}"
    env.globals["zip"] = zip
    from as_ai.diagnosis import SOFTNESS_CAUTION_RISE

    return env.get_template("diagnosis.md").render(cfg=config, m=config.get("metrics", {}),
                                                   t=config.get("training", {}), softness_rise=SOFTNESS_CAUTION_RISE)


def update_repo(model_dir: Path, edit: Any) -> dict[str, Any]:
    """Change a trained model's ``as_ai.json`` in place (``edit(config)`` mutates it; weights and checksums are
    left as they are) and re-render its card, when training rendered one. Returns the new config."""
    path = Path(model_dir) / "as_ai.json"
    cfg = json.loads(path.read_text(encoding="utf-8"))
    edit(cfg)
    path.write_text(json.dumps(cfg, indent=2) + "\n", encoding="utf-8")
    if (Path(model_dir) / "README.md").is_file() and "training" in cfg:
        (Path(model_dir) / "README.md").write_text(render_card(cfg), encoding="utf-8")
    return cfg


def training_record(cfg: TrainConfig, *, config_file: str, argv: Sequence[str], data_dir: Path, device: str,
                    num_processes: int, mixed_precision: str, kept: Sequence[str], log: list[str], minutes: float,
                    train_seconds: float, throughput: dict[str, float]) -> dict[str, Any]:
    """``as_ai.json``'s ``training``: everything the card says about how the model was made.

    ``log`` holds the run's notes (an architecture that fell back to random init is named at the start of
    one); ``train_seconds`` the seconds spent in training epochs, across resumed runs.
    """
    import torch

    import as_ai

    training = {
        "synthetic": bool(cfg.synthetic), "config": cfg.to_dict(), "config_file": str(config_file),
        "command": training_command(argv), "data_command": cfg.data_command,
        "data": data_provenance(data_dir, cfg), "git_commit": git_commit(), "as_ai_version": as_ai.__version__,
        "torch": torch.__version__, "timm": package_version("timm"), "device": device,
        "num_processes": num_processes, "mixed_precision": mixed_precision,
        "pretrained": {parse_arch(a)[0]: (f"imagenet ({parse_arch(a)[1]})" if cfg.pretrained
                                          and not any(l.startswith(a + ":") for l in log) else "scratch") for a in kept},
        "final_models": cfg.final, "notes": log, "minutes": minutes,
        "training_minutes": round(train_seconds / 60, 1),  # across resumed runs
        "throughput_img_per_s": throughput,
    }
    if cfg.member_labels:  # the labels each kept member learned, for the card
        training["member_labels"] = {parse_arch(a)[0]: cfg.member_labels.get(parse_arch(a)[0], cfg.label_column)
                                     for a in cfg.archs if a in kept}
    return training


def training_command(argv: Sequence[str]) -> str:
    """The training command as typed, without --resume (resuming does not change the result)."""
    return " ".join(shlex.quote(a) for a in ["python", "train/diagnosis.py", *argv] if a != "--resume")


def data_provenance(data_dir: Path, cfg: TrainConfig) -> dict[str, Any]:
    """Where the training data came from: its folder, the metadata's SHA-256 and the data engine's manifest."""
    from as_ai.hub import sha256_file

    prov: dict[str, Any] = {"dir": str(data_dir), "train_split": cfg.train_split,
                            "label_column": cfg.label_column, "max_images": cfg.max_images}
    meta = data_dir / cfg.train_split / "metadata.csv"
    prov["train_metadata_sha256"] = sha256_file(meta)
    for name in ("dataset.json", "synth.json", "manifest.json", "dataset_info.json"):
        for p in (data_dir / name, data_dir / cfg.train_split / name):
            if p.is_file():
                try:
                    prov["manifest"] = json.loads(p.read_text(encoding="utf-8"))
                except ValueError:
                    pass
    return prov


def git_commit() -> str | None:
    """The repository's commit, ``-dirty`` when the working tree has changes; None outside git."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                             timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return (sha + ("-dirty" if dirty else "")) or None
    except (OSError, subprocess.SubprocessError):
        return None


def package_version(mod: str) -> str | None:
    """``mod.__version__``, or None when it is not installed."""
    try:
        return __import__(mod).__version__
    except ImportError:
        return None


def folder_mb(folder: Path) -> float:
    """The size of everything under ``folder``, in MB."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6
