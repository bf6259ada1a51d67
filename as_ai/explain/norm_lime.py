"""NormLIME: the global importance of superpixel kinds, learned over a dataset, re-weighting one image's LIME map.

PaddleX's form: superpixels of many images are described by the mean of an early-layer feature map of one
member (:func:`superpixel_features`) and grouped by k-means; a cluster's importance is the mean share of
the LIME weight its superpixels carry (:class:`NormLime`, fitted by ``python -m train.explain`` on
:func:`lime_with_features` runs and stored as ``normlime.safetensors`` + ``normlime.json``). A per-image
NormLIME map (:func:`normlime`) multiplies each LIME weight by its cluster's importance.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .. import scoring
from ..transforms import normalise
from . import _lime_core
from .lime_map import (LimeSetup, explained_probability, lime_setup, member_grids_fn, sampling, scoring_batch,
                       superpixel_explanation)
from .protocol import Explainable, ensemble_view
from .result import Explanation, jsonable

NORMLIME_CONFIG = "normlime.json"
NORMLIME_FILE = "normlime.safetensors"

__all__ = ["NormLime", "normlime", "lime_with_features", "superpixel_features", "early_layer",
           "NORMLIME_CONFIG", "NORMLIME_FILE"]


def early_layer(module: torch.nn.Module) -> tuple[str, int]:
    """Name and stride of the first timm feature stage with stride >= 8 (early, local features)."""
    info = getattr(module, "feature_info", None)
    if not info:
        raise ValueError(f"{type(module).__name__} has no timm feature_info; NormLIME needs a timm CNN member")
    entries = [(i["module"], int(i["reduction"])) for i in info]
    for name, red in entries:
        if red >= 8:
            return name, red
    return entries[-1]


def superpixel_features(diagnoser: Explainable, view: np.ndarray, segments: np.ndarray, *,
                        member: str | None = None) -> np.ndarray:
    """Mean early-layer feature vector of each superpixel (S, C), from one member (default: heaviest)."""
    members, by_size = ensemble_view(diagnoser)
    name, module, _, size = (max(members, key=lambda m: m[2]) if member is None
                             else next(m for m in members if m[0] == member))
    layer, _ = early_layer(module)
    grabbed: list[torch.Tensor] = []
    hook = module.get_submodule(layer).register_forward_hook(lambda _m, _i, out: grabbed.append(out))
    try:
        grids = member_grids_fn(diagnoser, view.shape[0])(torch.from_numpy(np.ascontiguousarray(view))[None])
        p = by_size[size]
        x = normalise(grids[size][:, None], p)
        with torch.inference_mode():
            module.forward_features(x.to(diagnoser.device))
    finally:
        hook.remove()
    fmap = grabbed[0].float().cpu()
    fmap = F.interpolate(fmap, size=segments.shape, mode="bilinear", align_corners=False)[0]  # C x H x W
    c = fmap.shape[0]
    n = int(segments.max()) + 1
    flat = torch.from_numpy(segments.astype(np.int64)).flatten()
    sums = torch.zeros((n, c)).index_add_(0, flat, fmap.reshape(c, -1).T)
    counts = torch.bincount(flat, minlength=n).clamp_min(1)[:, None]
    return (sums / counts).numpy()


@dataclass(frozen=True, eq=False)
class NormLime:
    """NormLIME's global importance of superpixel clusters (PaddleX's form).

    Superpixels of many images are described by the mean of an early-layer feature map of one member
    and grouped by k-means; every LIME weight ``w`` of an image contributes ``w**2 / sum(|w|)`` (its
    share of that image's total weight) to its superpixel's cluster, and a cluster's importance is the
    mean of its contributions. A per-image NormLIME map multiplies each LIME weight by its cluster's
    importance. Fit with :meth:`fit` (or ``python -m train.explain``), store with :meth:`save`.
    """

    centers: np.ndarray        # (k, C) in standardised feature units
    feature_mean: np.ndarray   # (C,)
    feature_scale: np.ndarray  # (C,)
    importance: np.ndarray     # (k,) mean w^2 / sum|w| per cluster
    counts: np.ndarray         # (k,) superpixels per cluster in the fitting set
    info: dict[str, Any] = field(default_factory=dict)

    def cluster(self, features: np.ndarray) -> np.ndarray:
        """Nearest cluster of each superpixel feature row (S, C)."""
        z = (np.asarray(features, dtype=np.float64) - self.feature_mean) / self.feature_scale
        d = ((z[:, None, :] - self.centers[None]) ** 2).sum(-1)
        return d.argmin(axis=1)

    def combine(self, lime_weights: np.ndarray, features: np.ndarray) -> np.ndarray:
        """Per-image NormLIME weights: each LIME weight times its cluster's global importance."""
        return np.asarray(lime_weights) * self.importance[self.cluster(features)]

    @classmethod
    def fit(cls, lime_weights: Sequence[np.ndarray], features: Sequence[np.ndarray], *, clusters: int = 12,
            seed: int = 0, info: Mapping[str, Any] | None = None) -> "NormLime":
        """Fit from per-image LIME weights (S_i,) and superpixel features (S_i, C)."""
        from sklearn.cluster import KMeans

        if len(lime_weights) != len(features) or not lime_weights:
            raise ValueError(f"need one weight vector per feature matrix; got {len(lime_weights)} and {len(features)}")
        allf = np.concatenate([np.asarray(f, dtype=np.float64) for f in features])
        mean, scale = allf.mean(0), allf.std(0)
        scale = np.where(scale > 1e-9, scale, 1.0)
        k = int(min(clusters, len(allf)))
        km = KMeans(n_clusters=k, n_init=4, random_state=seed).fit((allf - mean) / scale)
        labels = km.labels_
        sums, counts, offset = np.zeros(k), np.zeros(k, dtype=np.int64), 0
        for w, f in zip(lime_weights, features):
            w = np.asarray(w, dtype=np.float64)
            lab = labels[offset:offset + len(f)]
            offset += len(f)
            l1 = np.abs(w).sum()
            if l1 <= 0:
                continue
            np.add.at(sums, lab, w ** 2 / l1)
            np.add.at(counts, lab, 1)
        importance = np.where(counts > 0, sums / np.maximum(counts, 1), 0.0)
        return cls(centers=km.cluster_centers_.astype(np.float32), feature_mean=mean.astype(np.float32),
                   feature_scale=scale.astype(np.float32), importance=importance.astype(np.float32),
                   counts=counts, info={"clusters": k, "images": len(features), **dict(info or {})})

    def save(self, folder: str | Path) -> Path:
        """Write ``normlime.safetensors`` and ``normlime.json`` into ``folder``."""
        from safetensors.numpy import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_file({"centers": self.centers, "feature_mean": self.feature_mean, "feature_scale": self.feature_scale,
                   "importance": self.importance, "counts": self.counts.astype(np.int64)},
                  str(folder / NORMLIME_FILE))
        (folder / NORMLIME_CONFIG).write_text(json.dumps(jsonable(self.info), indent=2) + "\n", encoding="utf-8")
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> "NormLime":
        """Read what :meth:`save` wrote (safetensors + JSON only, nothing executable)."""
        from safetensors.numpy import load_file

        folder = Path(folder)
        if not (folder / NORMLIME_FILE).is_file():
            raise FileNotFoundError(f"{folder} has no {NORMLIME_FILE}; compute it with "
                                    "python -m train.explain --model DIR --data DIR --out DIR")
        t = load_file(str(folder / NORMLIME_FILE))
        info = json.loads((folder / NORMLIME_CONFIG).read_text(encoding="utf-8")) if (folder / NORMLIME_CONFIG).is_file() else {}
        return cls(centers=t["centers"], feature_mean=t["feature_mean"], feature_scale=t["feature_scale"],
                   importance=t["importance"], counts=t["counts"], info=info)


def lime_with_features(diagnoser: Explainable, image: Any, *, num_samples: int | None = None,
                       n_segments: int = _lime_core.N_SEGMENTS, batch_size: int | None = None, seed: int = 0,
                       member: str | None = None, precision: str = "auto",
                       progress: Callable[[int, int], None] | None = None
                       ) -> tuple[np.ndarray, np.ndarray, LimeSetup]:
    """(LIME weights (S,), superpixel features (S, C), setup) of one image: what NormLIME is fitted on."""
    limit, stop = sampling(num_samples)
    used = scoring.resolve_precision(precision, diagnoser.device)
    setup = lime_setup(diagnoser, image, n_segments=n_segments, precision=used)
    weights, _ = _lime_core.run_lime(setup.view, setup.segments, setup.predictor, num_samples=limit,
                                     batch_size=batch_size or scoring_batch(used), seed=seed, stop=stop,
                                     progress=progress)
    feats = superpixel_features(diagnoser, setup.view, setup.segments, member=member)
    return weights, feats, setup


def normlime(diagnoser: Explainable, image: Any, stats: NormLime | str | Path, *, num_samples: int | None = None,
             n_segments: int | None = None, batch_size: int | None = None, seed: int = 0, precision: str = "auto",
             progress: Callable[[int, int], None] | None = None) -> Explanation:
    """NormLIME map of one image: its LIME weights times the global importance of their clusters.

    ``stats`` is a :class:`NormLime` or the folder ``python -m train.explain`` wrote; the other
    arguments are :func:`~as_ai.explain.lime`'s.

    Raises:
        FileNotFoundError: ``stats`` is a folder without NormLIME statistics.
    """
    t0 = time.perf_counter()
    nl = stats if isinstance(stats, NormLime) else NormLime.load(stats)
    n_seg = int(n_segments or nl.info.get("n_segments", _lime_core.N_SEGMENTS))
    weights, feats, setup = lime_with_features(diagnoser, image, num_samples=num_samples, n_segments=n_seg,
                                               batch_size=batch_size, seed=seed, member=nl.info.get("member"),
                                               precision=precision, progress=progress)
    combined = nl.combine(weights, feats)
    prob = explained_probability(diagnoser, setup)
    params = {"num_samples": num_samples, "superpixels": int(len(weights)), "clusters": int(len(nl.importance)),
              "seed": seed, "precision": scoring.resolve_precision(precision, diagnoser.device)}
    return superpixel_explanation("normlime", setup, combined, prob, time.perf_counter() - t0, params)
