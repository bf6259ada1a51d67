"""Explanations of a diagnosis: Grad-CAM, LIME and NormLIME heatmaps on the input radiograph's pixel grid.

* **Grad-CAM** (:func:`gradcam`) for every ensemble member and for the ensemble (member maps weighted as
  the ensemble weights their probabilities). One forward pass per member plus a backward pass through
  the classifier head only -- fast enough to be the Space's default.
* **LIME** (:func:`lime`) with the ``lime`` package's ``LimeImageExplainer`` on SLIC superpixels of the
  grey image, the neighbourhood scored in large batches (see :mod:`as_ai._lime`).
* **NormLIME** (:class:`NormLime`, :func:`normlime`): global importance of superpixel *kinds* learned over
  a dataset (``python -m train.explain``), used to re-weight an image's LIME map, as in PaddleX.
* **Faithfulness** (:func:`deletion_curve`, :func:`si_joint_hit`): how fast P(AS) falls as the
  top-ranked regions are removed, and whether the strongest region lies on a sacroiliac joint.

Every map is given on the pixel grid of the image passed in (the resize and centre crop of the
model's preprocessing are undone); pixels the model never sees (cut off by the centre crop) are 0.

Example:
    >>> from as_ai.diagnosis import Diagnoser                                   # doctest: +SKIP
    >>> d = Diagnoser.from_pretrained("as_ai/demo_models/diagnosis")            # doctest: +SKIP
    >>> e = explain(d, "pelvis.png", method="gradcam")                          # doctest: +SKIP
    >>> e.heatmap.shape == load_radiograph("pelvis.png").shape                  # doctest: +SKIP
    True
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from . import _gradcam, _lime, scoring
from .decoding import load_radiograph
from .radiograph import Radiograph
from .transforms import Preprocess, crop_box, model_grey, normalise, resized_size, to_input_grid  # noqa: F401  (re-exported)

if TYPE_CHECKING:  # pragma: no cover
    from .diagnosis import Diagnoser

METHODS = ("gradcam", "lime", "normlime")
NORMLIME_CONFIG = "normlime.json"
NORMLIME_FILE = "normlime.safetensors"
AUTO_MAX_SAMPLES = 1000  # num_samples=None: the most LIME draws before it stops anyway

__all__ = ["Explanation", "explain", "gradcam", "lime", "normlime", "NormLime", "DeletionCurve",
           "deletion_curve", "si_joint_hit", "METHODS"]


# ------------------------------------------------------------------------------------------------ result
@dataclass(frozen=True, eq=False)
class Explanation:
    """A heatmap explaining P(AS) for one image, on that image's pixel grid.

    Attributes:
        method: ``"gradcam"``, ``"lime"`` or ``"normlime"``.
        heatmap: float32 H x W. Grad-CAM: in [0, 1]. LIME / NormLIME: signed superpixel weights scaled
            to [-1, 1] (positive = raises P(AS)); 0 where the model does not see the image.
        probability: the calibrated ensemble P(AS) of the explained image.
        members: Grad-CAM only: member name -> its own heatmap (H x W, [0, 1]).
        segments: LIME / NormLIME: superpixel label per pixel (int32 H x W, -1 outside the model's view).
        weights: LIME / NormLIME: the (unscaled) weight of each superpixel.
        seconds: wall time spent computing the explanation.
        params: how it was computed (samples, superpixels, seed, ...).
    """

    method: str
    heatmap: np.ndarray = field(repr=False)
    probability: float
    members: dict[str, np.ndarray] | None = field(default=None, repr=False)
    segments: np.ndarray | None = field(default=None, repr=False)
    weights: tuple[float, ...] | None = field(default=None, repr=False)
    seconds: float = 0.0
    params: dict[str, Any] = field(default_factory=dict)
    target: str = "AS"

    def top_regions(self, k: int = 5) -> list[int]:
        """The ``k`` superpixels with the largest positive weight (LIME / NormLIME), strongest first."""
        if self.weights is None:
            raise ValueError(f"{self.method} explanations have no superpixels; use method='lime'")
        order = np.argsort(-np.asarray(self.weights), kind="stable")
        return [int(i) for i in order[:k]]

    def to_dict(self, *, max_side: int = 64) -> dict[str, Any]:
        """JSON-serialisable summary: the heatmap downsampled to at most ``max_side`` px a side."""
        return {
            "method": self.method, "target": self.target, "probability": float(self.probability),
            "shape": [int(s) for s in self.heatmap.shape],
            "heatmap": np.round(_shrink(self.heatmap, max_side), 4).tolist(),
            "members": None if self.members is None else sorted(self.members),
            "weights": None if self.weights is None else [float(w) for w in self.weights],
            "seconds": float(self.seconds), "params": _jsonable(self.params),
        }


def _shrink(a: np.ndarray, max_side: int) -> np.ndarray:
    h, w = a.shape
    s = max(h, w) / max_side
    if s <= 1:
        return a
    t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))[None, None]
    return F.interpolate(t, size=(max(1, round(h / s)), max(1, round(w / s))), mode="area")[0, 0].numpy()


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    return v


# ------------------------------------------------------------------------------------------- the view
def _view(diagnoser: "Diagnoser") -> tuple[list[tuple[str, torch.nn.Module, float, int]], dict[int, Preprocess]]:
    """Members as (name, module, weight, input size) and the preprocessing of each input size."""
    ens = diagnoser.ensemble
    members = [(name, module, float(w), ens.input_sizes[name]) for name, module, w in ens.items()]
    return members, diagnoser.preprocess_by_size


def _read(diagnoser: "Diagnoser", image: Any) -> Radiograph:
    """The image as the members read it (``Diagnoser.model_views``: a photo stretched when the model says so)."""
    return diagnoser.model_views([load_radiograph(image)])[0]


# --------------------------------------------------------------------------------------------- Grad-CAM
def gradcam(diagnoser: "Diagnoser", image: Any) -> Explanation:
    """Grad-CAM of every member and of the ensemble, on the input image's pixel grid.

    Each member's map (``ReLU`` of the gradient-weighted last feature map, for the log-odds of AS) is
    scaled to a maximum of 1; the ensemble map is their mean weighted by the ensemble's member
    weights, again scaled to a maximum of 1.

    Raises:
        InvalidImageError: ``image`` cannot be read as a radiograph.

    Example:
        >>> e = gradcam(d, "pelvis.png")                   # doctest: +SKIP
        >>> e.heatmap.max(), sorted(e.members)             # doctest: +SKIP
        (1.0, ['mnv3_a', 'mnv3_b'])
    """
    t0 = time.perf_counter()
    rg = _read(diagnoser, image)
    members, by_size = _view(diagnoser)
    x = diagnoser.model_input([rg])
    big = max(by_size)
    crop = by_size[big].crop
    combined = torch.zeros((crop, crop))
    per_member: dict[str, np.ndarray] = {}
    total = sum(w for _, _, w, _ in members) or 1.0
    was_training = diagnoser.ensemble.training
    diagnoser.ensemble.eval()
    try:
        for name, module, weight, size in members:
            cam = _gradcam.member_cam(module, x[size].to(diagnoser.device)).cpu()
            cam = F.interpolate(cam[:, None].float(), size=(crop, crop), mode="bilinear", align_corners=False)[0, 0]
            cam = _gradcam.unit_max(cam[None])[0]
            per_member[name] = cam
            combined += (weight / total) * cam
    finally:
        diagnoser.ensemble.train(was_training)
    combined = _gradcam.unit_max(combined[None])[0]
    with torch.inference_mode():
        prob = float(diagnoser.predict_tensor(x)[0][0])
    shape = rg.shape
    heat = to_input_grid(combined, shape, by_size[big])
    maps = {n: to_input_grid(c, shape, by_size[big]) for n, c in per_member.items()}
    return Explanation(method="gradcam", heatmap=heat.astype(np.float32), probability=prob,
                       members={k: v.astype(np.float32) for k, v in maps.items()},
                       seconds=time.perf_counter() - t0,
                       params={"target": "log-odds of AS", "layer": "last feature map (forward_features)",
                               "weights": {n: w / total for n, _, w, _ in members}})


# ------------------------------------------------------------------------------------------------ LIME
@dataclass(frozen=True)
class _LimeSetup:
    rg: Radiograph
    view: np.ndarray          # crop x crop grey, what the largest-input members see
    segments: np.ndarray      # crop x crop int32
    predictor: _lime.MaskPredictor
    preprocess: Preprocess


def _model_view(diagnoser: "Diagnoser", rg: Radiograph) -> tuple[np.ndarray, Preprocess]:
    """The grey crop (before normalisation) that the members with the largest input see."""
    _, by_size = _view(diagnoser)
    p = by_size[max(by_size)]
    return model_grey(rg, p)[0].numpy(), p


def _grid_fn(diagnoser: "Diagnoser", crop: int):
    """Linear map from the largest crop grid to every member size's grid (resize for the smaller ones)."""
    sizes = sorted({s for s in diagnoser.ensemble.sizes})

    def to_grids(x: torch.Tensor) -> dict[int, torch.Tensor]:
        out = {}
        for s in sizes:
            out[s] = x if s == crop else F.interpolate(x[:, None], size=(s, s), mode="bilinear",
                                                       align_corners=False, antialias=True)[:, 0]
        return out

    return to_grids


def _predict_fn(diagnoser: "Diagnoser", precision: str = "float32"):
    """Grey grids {size: (B, s, s)} in [0, 1] -> (B, 2) [P(non-AS), P(AS)], calibrated.

    ``"float32"`` runs the diagnoser's own members; other precisions the scoring copy of
    :mod:`as_ai.scoring` (BatchNorm folded, bfloat16 where native).
    """
    _, by_size = _view(diagnoser)
    scorer = None if precision == "float32" else scoring.scoring_ensemble(diagnoser, precision)[0]

    def predict(grids: Mapping[int, torch.Tensor]) -> np.ndarray:
        x = {s: normalise(g[:, None], by_size[s]).contiguous(memory_format=torch.channels_last)
             for s, g in grids.items()}
        with torch.inference_mode():
            p = (diagnoser.predict_tensor(x)[0] if scorer is None else scoring.score(diagnoser, scorer, x))
        p = p.double().numpy()
        return np.stack([1.0 - p, p], axis=1)

    return predict


def _lime_setup(diagnoser: "Diagnoser", image: Any, *, n_segments: int, precision: str = "float32") -> _LimeSetup:
    rg = _read(diagnoser, image)
    view, p = _model_view(diagnoser, rg)
    segments = _lime.segment_radiograph(view, n_segments=n_segments)
    predictor = _lime.MaskPredictor(view, segments, to_model_grid=_grid_fn(diagnoser, p.crop),
                                    predict=_predict_fn(diagnoser, precision))
    return _LimeSetup(rg=rg, view=view, segments=segments, predictor=predictor, preprocess=p)


def _sampling(num_samples: int | None) -> tuple[int, _lime.StopRule | None]:
    """(most samples to draw, stop rule): ``None`` samples until the top regions are stable."""
    if num_samples is None:
        return AUTO_MAX_SAMPLES, _lime.StopRule()
    if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)) or num_samples < 10:
        raise ValueError(f"num_samples must be None (until stable) or a whole number >= 10 for a stable LIME "
                         f"fit, got {num_samples!r}")
    return int(num_samples), None


