"""Grade one sacroiliac joint 0-4: :class:`JointGrader`, an ordinal CNN on the joint's native-resolution crop.

Each joint is cut from the original pixels around its box (with a margin) and resampled only to the fixed
crop size (:func:`as_ai.joints._view.joint_crop`); the patient's right joint (on the image's left) is mirrored
so that one network reads both sides with the ilium on the same side. The network gives one score ``s``; four
ordered thresholds ``b_1 < b_2 < b_3 < b_4`` make the cumulative logits (proportional odds)::

    P(grade >= k) = sigmoid((s - b_k) / T),   k = 1..4

so the five grade probabilities are non-negative, sum to 1 and their cumulative is monotone by construction.
``T`` (a temperature) is fitted on held-out crops after training, so the probabilities are calibrated.
P(modified New York criterion) is derived from both sides' distributions by
:func:`as_ai.joints.criteria.mny_probability`, never learned as a label of its own.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from ._io import NetFiles, load_net, save_net
from ._view import Box, intensity_preprocess, joint_crop, standardise

FILES = NetFiles(kind="joint_grader", stem="grader", what="joint grader", owner="JointGrader")
CONFIG_NAME, WEIGHTS_NAME = FILES.config, FILES.weights

__all__ = ["GraderConfig", "OrdinalGraderNet", "JointGrader", "ordinal_probabilities"]


@dataclass(frozen=True)
class GraderConfig:
    """What the grader's weights need to be read right (saved as ``grader.json``)."""

    crop: tuple[int, int] = (128, 96)   # (h, w) of the resampled joint window
    margin: float = 0.12                # the box grown by this fraction of its size on every side
    width: int = 16
    temperature: float = 1.0            # fitted on held-out crops
    intensity_window: tuple[float, float] = (1.0, 99.0)
    intensity_reference: tuple[float, float, float] = (0.0, 1.0, 0.5)
    mirror_side: str = "right"          # the side read mirrored
    training: dict | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("crop", "intensity_window", "intensity_reference"):
            d[k] = list(getattr(self, k))
        d["training"] = dict(self.training or {})
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "GraderConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known - {"kind", "format_version"})
        if unknown:
            raise ValueError(f"unknown grader config keys {unknown}; known keys are {sorted(known)}")
        kw = {k: v for k, v in d.items() if k in known}
        if "crop" in kw:
            kw["crop"] = tuple(int(v) for v in kw["crop"])
        for k in ("intensity_window", "intensity_reference"):
            if k in kw:
                kw[k] = tuple(float(v) for v in kw[k])
        if not float(kw.get("temperature", 1.0)) > 0:
            raise ValueError(f"temperature must be > 0, got {kw.get('temperature')!r}")
        return cls(**kw)


def ordinal_probabilities(score: torch.Tensor, thresholds: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Grade probabilities N x 5 from scores N and ordered thresholds 4 (cumulative logits).

    ``P(grade >= k) = sigmoid((score - thresholds[k-1]) / temperature)``; consecutive differences give the
    five probabilities, which are >= 0 because the thresholds increase."""
    cum = torch.sigmoid((score[:, None] - thresholds[None, :]) / temperature)     # N x 4, decreasing in k
    ones, zeros = torch.ones_like(cum[:, :1]), torch.zeros_like(cum[:, :1])
    upper = torch.cat([ones, cum], 1)
    lower = torch.cat([cum, zeros], 1)
    return (upper - lower).clamp_min(0.0)


def _block(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class OrdinalGraderNet(nn.Module):
    """Standardised grey crop N x 1 x h x w -> (score N, ordered thresholds 4)."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        c = width
        self.features = nn.Sequential(
            _block(1, c, 2),                                # /2: a strided stem keeps 2-px erosions
            _block(c, 2 * c), _block(2 * c, 2 * c, 2),      # /4
            _block(2 * c, 4 * c), _block(4 * c, 4 * c, 2),  # /8
            _block(4 * c, 6 * c), _block(6 * c, 6 * c, 2),  # /16
            _block(6 * c, 6 * c))
        self.score = nn.Sequential(nn.Dropout(0.2), nn.Linear(12 * c, 1))
        self.first = nn.Parameter(torch.tensor(-1.5))
        self.gaps = nn.Parameter(torch.full((3,), 0.0))     # softplus(0) = 0.69 between thresholds

    def thresholds(self) -> torch.Tensor:
        """b_1 < b_2 < b_3 < b_4 (increasing by construction)."""
        steps = nn.functional.softplus(self.gaps) + 1e-3
        return torch.cat([self.first.view(1), self.first + torch.cumsum(steps, 0)])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.features((x - 0.5) * 4.0)
        pooled = torch.cat([f.mean((-2, -1)), f.amax((-2, -1))], 1)
        return self.score(pooled)[:, 0], self.thresholds()


class JointGrader:
    """The trained grader: crops from an image's pixels and boxes -> grade probabilities per box.

    ``pixels`` are a Radiograph's (grey in [0, 1]); boxes are in its pixels (what :class:`JointLocaliser`
    returns); ``sides`` say which box is which (the ``mirror_side`` one is mirrored).
    """

    def __init__(self, net: OrdinalGraderNet, config: GraderConfig) -> None:
        self.net = net.eval()
        self.config = config
        self._pp = intensity_preprocess(config.intensity_window, config.intensity_reference)

    def crops(self, pixels: Any, boxes: Sequence[Box], sides: Sequence[str]) -> torch.Tensor:
        """The network's input: N x 1 x h x w standardised crops."""
        px = torch.from_numpy(np.array(pixels, dtype=np.float32, copy=True))
        raw = torch.stack([joint_crop(px, b, size=self.config.crop, margin=self.config.margin,
                                      mirror=s == self.config.mirror_side) for b, s in zip(boxes, sides)])
        return standardise(raw, self._pp)

    def probabilities_of(self, x: torch.Tensor) -> torch.Tensor:
        """Calibrated grade probabilities N x 5 for standardised crops."""
        with torch.inference_mode():
            score, th = self.net(x)
            return ordinal_probabilities(score, th, self.config.temperature)

    def __call__(self, pixels: Any, boxes: Sequence[Box], sides: Sequence[str]) -> np.ndarray:
        return self.probabilities_of(self.crops(pixels, boxes, sides)).double().numpy()

    def save(self, folder: str | Path) -> list[str]:
        """Write ``grader.safetensors`` (float32) and ``grader.json`` into ``folder``; the file names."""
        return save_net(folder, self.net, self.config.to_dict(), FILES)

    @classmethod
    def load(cls, folder: str | Path) -> "JointGrader":
        """Read a grader written by :meth:`save`.

        Raises:
            ModelLoadError: missing or invalid config, weights that do not fit the network.
        """
        net, cfg = load_net(folder, FILES, GraderConfig.from_dict, lambda c: OrdinalGraderNet(c.width))
        return cls(net, cfg)
