"""Saving and loading one network of the joint reader (private): safetensors weights next to a JSON config.

:class:`~as_ai.joints.localiser.JointLocaliser` and :class:`~as_ai.joints.grader.JointGrader` store the same way
(float32 safetensors, never pickles; a JSON config with ``kind`` and ``format_version``); the reader folder's
``joints.json`` then holds every file's sha256 (:meth:`as_ai.joints.reader.JointReader.load` checks them).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from torch import nn

from ..errors import ModelLoadError

FORMAT_VERSION = 1

__all__ = ["NetFiles", "save_net", "load_net"]


@dataclass(frozen=True)
class NetFiles:
    """Where one network lives in a reader folder and what it is called in messages."""

    kind: str       # the config's "kind", e.g. "joint_grader"
    stem: str       # file stem: STEM.safetensors + STEM.json
    what: str       # in messages, e.g. "joint grader"
    owner: str      # the class whose save wrote it, e.g. "JointGrader"

    @property
    def weights(self) -> str:
        return f"{self.stem}.safetensors"

    @property
    def config(self) -> str:
        return f"{self.stem}.json"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "weights": self.weights, "config": self.config}


def save_net(folder: str | Path, net: nn.Module, config: dict[str, Any], files: NetFiles) -> list[str]:
    """Write ``net``'s weights (float32 safetensors) and ``config`` (JSON, with kind and format version) into
    ``folder``; returns the two file names."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    save_file(state, str(folder / files.weights), metadata={"format": "pt"})
    cfg = {"kind": files.kind, "format_version": FORMAT_VERSION, **config}
    (folder / files.config).write_text(json.dumps(cfg, indent=2) + "\n", encoding="utf-8")
    return [files.weights, files.config]


def load_net(folder: str | Path, files: NetFiles, parse: Callable[[dict[str, Any]], Any],
             build: Callable[[Any], nn.Module]) -> tuple[nn.Module, Any]:
    """Read what :func:`save_net` wrote: ``parse`` turns the JSON into a config, ``build`` makes the network
    for it, whose weights must fit exactly. Returns (network, config).

    Raises:
        ModelLoadError: missing or invalid config, weights that do not fit the network.
    """
    from safetensors.torch import load_file

    folder = Path(folder)
    try:
        cfg = parse(json.loads((folder / files.config).read_text(encoding="utf-8")))
        net = build(cfg)
        net.load_state_dict(load_file(str(folder / files.weights), device="cpu"), strict=True)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise ModelLoadError(f"{files.what} in {folder} cannot be loaded ({type(exc).__name__}: {exc}); "
                             f"the folder must hold {files.config} and {files.weights} written by "
                             f"{files.owner}.save.", model_id=str(folder)) from exc
    return net, cfg