def _batch(precision: str) -> int:
    """The scoring batch that runs fastest per image on a CPU (measured on 2 cores: bfloat16 gains up to
    64, float32 loses beyond 16 as activations overflow the caches)."""
    return 32 if precision == "bfloat16" else 16


def _explained_probability(diagnoser: "Diagnoser", setup: _LimeSetup) -> float:
    """The calibrated P(AS) of the explained view, at full precision (the diagnosis's own number)."""
    grids = _grid_fn(diagnoser, setup.preprocess.crop)(torch.from_numpy(setup.view)[None])
    return float(_predict_fn(diagnoser, "float32")(grids)[0, 1])


def _superpixel_explanation(method: str, setup: _LimeSetup, weights: np.ndarray, prob: float, seconds: float,
                            params: dict[str, Any]) -> Explanation:
    scale = float(np.abs(weights).max()) or 1.0
    crop_map = (weights / scale)[setup.segments]
    shape = setup.rg.shape
    heat = to_input_grid(crop_map, shape, setup.preprocess, mode="nearest")
    seg = to_input_grid(setup.segments.astype(np.float32), shape, setup.preprocess, mode="nearest", fill=-1)
    return Explanation(method=method, heatmap=heat.astype(np.float32), probability=prob,
                       segments=seg.astype(np.int32), weights=tuple(float(w) for w in weights),
                       seconds=seconds, params=params)


