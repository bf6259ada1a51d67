"""The CNN ensemble as one ``nn.Module``: every member on one batch, one call.

Members are timm classifiers with two outputs (``["non-AS", "AS"]``); a member's P(AS) is the
softmax of its logits. Members may want different input sizes: they are grouped by input size,
and :meth:`Ensemble.forward` takes one tensor per size (or one tensor when all share a size).
Combining (mean or AUC-weighted mean) and the calibration map of the combined probability
(:class:`Calibration`, fitted on out-of-fold predictions after the members) are defined here too.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn

COMBINE_RULES = ("mean", "auc_weighted")


class Ensemble(nn.Module):
    """Run several binary classifiers on the same images and combine their P(AS).

    Args:
        members: name -> ``nn.Module`` returning logits ``N x 2`` (index 1 = AS).
        input_sizes: name -> square input size (pixels) the member expects.
        weights: name -> non-negative weight of the member in the combined probability
            (normalised to sum 1; equal weights give the plain mean).

    Example:
        >>> import timm
        >>> m = {"a": timm.create_model("mobilenetv3_small_050", num_classes=2)}
        >>> ens = Ensemble(m, input_sizes={"a": 64}, weights={"a": 1.0}).eval()
        >>> ens(torch.zeros(2, 3, 64, 64)).shape      # member probabilities N x M
        torch.Size([2, 1])
    """

    def __init__(self, members: Mapping[str, nn.Module], *, input_sizes: Mapping[str, int],
                 weights: Mapping[str, float] | None = None) -> None:
        super().__init__()
        if not members:
            raise ValueError("an Ensemble needs at least one member, got none")
        names = list(members)
        missing = [n for n in names if n not in input_sizes]
        if missing:
            raise ValueError(f"input_sizes lacks members {missing}; give every member its input size")
        w = torch.tensor([float((weights or {}).get(n, 1.0)) for n in names], dtype=torch.float32)
        if (w < 0).any() or float(w.sum()) <= 0:
            raise ValueError(f"member weights must be >= 0 and not all 0, got {dict(zip(names, w.tolist()))}")
        self.names: list[str] = names
        self.members = nn.ModuleDict({_key(i): members[n] for i, n in enumerate(names)})
        self.input_sizes: dict[str, int] = {n: int(input_sizes[n]) for n in names}
        self.register_buffer("weights", w / w.sum(), persistent=False)

    @property
    def sizes(self) -> list[int]:
        """The distinct input sizes of the members, largest first."""
        return sorted(set(self.input_sizes.values()), reverse=True)

    def member_logits(self, x: torch.Tensor | Mapping[int, torch.Tensor]) -> torch.Tensor:
        """AS-vs-non-AS logit difference of every member, ``N x M`` (differentiable)."""
        inputs = self._inputs(x)
        outs = []
        for i, name in enumerate(self.names):
            logits = self.members[_key(i)](inputs[self.input_sizes[name]])
            outs.append((logits[:, 1] - logits[:, 0]).float())
        return torch.stack(outs, dim=1)

    def forward(self, x: torch.Tensor | Mapping[int, torch.Tensor]) -> torch.Tensor:
        """Member probabilities P(AS), ``N x M`` in member order (:attr:`names`)."""
        return torch.sigmoid(self.member_logits(x))  # softmax over 2 classes == sigmoid of the difference

    def forward_with_features(self, x: torch.Tensor | Mapping[int, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(member P(AS) ``N x M``, penultimate features ``N x D``) in one pass.

        The features are every member's pooled pre-logit vector (timm ``forward_head(pre_logits=True)``),
        concatenated in member order: what the input gate (:mod:`as_ai.quality`) scores. The
        probabilities equal :meth:`forward`'s.
        """
        inputs = self._inputs(x)
        diffs, feats = [], []
        for i, name in enumerate(self.names):
            model = self.members[_key(i)]
            pre = model.forward_head(model.forward_features(inputs[self.input_sizes[name]]), pre_logits=True)
            logits = model.get_classifier()(pre)
            diffs.append((logits[:, 1] - logits[:, 0]).float())
            feats.append(pre.flatten(1).float())
        return torch.sigmoid(torch.stack(diffs, dim=1)), torch.cat(feats, dim=1)

    def items(self) -> list[tuple[str, nn.Module, float]]:
        """(name, module, weight) of every member, in order (e.g. for Grad-CAM)."""
        return [(n, self.members[_key(i)], float(self.weights[i])) for i, n in enumerate(self.names)]

    def combine(self, member_probs: torch.Tensor) -> torch.Tensor:
        """Weighted mean of member probabilities (``N x M`` -> ``N``)."""
        return member_probs @ self.weights.to(member_probs.dtype)

    @property
    def device(self) -> torch.device:
        """Where the members' weights are (inputs are moved there; outputs stay there)."""
        return self.weights.device

    def move_to(self, device: str | torch.device) -> None:
        """Move the members to ``device``, checked first; on a failed move they go back to the CPU.

        Raises:
            ValueError: ``device`` is not a device name torch knows, or names a GPU torch cannot see.
        """
        try:
            dev = torch.device(device)
        except (RuntimeError, TypeError) as exc:
            raise ValueError(f"unknown device {device!r} ({exc}); use 'cpu', 'cuda' or 'cuda:N'") from None
        if dev.type == "meta":
            raise ValueError("device 'meta' holds no weights; use 'cpu', 'cuda' or 'cuda:N'")
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {device!r}: torch sees no CUDA GPU here; use 'cpu'")
        if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r}: torch sees {torch.cuda.device_count()} CUDA GPU(s)")
        try:
            self.to(dev)
        except (RuntimeError, AssertionError) as exc:   # e.g. "mps" on a machine without it
            self.to("cpu")
            raise ValueError(f"device {device!r} cannot be used here ({exc}); use 'cpu'") from None

    def _inputs(self, x: torch.Tensor | Mapping[int, torch.Tensor]) -> Mapping[int, torch.Tensor]:
        if isinstance(x, torch.Tensor):
            if len(self.sizes) > 1:
                raise ValueError(f"members need inputs of sizes {self.sizes}; pass a dict size -> tensor")
            x = {self.sizes[0]: x}
        missing = [s for s in self.sizes if s not in x]
        if missing:
            raise ValueError(f"no input tensor for size(s) {missing}; got sizes {sorted(x)}")
        device = self.device
        return {s: t.to(device, non_blocking=True) for s, t in x.items()}


