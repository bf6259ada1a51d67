"""Reading and writing the diagnosis model repository's files (private machinery of :mod:`as_ai.diagnoser`).

Layout (DESIGN.md)::

    as_ai.json                      kind, format_version, labels, members, combine, preprocess,
                                    calibration, threshold, metrics, training, files (sha256)
    members/<name>/config.json      timm config: architecture, num_classes, label_names, pretrained_cfg
    members/<name>/model.safetensors
    README.md                       model card

A member folder is a plain timm checkpoint: ``timm.create_model(arch, pretrained=True,
pretrained_cfg_overlay=dict(file=".../model.safetensors"), num_classes=2)`` loads it, and so does
``transformers.AutoModelForImageClassification.from_pretrained(repo, subfolder="members/<name>")``.
Weights may be stored in float16 to halve the size; they are loaded into float32 modules.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from .errors import ModelLoadError
from .hub import CONFIG_NAME, sha256_file
from .preprocess import Preprocess, scaled_for_size
from .repo_config import LABELS, MEMBER_CONFIG, WEIGHTS_NAME, DiagnosisRepoConfig, MemberEntry, repo_error


def member_config(model: nn.Module, *, arch: str, input_size: int, mean: Sequence[float], std: Sequence[float],
                  crop_pct: float, label_names: Sequence[str], interpolation: str = "bilinear") -> dict[str, Any]:
    """The timm ``config.json`` of one member (architecture, classes, labels, preprocessing)."""
    num_classes = int(getattr(model, "num_classes", len(label_names)))
    mean3 = [float(v) for v in mean] * (3 if len(mean) == 1 else 1)
    std3 = [float(v) for v in std] * (3 if len(std) == 1 else 1)
    cfg: dict[str, Any] = {
        "architecture": arch,
        "num_classes": num_classes,
        "label_names": list(label_names),
        "pretrained_cfg": {
            "input_size": [3, int(input_size), int(input_size)],
            "fixed_input_size": False,
            "interpolation": interpolation,
            "crop_pct": float(crop_pct),
            "crop_mode": "center",
            "mean": mean3,
            "std": std3,
            "num_classes": num_classes,
            "license": "apache-2.0",
        },
    }
    if hasattr(model, "num_features"):
        cfg["num_features"] = int(model.num_features)
    pcfg = getattr(model, "pretrained_cfg", None) or {}
    for key in ("first_conv", "classifier"):
        if pcfg.get(key):
            cfg["pretrained_cfg"][key] = pcfg[key]
    return cfg


def save_member(folder: str | os.PathLike, model: nn.Module, config: Mapping[str, Any], *,
                dtype: torch.dtype = torch.float16) -> None:
    """Write ``config.json`` and ``model.safetensors`` (floating tensors cast to ``dtype``)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {}
    for k, v in model.state_dict().items():
        v = v.detach().cpu()
        state[k] = (v.to(dtype) if v.is_floating_point() else v).contiguous()
    save_file(state, str(folder / WEIGHTS_NAME), metadata={"format": "pt"})
    (folder / MEMBER_CONFIG).write_text(json.dumps(dict(config), indent=2) + "\n", encoding="utf-8")