def lime(diagnoser: "Diagnoser", image: Any, *, num_samples: int | None = None, n_segments: int = _lime.N_SEGMENTS,
         batch_size: int | None = None, seed: int = 0, precision: str = "auto",
         progress: Callable[[int, int], None] | None = None) -> Explanation:
    """LIME superpixel weights for P(AS), on the input image's pixel grid.

    Superpixels are SLIC regions of what the model sees (the preprocessed crop). Random on/off patterns
    (hidden superpixels filled with their mean) are scored by the ensemble ``batch_size`` at a time (default:
    what runs fastest on a CPU, 32 in bfloat16 and 16 in float32) and
    ``lime`` fits its weighted ridge model. ``num_samples=None`` (the default) scores patterns until the
    top-5 regions and the weights stop changing (:class:`as_ai._lime.StopRule`; at most 1,000, typically
    about 350); a number scores exactly that many, as ``lime`` does. ``precision`` is that of the
    scoring passes (``"auto"``: bfloat16 where the hardware computes it natively, see
    :mod:`as_ai.scoring`; ``"float32"``: the members as they are). ``progress(done, planned)`` is called
    after every batch. ``params["num_samples"]`` says how many were scored.

    Raises:
        InvalidImageError: ``image`` cannot be read as a radiograph.
        ValueError: ``num_samples`` < 10, or an unknown ``precision``.

    Example:
        >>> e = lime(d, "pelvis.png")                      # doctest: +SKIP
        >>> e.top_regions(3)                               # doctest: +SKIP
        [12, 40, 7]
    """
    limit, stop = _sampling(num_samples)
    used = scoring.resolve_precision(precision, diagnoser.device)
    t0 = time.perf_counter()
    setup = _lime_setup(diagnoser, image, n_segments=n_segments, precision=used)
    weights, details = _lime.run_lime(setup.view, setup.segments, setup.predictor, num_samples=limit,
                                      batch_size=batch_size or _batch(used), seed=seed, stop=stop, progress=progress)
    prob = _explained_probability(diagnoser, setup)
    params = {"superpixels": int(len(weights)), "segmentation": "slic", "compactness": _lime.SLIC_COMPACTNESS,
              "seed": seed, "precision": used, "sampling": "until stable" if stop else "fixed",
              "max_samples": limit, **details}
    return _superpixel_explanation("lime", setup, weights, prob, time.perf_counter() - t0, params)


