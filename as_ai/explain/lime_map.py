"""LIME for one radiograph: superpixel weights for P(AS), scored on the members' own view of the image.

Superpixels are SLIC regions of what the largest-input members see (the preprocessed grey crop, see
:func:`model_view`); random on/off patterns of them are scored by the ensemble in batches (through a
:class:`~as_ai.explain._lime_core.MaskPredictor`, which builds each pattern's input for every member size
in one matrix product) and the ``lime`` package fits its weighted ridge model. The weights come back
mapped to the input image's pixel grid (:func:`superpixel_explanation`). NormLIME reuses the setup
(:func:`lime_setup`) and the sampling rule (:func:`sampling`) of this module.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from .. import scoring
from ..preprocess import Preprocess
from ..radiograph import Radiograph
from ..transforms import model_grey, normalise, to_input_grid
from . import _lime_core
from .protocol import Explainable, ensemble_view, read_view
from .result import Explanation

AUTO_MAX_SAMPLES = 1000  # num_samples=None: the most LIME draws before it stops anyway

__all__ = ["lime", "LimeSetup", "lime_setup", "model_view", "member_grids_fn", "sampling", "scoring_batch",
           "explained_probability", "superpixel_explanation", "AUTO_MAX_SAMPLES"]


@dataclass(frozen=True)
class LimeSetup:
    """One image prepared for LIME: the radiograph, the members' grey view of it, its superpixels and the scorer."""

    rg: Radiograph
    view: np.ndarray          # crop x crop grey, what the largest-input members see
    segments: np.ndarray      # crop x crop int32
    predictor: _lime_core.MaskPredictor
    preprocess: Preprocess


def model_view(diagnoser: Explainable, rg: Radiograph) -> tuple[np.ndarray, Preprocess]:
    """The grey crop (before normalisation) that the members with the largest input see."""
    _, by_size = ensemble_view(diagnoser)
    p = by_size[max(by_size)]
    return model_grey(rg, p)[0].numpy(), p


def member_grids_fn(diagnoser: Explainable, crop: int):
    """Linear map from the largest crop grid to every member size's grid (resize for the smaller ones)."""
    sizes = sorted({s for s in diagnoser.ensemble.sizes})

    def to_grids(x: torch.Tensor) -> dict[int, torch.Tensor]:
        out = {}
        for s in sizes:
            out[s] = x if s == crop else F.interpolate(x[:, None], size=(s, s), mode="bilinear",
                                                       align_corners=False, antialias=True)[:, 0]
        return out

    return to_grids


def _predict_fn(diagnoser: Explainable, precision: str = "float32"):
    """Grey grids {size: (B, s, s)} in [0, 1] -> (B, 2) [P(non-AS), P(AS)], calibrated.

    ``"float32"`` runs the diagnoser's own members; other precisions the scoring copy of
    :mod:`as_ai.scoring` (BatchNorm folded, bfloat16 where native).
    """
    _, by_size = ensemble_view(diagnoser)
    scorer = None if precision == "float32" else scoring.scoring_ensemble(diagnoser, precision)[0]

    def predict(grids: Mapping[int, torch.Tensor]) -> np.ndarray:
        x = {s: normalise(g[:, None], by_size[s]).contiguous(memory_format=torch.channels_last)
             for s, g in grids.items()}
        with torch.inference_mode():
            p = (diagnoser.predict_tensor(x)[0] if scorer is None else scoring.score(diagnoser, scorer, x))
        p = p.double().numpy()
        return np.stack([1.0 - p, p], axis=1)

    return predict


def lime_setup(diagnoser: Explainable, image: Any, *, n_segments: int, precision: str = "float32") -> LimeSetup:
    """Read ``image`` as the members do, cut its view into ``n_segments`` superpixels and build the scorer."""
    rg = read_view(diagnoser, image)
    view, p = model_view(diagnoser, rg)
    segments = _lime_core.segment_radiograph(view, n_segments=n_segments)
    predictor = _lime_core.MaskPredictor(view, segments, to_model_grid=member_grids_fn(diagnoser, p.crop),
                                         predict=_predict_fn(diagnoser, precision))
    return LimeSetup(rg=rg, view=view, segments=segments, predictor=predictor, preprocess=p)