def load_member(folder: Path, *, model_id: str, revision: str | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """Build the timm model named in ``folder/config.json`` and load its safetensors weights (float32).

    Raises:
        ModelLoadError: unreadable config, unknown architecture, weights that do not fit it.
    """
    import timm
    from safetensors.torch import load_file

    try:
        cfg = json.loads((folder / MEMBER_CONFIG).read_text(encoding="utf-8"))
        arch = str(cfg["architecture"])
        num_classes = int(cfg["num_classes"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelLoadError(f"Member config {folder / MEMBER_CONFIG} is missing or invalid ({exc}); the model "
                             "repository is damaged.", model_id=model_id, revision=revision) from exc
    if not timm.is_model(arch):
        raise ModelLoadError(f"Member {folder.name!r} uses architecture {arch!r}, unknown to timm "
                             f"{timm.__version__}. Upgrade timm or use another model.",
                             model_id=model_id, revision=revision)
    model = timm.create_model(arch, pretrained=False, num_classes=num_classes)
    try:
        state = load_file(str(folder / WEIGHTS_NAME), device="cpu")
        own = model.state_dict()
        state = {k: (v.to(own[k].dtype) if k in own and v.is_floating_point() else v) for k, v in state.items()}
        model.load_state_dict(state, strict=True)
    except (OSError, RuntimeError, ValueError) as exc:
        raise ModelLoadError(f"Weights of member {folder.name!r} ({arch}) cannot be loaded: {exc}",
                             model_id=model_id, revision=revision) from exc
    return model.eval(), cfg


def load_members(repo: DiagnosisRepoConfig, folder: Path, *, model_id: str, revision: str | None = None
                 ) -> tuple[dict[str, nn.Module], dict[str, str], dict[str, int]]:
    """Load every member ``repo`` lists from ``folder``, checked against its entry: (modules, archs, input sizes).

    Raises:
        ModelLoadError: a member's files cannot be read, or its config.json names another architecture or
            another number of classes than a diagnosis member has.
    """
    members, archs, sizes = {}, {}, {}
    for entry in repo.members:
        model, mcfg = load_member(folder / entry.path, model_id=model_id, revision=revision)
        if entry.arch not in (None, mcfg["architecture"]):
            raise repo_error(model_id, revision, f"member {entry.name!r} says arch {entry.arch!r} but its "
                                                 f"config.json says {mcfg['architecture']!r}")
        if int(mcfg["num_classes"]) != len(LABELS):
            raise repo_error(model_id, revision, f"member {entry.name!r} has {mcfg['num_classes']} classes; "
                                                 "diagnosis members need 2")
        members[entry.name], archs[entry.name] = model, mcfg["architecture"]
        size = int(mcfg.get("pretrained_cfg", {}).get("input_size", [3, 0, 0])[-1])
        sizes[entry.name] = size or repo.preprocess.crop
    return members, archs, sizes


def save_members(folder: Path, ensemble: Any, *, archs: Mapping[str, str], cv_aucs: Mapping[str, float | None],
                 preprocess: Preprocess, dtype: torch.dtype = torch.float16) -> list[MemberEntry]:
    """Write every member of ``ensemble`` to ``folder/members/<name>/`` in timm format; their entries, in order.

    Each member's ``config.json`` records its own input size and ``preprocess`` scaled to it.
    """
    entries = []
    for i, name in enumerate(ensemble.names):
        module = ensemble.members[f"m{i}"]
        size = ensemble.input_sizes[name]
        ps = scaled_for_size(preprocess, size)
        mcfg = member_config(module, arch=archs[name], input_size=size, mean=preprocess.mean, std=preprocess.std,
                             crop_pct=ps.crop / ps.resize_short, label_names=LABELS)
        entry = MemberEntry(name=name, path=f"members/{name}", arch=archs[name], weight=float(ensemble.weights[i]),
                            cv_auc=cv_aucs[name])
        save_member(folder / entry.path, module, mcfg, dtype=dtype)
        entries.append(entry)
    return entries


def write_config(folder: Path, config: dict[str, Any], *, hashed: Sequence[str]) -> dict[str, Any]:
    """Add ``files`` (sha256 of every path in ``hashed``) to ``config`` and write ``as_ai.json``."""
    config = dict(config)
    config["files"] = {rel: sha256_file(folder / rel) for rel in sorted(hashed)}
    (folder / CONFIG_NAME).write_text(json.dumps(config, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    return config


def default_card(config: Mapping[str, Any]) -> str:
    """A short model card used when the caller gives none (training renders the full template)."""
    synthetic = bool(config.get("training", {}).get("synthetic", False))
    members = ", ".join(f"{m['name']} ({m['arch']})" for m in config.get("members", []))
    lines = [
        "---",
        "library_name: timm",
        "license: apache-2.0",
        "pipeline_tag: image-classification",
        "tags: [as-ai, ankylosing-spondylitis, radiology, pelvic-radiograph"
        + (", synthetic-data]" if synthetic else "]"),
        "---",
        "",
        "# as-ai diagnosis ensemble",
        "",
        f"CNN ensemble giving P(ankylosing spondylitis) from an AP pelvic radiograph. Members: {members}.",
        f"Combine rule: {config.get('combine')}; decision threshold {config.get('threshold')}.",
        "",
        "**Research use only; not a medical device.**"
        + (" Trained on synthetic phantom radiographs: not for clinical use." if synthetic else ""),
        "",
    ]
    return "\n".join(lines)


__all__ = ["member_config", "save_member", "load_member", "load_members", "save_members", "write_config",
           "default_card"]