# -------------------------------------------------------------------------------------------- NormLIME
def _early_module(module: torch.nn.Module) -> tuple[str, int]:
    """Name and stride of the first timm feature stage with stride >= 8 (early, local features)."""
    info = getattr(module, "feature_info", None)
    if not info:
        raise ValueError(f"{type(module).__name__} has no timm feature_info; NormLIME needs a timm CNN member")
    entries = [(i["module"], int(i["reduction"])) for i in info]
    for name, red in entries:
        if red >= 8:
            return name, red
    return entries[-1]


def superpixel_features(diagnoser: "Diagnoser", view: np.ndarray, segments: np.ndarray, *,
                        member: str | None = None) -> np.ndarray:
    """Mean early-layer feature vector of each superpixel (S, C), from one member (default: heaviest)."""
    members, by_size = _view(diagnoser)
    name, module, _, size = (max(members, key=lambda m: m[2]) if member is None
                             else next(m for m in members if m[0] == member))
    layer, _ = _early_module(module)
    grabbed: list[torch.Tensor] = []
    hook = module.get_submodule(layer).register_forward_hook(lambda _m, _i, out: grabbed.append(out))
    try:
        grids = _grid_fn(diagnoser, view.shape[0])(torch.from_numpy(np.ascontiguousarray(view))[None])
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
        (folder / NORMLIME_CONFIG).write_text(json.dumps(_jsonable(self.info), indent=2) + "\n", encoding="utf-8")
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