def sampling(num_samples: int | None) -> tuple[int, _lime_core.StopRule | None]:
    """(most samples to draw, stop rule): ``None`` samples until the top regions are stable."""
    if num_samples is None:
        return AUTO_MAX_SAMPLES, _lime_core.StopRule()
    if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)) or num_samples < 10:
        raise ValueError(f"num_samples must be None (until stable) or a whole number >= 10 for a stable LIME "
                         f"fit, got {num_samples!r}")
    return int(num_samples), None


def scoring_batch(precision: str) -> int:
    """The scoring batch that runs fastest per image on a CPU (measured on 2 cores: bfloat16 gains up to
    64, float32 loses beyond 16 as activations overflow the caches)."""
    return 32 if precision == "bfloat16" else 16


def explained_probability(diagnoser: Explainable, setup: LimeSetup) -> float:
    """The calibrated P(AS) of the explained view, at full precision (the diagnosis's own number)."""
    grids = member_grids_fn(diagnoser, setup.preprocess.crop)(torch.from_numpy(setup.view)[None])
    return float(_predict_fn(diagnoser, "float32")(grids)[0, 1])


def superpixel_explanation(method: str, setup: LimeSetup, weights: np.ndarray, prob: float, seconds: float,
                           params: dict[str, Any]) -> Explanation:
    """An :class:`Explanation` of superpixel ``weights``: scaled to [-1, 1] and mapped to the input image's grid."""
    scale = float(np.abs(weights).max()) or 1.0
    crop_map = (weights / scale)[setup.segments]
    shape = setup.rg.shape
    heat = to_input_grid(crop_map, shape, setup.preprocess, mode="nearest")
    seg = to_input_grid(setup.segments.astype(np.float32), shape, setup.preprocess, mode="nearest", fill=-1)
    return Explanation(method=method, heatmap=heat.astype(np.float32), probability=prob,
                       segments=seg.astype(np.int32), weights=tuple(float(w) for w in weights),
                       seconds=seconds, params=params)


def lime(diagnoser: Explainable, image: Any, *, num_samples: int | None = None,
         n_segments: int = _lime_core.N_SEGMENTS, batch_size: int | None = None, seed: int = 0,
         precision: str = "auto", progress: Callable[[int, int], None] | None = None) -> Explanation:
    """LIME superpixel weights for P(AS), on the input image's pixel grid.

    Superpixels are SLIC regions of what the model sees (the preprocessed crop). Random on/off patterns
    (hidden superpixels filled with their mean) are scored by the ensemble ``batch_size`` at a time (default:
    what runs fastest on a CPU, 32 in bfloat16 and 16 in float32) and
    ``lime`` fits its weighted ridge model. ``num_samples=None`` (the default) scores patterns until the
    top-5 regions and the weights stop changing (:class:`~as_ai.explain._lime_core.StopRule`; at most 1,000,
    typically about 350); a number scores exactly that many, as ``lime`` does. ``precision`` is that of the
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
    limit, stop = sampling(num_samples)
    used = scoring.resolve_precision(precision, diagnoser.device)
    t0 = time.perf_counter()
    setup = lime_setup(diagnoser, image, n_segments=n_segments, precision=used)
    weights, details = _lime_core.run_lime(setup.view, setup.segments, setup.predictor, num_samples=limit,
                                           batch_size=batch_size or scoring_batch(used), seed=seed, stop=stop,
                                           progress=progress)
    prob = explained_probability(diagnoser, setup)
    params = {"superpixels": int(len(weights)), "segmentation": "slic", "compactness": _lime_core.SLIC_COMPACTNESS,
              "seed": seed, "precision": used, "sampling": "until stable" if stop else "fixed",
              "max_samples": limit, **details}
    return superpixel_explanation("lime", setup, weights, prob, time.perf_counter() - t0, params)
