"""Find both sacroiliac joints on an AP pelvic radiograph: :class:`JointLocaliser` -> two :class:`JointBox`.

A small fully convolutional network reads the whole image shrunk to a short edge of ``short_edge`` pixels
(grey, intensity standardised; :mod:`as_ai.joints._view`) and predicts, on a grid of stride ``stride``, one
heatmap per joint (CenterNet-style: the joint's centre is the peak), the box size and the centre's sub-cell
offset. The peak's sigmoid is the joint's confidence: trained with images where a joint is out of view (cropped
films), turned or absent (noise), a low peak says "no joint here". Boxes come back in the original image's
pixels. Sides are the patient's: ``left`` is the patient's left, on the image's **right**.

Weights are saved as safetensors next to a JSON config (never pickles).

Example::

    >>> from as_ai.joints import load_joint_reader
    >>> loc = load_joint_reader().localiser                      # doctest: +SKIP
    >>> [b.side for b in loc("pelvis.png")]                      # doctest: +SKIP
    ['left', 'right']
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..decoding import load_radiograph
from ._io import NetFiles, load_net, save_net
from ._view import Box, intensity_preprocess, localiser_grey, standardise

SIDES = ("left", "right")   # patient's sides; "left" is on the image's right
FILES = NetFiles(kind="joint_localiser", stem="localiser", what="joint localiser", owner="JointLocaliser")
CONFIG_NAME, WEIGHTS_NAME = FILES.config, FILES.weights

__all__ = ["SIDES", "JointBox", "LocaliserConfig", "LocaliserNet", "JointLocaliser"]


@dataclass(frozen=True)
class JointBox:
    """One sacroiliac joint as the localiser found it.

    Attributes:
        side: ``"left"`` or ``"right"``, the patient's (left is on the image's right).
        box: (x0, y0, x1, y1) in pixels of the image as given (after EXIF rotation), end-exclusive.
        confidence: the heatmap's peak in [0, 1]; low when no joint is plausibly in view.
    """

    side: str
    box: tuple[float, float, float, float]
    confidence: float

    def to_dict(self) -> dict[str, Any]:
        return {"side": self.side, "box": [round(float(v), 2) for v in self.box],
                "confidence": float(self.confidence)}


@dataclass(frozen=True)
class LocaliserConfig:
    """What the localiser's weights need to be read right (saved as ``localiser.json``)."""

    short_edge: int = 128
    stride: int = 4
    width: int = 32
    intensity_window: tuple[float, float] = (1.0, 99.0)
    intensity_reference: tuple[float, float, float] = (0.0, 1.0, 0.5)
    training: dict | None = None  # provenance and measured figures, as written by training

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["intensity_window"], d["intensity_reference"] = list(self.intensity_window), list(self.intensity_reference)
        d["training"] = dict(self.training or {})
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "LocaliserConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known - {"kind", "format_version"})
        if unknown:
            raise ValueError(f"unknown localiser config keys {unknown}; known keys are {sorted(known)}")
        kw = {k: v for k, v in d.items() if k in known}
        for k in ("intensity_window", "intensity_reference"):
            if k in kw:
                kw[k] = tuple(float(v) for v in kw[k])
        return cls(**kw)