def combine_weights(rule: str, cv_aucs: Sequence[float]) -> list[float]:
    """Member weights for a combine rule: equal for "mean", AUC above chance for "auc_weighted".

    "auc_weighted" weights each member by ``max(auc - 0.5, 1e-3)``, so a member no better than chance
    counts (almost) nothing.
    """
    if rule == "mean":
        return [1.0 / len(cv_aucs)] * len(cv_aucs)
    if rule == "auc_weighted":
        raw = [max(float(a) - 0.5, 1e-3) for a in cv_aucs]
        return [r / sum(raw) for r in raw]
    raise ValueError(f"combine must be one of {COMBINE_RULES}, got {rule!r}")


CALIBRATION_METHODS = ("none", "temperature", "platt")


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-6, 1 - 1e-6)
    return np.log(p) - np.log1p(-p)


@dataclass(frozen=True)
class Calibration:
    """A monotone map of the combined probability: ``sigmoid(a * logit(p) + b)``.

    ``"temperature"`` fits only ``a = 1 / T`` (keeps 0.5 fixed), ``"platt"`` fits ``a`` and ``b``,
    ``"none"`` is the identity. Fitted on out-of-fold predictions by minimising the log-loss.

    Example:
        >>> cal = Calibration.fit([0.2, 0.9, 0.6, 0.1], [0, 1, 1, 0], method="temperature")
        >>> 0 < float(cal.apply([0.7])[0]) < 1
        True
    """

    method: str = "none"
    a: float = 1.0
    b: float = 0.0

    def __post_init__(self) -> None:
        if self.method not in CALIBRATION_METHODS:
            raise ValueError(f"calibration method must be one of {CALIBRATION_METHODS}, got {self.method!r}")

    def apply(self, p: Sequence[float] | np.ndarray) -> np.ndarray:
        """Calibrated probabilities (float64 array)."""
        z = self.a * _logit(np.asarray(p)) + self.b
        return 1.0 / (1.0 + np.exp(-z))

    def apply_tensor(self, p: torch.Tensor) -> torch.Tensor:
        """Same as :meth:`apply` on a tensor, keeping gradients (for explanations)."""
        p = p.clamp(1e-6, 1 - 1e-6)
        return torch.sigmoid(self.a * (torch.log(p) - torch.log1p(-p)) + self.b)

    @classmethod
    def fit(cls, p: Sequence[float] | np.ndarray, y: Sequence[int] | np.ndarray, *,
            method: str = "temperature") -> "Calibration":
        """Fit the map on held-out probabilities ``p`` and labels ``y`` (1 = AS)."""
        from scipy.optimize import minimize

        if method not in CALIBRATION_METHODS:
            raise ValueError(f"calibration method must be one of {CALIBRATION_METHODS}, got {method!r}")
        if method == "none":
            return cls("none")
        z = _logit(np.asarray(p))
        t = np.asarray(y, dtype=np.float64)
        if z.shape != t.shape or z.size < 2 or len(np.unique(t)) < 2:
            raise ValueError("calibration needs matching probabilities and labels with both classes present, "
                             f"got {z.size} probabilities and labels {sorted(set(t.tolist()))}")

        def nll(params: np.ndarray) -> float:
            a, b = (params[0], params[1]) if method == "platt" else (params[0], 0.0)
            s = a * z + b
            return float(np.mean(np.logaddexp(0.0, s) - t * s))

        x0 = np.array([1.0, 0.0]) if method == "platt" else np.array([1.0])
        res = minimize(nll, x0, method="Nelder-Mead", options={"xatol": 1e-6, "fatol": 1e-9, "maxiter": 2000})
        a = float(max(res.x[0], 1e-3))  # keep the map increasing
        b = float(res.x[1]) if method == "platt" else 0.0
        return cls(method, a, b)

    def to_dict(self) -> dict[str, Any]:
        """The ``calibration`` entry of ``as_ai.json`` (temperature also given as ``T``)."""
        d: dict[str, Any] = {"method": self.method, "a": self.a, "b": self.b}
        if self.method == "temperature":
            d["temperature"] = 1.0 / self.a
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> "Calibration":
        """Read the ``calibration`` entry of ``as_ai.json``."""
        if not d:
            return cls("none")
        method = d.get("method", "none")
        if method == "temperature" and "a" not in d:
            return cls(method, 1.0 / float(d["temperature"]), 0.0)
        return cls(method, float(d.get("a", 1.0)), float(d.get("b", 0.0)))


def youden_threshold(p: Sequence[float] | np.ndarray, y: Sequence[int] | np.ndarray) -> float:
    """The probability cut-off maximising sensitivity + specificity - 1 (Youden's J) on ``(p, y)``.

    Returned as the midpoint between neighbouring scores, so it does not sit on a training score.
    """
    from sklearn.metrics import roc_curve

    p = np.asarray(p, dtype=np.float64)
    fpr, tpr, thr = roc_curve(np.asarray(y), p)
    i = int(np.argmax(tpr - fpr))
    t = float(thr[i])
    below = p[p < t]
    if below.size:
        t = 0.5 * (t + float(below.max()))
    return float(min(max(t, 1e-6), 1 - 1e-6))


def _key(i: int) -> str:
    # ModuleDict keys cannot contain "." and must be identifiers-ish; member names are free text.
    return f"m{i}"


__all__ = ["Ensemble", "Calibration", "combine_weights", "youden_threshold", "COMBINE_RULES", "CALIBRATION_METHODS"]
