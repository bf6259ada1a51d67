"""LIME on radiographs, with the ``lime`` package doing the statistics (private core of :mod:`as_ai.explain`).

What the ``lime`` package does here: the random on/off superpixel design, the cosine-distance
kernel, feature selection and the weighted ridge fit (``LimeImageExplainer`` / ``LimeBase``).
What we change, and why:

* **Superpixels suited to radiographs.** ``lime``'s default is quickshift on RGB, tuned for colour
  photos; a radiograph is grey, so colour carries nothing and quickshift cuts it into hundreds of tiny
  fragments along noise. We use SLIC on the grey image (``channel_axis=None``), lightly smoothed
  (sigma 1 px), with a compactness scaled for intensities in [0, 1] (0.08) and 64 segments on the
  model's 224 px view: regions about 1/8 of the image wide that follow bone edges (sacral ala, iliac
  wing, joint line) yet stay compact enough to compare between images. Labels are renumbered 0..n-1
  as ``lime`` requires.
* **Perturbed images built in one go and scored in batches.** ``lime``'s ``data_labels`` copies
  the whole image and loops over superpixels for every sample, then calls the classifier 10 images
  at a time. :class:`BatchedLimeImageExplainer` draws exactly the same on/off matrix from the same
  random state and hands it to a :class:`MaskPredictor`, which uses that the model's view of the
  image is a linear map ``T`` of it (crop and resize, in float): with ``I`` the image, ``F`` the
  "hidden" image (each superpixel filled with its mean, ``lime``'s default ``hide_color=None``) and
  ``z`` a sample's on/off vector, ``T(F + sum_s z_s 1_s (I - F)) = T(F) + sum_s z_s T(1_s (I - F))``.
  The per-superpixel terms are computed once at the model's input size, so a sample costs one matrix
  product plus the forward pass, whatever the size of the radiograph. What remains is the ensemble's
  forward passes; on CPU they run fastest in batches of 8-16 (larger ones overflow the caches), so
  the speed-up over ``lime`` run on the model's own 224 px view is small, and large over ``lime`` run
  on the radiograph itself (see ``tests/benchmarks/bench_explain.py``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
from lime.lime_image import LimeImageExplainer

SLIC_COMPACTNESS = 0.08
SLIC_SIGMA = 1.0
N_SEGMENTS = 64

Grids = Mapping[int, torch.Tensor]


def segment_radiograph(gray: np.ndarray, *, n_segments: int = N_SEGMENTS, compactness: float = SLIC_COMPACTNESS,
                       sigma: float = SLIC_SIGMA) -> np.ndarray:
    """Superpixels of a grey radiograph (H, W) in [0, 1]: SLIC, labels renumbered 0..n-1 (int32)."""
    from skimage.segmentation import slic

    g = np.asarray(gray, dtype=np.float64)
    if g.ndim == 3:
        g = g.mean(axis=2)
    labels = slic(g, n_segments=int(n_segments), compactness=float(compactness), sigma=float(sigma),
                  channel_axis=None, start_label=0, enforce_connectivity=True)
    _, dense = np.unique(labels, return_inverse=True)
    return dense.reshape(labels.shape).astype(np.int32)


def mean_fill(gray: np.ndarray, segments: np.ndarray) -> np.ndarray:
    """The image with every superpixel replaced by its mean (``lime``'s default ``hide_color=None``)."""
    n = int(segments.max()) + 1
    flat = segments.ravel()
    sums = np.bincount(flat, weights=gray.ravel().astype(np.float64), minlength=n)
    counts = np.bincount(flat, minlength=n).clip(min=1)
    return (sums / counts)[segments].astype(gray.dtype)


class MaskPredictor:
    """Score LIME samples given as on/off vectors over superpixels, in batches.

    ``to_model_grid`` maps an (B, H, W) float tensor on the explained image's grid to the model's
    input grids ``{size: (B, h, w)}`` and must be linear (crop / resize, no clipping); ``predict`` maps
    such grids (grey, [0, 1]) to probabilities (B, K). Also callable on a batch of RGB images
    (N, H, W, 3), like any ``lime`` classifier function.
    """

    def __init__(self, gray: np.ndarray, segments: np.ndarray, *, to_model_grid: Callable[[torch.Tensor], Grids],
                 predict: Callable[[Grids], np.ndarray]) -> None:
        self.gray = np.asarray(gray, dtype=np.float32)
        self.segments = segments
        self.to_model_grid = to_model_grid
        self.predict = predict
        hidden = mean_fill(self.gray, segments)
        diff = torch.from_numpy(self.gray - hidden)
        seg = torch.from_numpy(segments.astype(np.int64))
        n = int(segments.max()) + 1
        chunk = max(1, int(2 ** 24 // max(1, self.gray.size)))
        with torch.inference_mode():
            self.base = {k: v[0].float() for k, v in to_model_grid(torch.from_numpy(hidden)[None]).items()}
            parts: dict[int, list[torch.Tensor]] = {k: [] for k in self.base}
            for start in range(0, n, chunk):
                ids = torch.arange(start, min(n, start + chunk))
                masks = (seg[None] == ids[:, None, None]).float() * diff[None]
                for k, v in to_model_grid(masks).items():
                    parts[k].append(v.float().flatten(1))
            self.parts = {k: torch.cat(v) for k, v in parts.items()}  # size -> (S, h*w)

    def predict_masks(self, data: np.ndarray, *, batch_size: int = 16) -> np.ndarray:
        """Probabilities for every row of an on/off matrix ``data`` (N, S)."""
        out = []
        z = torch.from_numpy(np.asarray(data, dtype=np.float32))
        with torch.inference_mode():
            for start in range(0, z.shape[0], batch_size):
                zb = z[start:start + batch_size]
                grids = {k: (self.base[k].flatten() + zb @ self.parts[k]).view(-1, *self.base[k].shape)
                         for k in self.base}
                out.append(np.asarray(self.predict(grids)))
        return np.concatenate(out)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """``lime``-style classifier: (N, H, W, 3) images on the explained grid -> probabilities (N, K)."""
        x = torch.from_numpy(np.asarray(images, dtype=np.float32)[..., 0])
        with torch.inference_mode():
            return np.asarray(self.predict(self.to_model_grid(x)))


class BatchedLimeImageExplainer(LimeImageExplainer):
    """``lime``'s image explainer, with the neighbourhood scored in batches from on/off vectors.

    The on/off design is drawn from the same random state in the same way as ``lime``'s
    ``data_labels`` (so the same seed gives the same samples); when the classifier function is a
    :class:`MaskPredictor`, the samples are scored from the on/off matrix directly, otherwise the
    perturbed images are built vectorised and passed on in batches of ``batch_size``.

    With ``stop`` (a :class:`StopRule`), samples are scored in steps and the neighbourhood ends as soon
    as the fit's top regions are stable (see :class:`StopRule`); the design is a prefix of the one
    ``lime`` would draw for ``num_samples``. ``progress(done, planned)`` is called after every batch.
    """

    def __init__(self, *args, stop: "StopRule | None" = None,
                 progress: Callable[[int, int], None] | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.stop = stop
        self.progress = progress
        self.samples_used = 0  # how many samples the last neighbourhood had

    def data_labels(self, image, fudged_image, segments, classifier_fn, num_samples, batch_size=10):
        n_features = np.unique(segments).shape[0]
        data = self.random_state.randint(0, 2, num_samples * n_features).reshape((num_samples, n_features))
        data[0, :] = 1
        if isinstance(classifier_fn, MaskPredictor):
            score = lambda rows: classifier_fn.predict_masks(rows, batch_size=batch_size)  # noqa: E731
        else:
            def score(rows):
                out = []
                for start in range(0, len(rows), batch_size):
                    keep = rows[start:start + batch_size].astype(bool)[:, segments]
                    out.extend(classifier_fn(np.where(keep[..., None], image[None], fudged_image[None])))
                return np.array(out)
        step = self.stop.step if self.stop is not None else batch_size
        labels: list[np.ndarray] = []
        fits: list[np.ndarray] = []
        done = 0
        while done < num_samples:
            end = min(num_samples, done + step)
            labels.append(np.asarray(score(data[done:end])))
            done = end
            if self.progress is not None:
                self.progress(done, num_samples)
            if self.stop is not None and done >= self.stop.min_samples - self.stop.step * self.stop.checks:
                fits.append(self.stop.weights(data[:done], np.concatenate(labels)[:, 1]))
                if done >= self.stop.min_samples and self.stop.stable(fits):
                    break
        self.samples_used = done
        return data[:done], np.concatenate(labels)


@dataclass(frozen=True)
class StopRule:
    """When to end LIME's neighbourhood: once the explanation has stopped changing.

    After every ``step`` samples (from ``min_samples`` on) the weighted ridge fit is redone; sampling
    stops when the ``top_k`` regions have been the same for the last ``checks`` steps and the weights
    correlate with those ``checks`` steps ago at ``min_corr`` or more. Measured against ``lime`` with
    5,000 samples on 20 phantoms (``tests/benchmarks/bench_explain.py::test_lime_fidelity``), the default
    stopped after a median of 448 samples, about as close to the 5,000-sample maps as ``lime``'s own
    1,000-sample default (docs/performance.md).
    """

    min_samples: int = 160
    step: int = 32
    checks: int = 2
    top_k: int = 5
    min_corr: float = 0.98
    kernel_width: float = 0.25

    def weights(self, data: np.ndarray, y: np.ndarray) -> np.ndarray:
        """``lime``'s fit on these samples: ridge (alpha 1) weighted by its kernel on the cosine distance."""
        from sklearn.linear_model import Ridge

        on = data.sum(axis=1)
        dist = 1.0 - np.sqrt(on / data.shape[1])            # cosine distance to the all-on sample
        w = np.sqrt(np.exp(-(dist ** 2) / self.kernel_width ** 2))
        return Ridge(alpha=1.0, fit_intercept=True).fit(data, y, sample_weight=w).coef_

    def stable(self, fits: Sequence[np.ndarray]) -> bool:
        """True when the last ``checks + 1`` fits share their top regions and the weights have settled."""
        if len(fits) < self.checks + 1:
            return False
        recent = fits[-(self.checks + 1):]
        tops = [frozenset(np.argsort(-f, kind="stable")[:self.top_k].tolist()) for f in recent]
        if len(set(tops)) != 1:
            return False
        return float(np.corrcoef(recent[0], recent[-1])[0, 1]) >= self.min_corr


def run_lime(gray: np.ndarray, segments: np.ndarray, predictor: MaskPredictor, *, num_samples: int,
             batch_size: int, seed: int, label: int = 1, stop: StopRule | None = None,
             progress: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, dict]:
    """LIME weights of every superpixel for ``label`` (array of length S) and the fit's details.

    With ``stop``, ``num_samples`` is the most that will be drawn; ``details["num_samples"]`` says how
    many were.
    """
    explainer = BatchedLimeImageExplainer(random_state=seed, stop=stop, progress=progress)
    rgb = np.repeat(np.asarray(gray, dtype=np.float64)[..., None], 3, axis=2)
    exp = explainer.explain_instance(rgb, predictor, labels=(label,), top_labels=None, hide_color=None,
                                     num_features=int(segments.max()) + 1, num_samples=num_samples,
                                     batch_size=batch_size, segmentation_fn=lambda _img: segments,
                                     random_seed=seed)
    weights = np.zeros(int(segments.max()) + 1, dtype=np.float64)
    for k, v in exp.local_exp[label]:
        weights[int(k)] = float(v)
    details = {"num_samples": explainer.samples_used, "intercept": float(exp.intercept[label]), "score": float(exp.score),
               "local_pred": float(np.ravel(exp.local_pred)[0])}
    return weights, details
