"""Acquisition jitter: training-time changes that mimic how hospitals' radiographs differ.

The bundled demo ensemble is trained on one centre only. External centres differ in processing curve
(gamma, contrast), dose (noise), detector sharpness (blur), edge enhancement and field of view
(``as_ai.synthetic._acquisition.CENTRES``). A model that has only seen one centre reads a noisier or blurrier
image as "joint margins blurred" — the sign of early sacroiliitis — and its scores shift from centre to
centre. Showing it randomly re-processed copies of its training images teaches it to ignore these
global differences, while the lesions (local changes) stay as they are.
"""
from __future__ import annotations

import math

import torch
from torchvision.transforms.v2 import functional as F


class AcquisitionJitter(torch.nn.Module):
    """Randomly re-process a 1 x H x W image in [0, 1] as another centre might have.

    ``p`` is the chance that an image is jittered at all; each effect then has its own chance (the blur's is
    ``blur_p``, its sigma up to ``blur_max``).
    The ranges cover the external centres of the data engine with some margin:
    gamma x0.7-1.45, contrast x0.8-1.25, brightness +-0.06, blur sigma 0.3-1.3 px, edge enhancement
    gain 0.2-0.8, additive noise sigma 0.005-0.04 (at the cached 384-px scale).
    """

    def __init__(self, p: float = 0.8, *, blur_p: float = 0.5, blur_max: float = 1.3) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p is a probability, got {p}")
        if not 0.0 <= blur_p <= 1.0:
            raise ValueError(f"blur_p is a probability, got {blur_p}")
        if not 0.3 <= blur_max <= 5.0:
            raise ValueError(f"blur_max must be in [0.3, 5] px, got {blur_max}")
        self.p, self.blur_p, self.blur_max = p, blur_p, blur_max

    @staticmethod
    def _u(lo: float, hi: float) -> float:
        return lo + (hi - lo) * float(torch.rand(()))

    def _chance(self, q: float) -> bool:
        return float(torch.rand(())) < q

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self._chance(self.p):
            return x
        u = self._u
        if self._chance(0.7):                                   # processing curve
            x = x.clamp(0, 1) ** float(torch.exp(torch.empty(()).uniform_(-0.36, 0.37)))
        if self._chance(0.5):                                   # window / contrast
            x = (x - 0.5) * u(0.8, 1.25) + 0.5 + u(-0.06, 0.06)
        if self._chance(self.blur_p):                           # detector blur
            s = u(0.3, self.blur_max)
            x = F.gaussian_blur(x, [2 * int(3 * s) + 1] * 2, [s, s])
        if self._chance(0.3):                                   # edge enhancement
            s = u(1.5, 3.0)
            x = x + u(0.2, 0.8) * (x - F.gaussian_blur(x, [2 * int(3 * s) + 1] * 2, [s, s]))
        if self._chance(0.6):                                   # quantum noise
            x = x + torch.randn_like(x) * u(0.005, 0.04)
        return x.clamp(0, 1)


class DetectorPair(torch.nn.Module):
    """A copy of a normalised training batch as a blurrier, noisier detector would have recorded it.

    For the consistency loss: the network should give the same answer for an image and for this copy,
    because sharpness and noise are the scanner's, not the patient's. Gaussian blur sigma 0.3-1.6 px
    (per image) and noise sigma 0.005-0.03 in grey units (at the cached 384-px scale); both act the same
    on normalised tensors, since normalisation is affine per channel (``std`` rescales the noise).
    """

    def __init__(self, std: tuple[float, float, float] | list[float]) -> None:
        super().__init__()
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.empty_like(x)
        for i in range(x.shape[0]):
            s = 0.3 + 1.3 * float(torch.rand(()))
            out[i] = F.gaussian_blur(x[i], [2 * int(3 * s) + 1] * 2, [s, s])
        grey_noise = torch.randn_like(x[:, :1]) * (0.005 + 0.025 * torch.rand(x.shape[0], 1, 1, 1))
        return out + grey_noise / self.std.to(x.dtype)


def js_consistency(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Jensen-Shannon divergence between the softmax outputs of two logit batches (mean over the batch)."""
    la, lb = a.float().log_softmax(1), b.float().log_softmax(1)   # in log space: finite for saturated outputs
    lm = torch.logaddexp(la, lb) - math.log(2.0)
    return ((la.exp() * (la - lm)).sum(1) + (lb.exp() * (lb - lm)).sum(1)).mean() / 2