def lime_with_features(diagnoser: "Diagnoser", image: Any, *, num_samples: int | None = None,
                       n_segments: int = _lime.N_SEGMENTS, batch_size: int | None = None, seed: int = 0,
                       member: str | None = None, precision: str = "auto",
                       progress: Callable[[int, int], None] | None = None
                       ) -> tuple[np.ndarray, np.ndarray, _LimeSetup]:
    """(LIME weights (S,), superpixel features (S, C), setup) of one image: what NormLIME is fitted on."""
    limit, stop = _sampling(num_samples)
    used = scoring.resolve_precision(precision, diagnoser.device)
    setup = _lime_setup(diagnoser, image, n_segments=n_segments, precision=used)
    weights, _ = _lime.run_lime(setup.view, setup.segments, setup.predictor, num_samples=limit,
                                batch_size=batch_size or _batch(used), seed=seed, stop=stop, progress=progress)
    feats = superpixel_features(diagnoser, setup.view, setup.segments, member=member)
    return weights, feats, setup


def normlime(diagnoser: "Diagnoser", image: Any, stats: NormLime | str | Path, *, num_samples: int | None = None,
             n_segments: int | None = None, batch_size: int | None = None, seed: int = 0, precision: str = "auto",
             progress: Callable[[int, int], None] | None = None) -> Explanation:
    """NormLIME map of one image: its LIME weights times the global importance of their clusters.

    ``stats`` is a :class:`NormLime` or the folder ``python -m train.explain`` wrote; the other
    arguments are :func:`lime`'s.

    Raises:
        FileNotFoundError: ``stats`` is a folder without NormLIME statistics.
    """
    t0 = time.perf_counter()
    nl = stats if isinstance(stats, NormLime) else NormLime.load(stats)
    n_seg = int(n_segments or nl.info.get("n_segments", _lime.N_SEGMENTS))
    weights, feats, setup = lime_with_features(diagnoser, image, num_samples=num_samples, n_segments=n_seg,
                                               batch_size=batch_size, seed=seed, member=nl.info.get("member"),
                                               precision=precision, progress=progress)
    combined = nl.combine(weights, feats)
    prob = _explained_probability(diagnoser, setup)
    params = {"num_samples": num_samples, "superpixels": int(len(weights)), "clusters": int(len(nl.importance)),
              "seed": seed, "precision": scoring.resolve_precision(precision, diagnoser.device)}
    return _superpixel_explanation("normlime", setup, combined, prob, time.perf_counter() - t0, params)


# ------------------------------------------------------------------------------------------- dispatcher
def explain(diagnoser: "Diagnoser", image: Any, *, method: str = "gradcam", **options: Any) -> Explanation:
    """Explain the diagnosis of ``image`` with ``method`` ("gradcam", "lime" or "normlime").

    ``options`` go to :func:`gradcam`, :func:`lime` or :func:`normlime` (which needs ``stats=``).

    Raises:
        ValueError: unknown method.
        InvalidImageError: ``image`` cannot be read as a radiograph.
    """
    if method == "gradcam":
        return gradcam(diagnoser, image, **options)
    if method == "lime":
        return lime(diagnoser, image, **options)
    if method == "normlime":
        stats = options.pop("stats", None)
        if stats is None:
            raise ValueError("method='normlime' needs stats= (a NormLime or the folder train.explain wrote)")
        return normlime(diagnoser, image, stats, **options)
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")