def _block(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class LocaliserNet(nn.Module):
    """Grey image (N x 1 x h x w, standardised) -> N x 10 x h/4 x w/4: 2 heatmap logits, then per side
    (dx, dy) centre offset within the cell and (log w, log h) of the box relative to the view's short edge.

    Two coordinate channels are added to the input, so that telling the two sides apart is easy."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        c = width
        self.enc1 = nn.Sequential(_block(3, c // 2, 2), _block(c // 2, c, 2), _block(c, c))        # /4
        self.enc2 = nn.Sequential(_block(c, 2 * c, 2), _block(2 * c, 2 * c))                        # /8
        self.enc3 = nn.Sequential(_block(2 * c, 3 * c, 2), _block(3 * c, 3 * c), _block(3 * c, 3 * c))  # /16
        self.enc4 = nn.Sequential(_block(3 * c, 4 * c, 2), _block(4 * c, 4 * c))                    # /32
        self.dec3 = _block(4 * c + 3 * c, 3 * c)
        self.dec2 = _block(3 * c + 2 * c, 2 * c)
        self.dec1 = _block(2 * c + c, 2 * c)
        self.head = nn.Sequential(_block(2 * c, 2 * c), nn.Conv2d(2 * c, 10, 1))
        nn.init.constant_(self.head[-1].bias[:2], -4.0)   # heatmaps start near 0 (CenterNet's prior)

    @staticmethod
    def _up(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return nn.functional.interpolate(x, size=like.shape[-2:], mode="nearest")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        yy = torch.linspace(-1, 1, h, device=x.device).view(1, 1, h, 1).expand(n, 1, h, w)
        xx = torch.linspace(-1, 1, w, device=x.device).view(1, 1, 1, w).expand(n, 1, h, w)
        x = torch.cat([(x - 0.5) * 4.0, xx, yy], 1)
        e1 = self.enc1(x)
        e2 = self.enc2(e1)
        e3 = self.enc3(e2)
        e4 = self.enc4(e3)
        d3 = self.dec3(torch.cat([self._up(e4, e3), e3], 1))
        d2 = self.dec2(torch.cat([self._up(d3, e2), e2], 1))
        d1 = self.dec1(torch.cat([self._up(d2, e1), e1], 1))
        return self.head(d1)


def decode(out: torch.Tensor, *, stride: int, short_edge: int) -> list[list[tuple[Box, float]]]:
    """Network output N x 10 x gh x gw -> per image, per side ``(box in view pixels, confidence)``."""
    n, _, gh, gw = out.shape
    heat = torch.sigmoid(out[:, :2].float())
    res: list[list[tuple[Box, float]]] = []
    for i in range(n):
        sides = []
        for s in range(2):
            flat = int(torch.argmax(heat[i, s]))
            gy, gx = divmod(flat, gw)
            conf = float(heat[i, s, gy, gx])
            reg = out[i, 2 + 4 * s: 6 + 4 * s, gy, gx].float()
            cx = (gx + float(reg[0].clamp(0, 1))) * stride
            cy = (gy + float(reg[1].clamp(0, 1))) * stride
            bw = math.exp(float(reg[2].clamp(-5, 1))) * short_edge
            bh = math.exp(float(reg[3].clamp(-5, 1))) * short_edge
            sides.append(((cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2), conf))
        res.append(sides)
    return res


class JointLocaliser:
    """The trained localiser: ``loc(image) -> (JointBox left, JointBox right)`` in the image's pixels.

    ``image`` is anything :func:`as_ai.load_radiograph` accepts (path, bytes, numpy array, PIL image,
    Radiograph).

    Raises (when called):
        InvalidImageError: the input cannot be read as an image (from :func:`as_ai.load_radiograph`).
    """

    def __init__(self, net: LocaliserNet, config: LocaliserConfig) -> None:
        self.net = net.eval()
        self.config = config
        self._pp = intensity_preprocess(config.intensity_window, config.intensity_reference)

    def view(self, image: Any) -> tuple[torch.Tensor, tuple[float, float]]:
        """The network's input for ``image`` (1 x h x w, standardised) and the view -> original scale (x, y)."""
        rg = load_radiograph(image)
        grey, scale = localiser_grey(rg, self.config.short_edge)
        return standardise(grey, self._pp), scale

    def __call__(self, image: Any) -> tuple[JointBox, JointBox]:
        x, (sx, sy) = self.view(image)
        with torch.inference_mode():
            out = self.net(x[None])
        found = decode(out, stride=self.config.stride, short_edge=self.config.short_edge)[0]
        return tuple(JointBox(side, (b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy), conf)  # type: ignore[return-value]
                     for side, (b, conf) in zip(SIDES, found))

    def save(self, folder: str | Path) -> list[str]:
        """Write ``localiser.safetensors`` (float32) and ``localiser.json`` into ``folder``; the file names."""
        return save_net(folder, self.net, self.config.to_dict(), FILES)

    @classmethod
    def load(cls, folder: str | Path) -> "JointLocaliser":
        """Read a localiser written by :meth:`save`.

        Raises:
            ModelLoadError: missing or invalid config, weights that do not fit the network.
        """
        net, cfg = load_net(folder, FILES, LocaliserConfig.from_dict, lambda c: LocaliserNet(c.width))
        return cls(net, cfg)