# ---------------------------------------------------------------------------------------- faithfulness
@dataclass(frozen=True)
class DeletionCurve:
    """P(AS) as growing shares of the image, most important first, are replaced by a blurred copy.

    ``auc`` is the normalised area under the curve (mean over the fractions, trapezoid rule): lower
    means the map found what the model relies on.
    """

    fractions: tuple[float, ...]
    probabilities: tuple[float, ...]
    auc: float

    def to_dict(self) -> dict[str, Any]:
        return {"fractions": list(self.fractions), "probabilities": list(self.probabilities), "auc": self.auc}


def deletion_curve(diagnoser: "Diagnoser", image: Any, heatmap: np.ndarray | None, *, steps: int = 20,
                   seed: int = 0) -> DeletionCurve:
    """Deletion curve of a heatmap (input grid); ``heatmap=None`` ranks pixels at random (the baseline).

    Only pixels the model sees are ranked (outside its centre crop nothing changes). Removed pixels
    take the value of a Gaussian-blurred copy of the image (sigma 4 % of the short side), which removes
    detail without adding edges. Ties in the map are broken at random (``seed``).
    """
    from scipy import ndimage

    rg = load_radiograph(image)
    px = np.asarray(rg.pixels, dtype=np.float32)
    h, w = px.shape
    _, by_size = _view(diagnoser)
    p = by_size[max(by_size)]
    seen = to_input_grid(np.ones((p.crop, p.crop), np.float32), (h, w), p, mode="nearest") > 0.5
    rng = np.random.default_rng(seed)
    score = rng.random((h, w)) if heatmap is None else np.asarray(heatmap, np.float64) + 1e-9 * rng.random((h, w))
    score = np.where(seen, score, -np.inf)
    order = np.argsort(-score, axis=None, kind="stable")[: int(seen.sum())]
    blurred = ndimage.gaussian_filter(px, 0.04 * min(h, w)).astype(np.float32)
    fractions = np.linspace(0.0, 1.0, steps + 1)
    batch = []
    for f in fractions:
        img = px.copy().ravel()
        idx = order[: int(round(f * len(order)))]
        img[idx] = blurred.ravel()[idx]
        batch.append(img.reshape(h, w))
    probs = diagnoser.predict_proba(batch, batch_size=len(batch))
    auc = float(np.sum((probs[1:] + probs[:-1]) / 2 * np.diff(fractions)))  # trapezoid rule, any NumPy
    return DeletionCurve(tuple(float(f) for f in fractions), tuple(float(q) for q in probs), auc)


def si_joint_hit(heatmap: np.ndarray, rois: Mapping[str, Any] | Iterable[Any], *, keys: Sequence[str] | None = None,
                 top: float = 0.95) -> bool:
    """Whether the strongest region of a heatmap lies in a sacroiliac-joint ROI.

    The strongest region is the set of pixels at or above ``top`` times the map's maximum (a Grad-CAM
    peak, or the top LIME superpixel); it hits when its centroid lies inside one of the ROI boxes.
    ``rois`` maps names to pixel boxes ``(x0, y0, x1, y1)`` (end exclusive, as the phantom generator's
    ``meta["rois"]``) or is a list of such boxes; ``keys`` picks the SI-joint entries (default: names
    starting with "sij").
    """
    hm = np.asarray(heatmap, dtype=np.float64)
    peak = hm.max()
    if not np.isfinite(peak) or peak <= 0:
        return False
    ys, xs = np.nonzero(hm >= top * peak)
    cy, cx = ys.mean(), xs.mean()
    boxes = _si_boxes(rois, keys)
    return any(x0 <= cx < x1 and y0 <= cy < y1 for x0, y0, x1, y1 in boxes)


def _si_boxes(rois: Mapping[str, Any] | Iterable[Any], keys: Sequence[str] | None) -> list[tuple[float, ...]]:
    if isinstance(rois, Mapping):
        names = list(keys) if keys is not None else [k for k in rois if str(k).lower().startswith("sij")]
        return [tuple(float(v) for v in rois[k]) for k in names]
    return [tuple(float(v) for v in b) for b in rois]
