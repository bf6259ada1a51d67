"""A split of an imagefolder dataset in memory, and the training and validation samples drawn from it.

:func:`read_split` reads ``metadata.csv`` and every image through ``as_ai.imaging.load_radiograph`` (PNG,
JPEG, TIFF or DICOM), resized once: the training-size copy (uint8) and the model's eval crops (float16, the
view ``as_ai.transforms`` cuts, before normalisation). With phone augmentation it also precomputes simulated
smartphone photos of a share of the images (in worker processes). :class:`TrainSet` shows a random
augmentation of an image or of its photo; :class:`EvalSet` the normalised eval crop.
:func:`fit_intensity_reference` measures the intensity standardisation's reference on training images.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import pandas as pd
import torch

if TYPE_CHECKING:
    from train.config import TrainConfig

LABELS = ("non-AS", "AS")


@dataclass
class Images:
    """One split in memory: training-size images (uint8, short edge = train_resize_short), eval crops."""

    files: list[str]
    meta: pd.DataFrame
    y: np.ndarray                      # reference labels, 1 = AS
    train: list[torch.Tensor]          # 1 x H x W uint8, short edge train_resize_short
    eval: dict[int, torch.Tensor]      # size -> N x 1 x s x s float16 (as_ai.transforms.model_grey, before normalise)
    phone: dict[int, list[torch.Tensor]] | None = None   # image index -> its phone photos (train size, uint8)


def read_split(folder: Path, cfg: TrainConfig, pp: Any, sizes: Sequence[int], *, train_size: bool,
               phone: bool = False, limit: int | None = None, desc: str = "", view: Any = None) -> Images:
    """Read ``folder/metadata.csv`` and its images (through load_radiograph), resized once.

    ``view`` (Radiograph -> Radiograph), when given, is what the model makes of each image before reading
    it (``Diagnoser.model_views``: e.g. photos of a screen contrast-stretched); evaluation splits pass it.
    """
    from tqdm.auto import tqdm

    from as_ai.imaging import load_radiograph
    from as_ai.transforms import model_grey, scaled_for_size

    meta_path = folder / "metadata.csv"
    if not meta_path.is_file():
        raise SystemExit(f"{meta_path} not found: --data must hold an imagefolder dataset "
                         f"({cfg.train_split}/metadata.csv with file_name and {cfg.label_column} columns)")
    meta = pd.read_csv(meta_path)
    if limit:
        meta = meta.iloc[:limit].reset_index(drop=True)
    for col in ("file_name", cfg.label_column):
        if col not in meta.columns:
            raise SystemExit(f"{meta_path} has no {col!r} column (columns: {list(meta.columns)})")
    y = binary_labels(meta[cfg.label_column], meta_path)
    train_imgs = []
    evals: dict[int, list[torch.Tensor]] = {s: [] for s in sizes}
    phone_jobs = []
    chosen = set(np.random.default_rng(cfg.seed).permutation(len(meta))[:int(round(cfg.phone_fraction * len(meta)))])
    for i, name in enumerate(tqdm(meta["file_name"], desc=desc or folder.name, unit="img", leave=False, disable=None)):
        rg = load_radiograph(folder / name)
        if view is not None:
            rg = view(rg)
        t = torch.from_numpy(np.array(rg.pixels))[None]
        for s in sizes:
            evals[s].append(model_grey(rg, scaled_for_size(pp, s)).to(torch.float16))
        if train_size:
            train_imgs.append(_train_resized(t, _train_scale(pp, cfg)))
        if phone and i in chosen:
            pixels = np.array(rg.pixels)  # one copy, shared by the variants' jobs
            for k in range(cfg.phone_variants):  # variant k: the next level, its own scene
                phone_jobs.append((i, pixels, int(cfg.phone_levels[(i + k) % len(cfg.phone_levels)]),
                                   cfg.seed * 100003 + i + k * 1_000_003, _train_scale(pp, cfg).train_resize_short,
                                   tuple(cfg.photo_stretch) if cfg.photo_stretch and cfg.train_photos_stretched else None,
                                   bool(cfg.photo_rectify)))
    phone_imgs: dict[int, list[torch.Tensor]] | None = None
    if phone_jobs:
        phone_imgs = {}
        for i, photo in _phone_photos(phone_jobs, cfg.workers):
            phone_imgs.setdefault(i, []).append(photo)
    return Images(files=list(meta["file_name"]), meta=meta, y=y, train=train_imgs,
                  eval={s: torch.stack(v) for s, v in evals.items()}, phone=phone_imgs)


def fit_intensity_reference(folder: Path, pp: Any, *, limit: int = 300) -> Any:
    """``pp`` with its ``intensity_reference`` measured on up to ``limit`` training images of ``folder``.

    Each image is cut as the model's view would cut it, without the standardisation itself
    (``as_ai.transforms.intensity_reference`` of those crops), so a training image is left almost as it was.
    A ``pp`` with ``intensity: none`` is returned unchanged.
    """
    from as_ai.imaging import load_radiograph
    from as_ai.transforms import intensity_reference, model_grey

    if pp.intensity == "none":
        return pp
    raw = dataclasses.replace(pp, intensity="none", blur_sigma=0.0)
    names = pd.read_csv(folder / "metadata.csv")["file_name"].iloc[:limit]
    crops = [model_grey(load_radiograph(folder / n), raw)[0] for n in names]
    ref = intensity_reference(torch.stack(crops), pp.intensity_window)
    return dataclasses.replace(pp, intensity_reference=tuple(round(v, 6) for v in ref))


def _phone_photo(job: tuple) -> tuple[int, torch.Tensor]:
    """One simulated smartphone photo of a training image, read back like any input (load_radiograph)."""
    from types import SimpleNamespace

    from as_ai.imaging import load_radiograph
    from as_ai.synthetic.phone import photograph

    i, pixels, level, seed, short, stretch, rectify = job
    photo = load_radiograph(photograph(pixels, level=level, seed=seed))
    if rectify:  # as the model will read photos (as_ai.transforms.photo_view)
        from as_ai.transforms import rectify_photo

        photo = rectify_photo(photo)
    if stretch is not None:
        from as_ai.transforms import stretch_contrast

        photo = stretch_contrast(photo, stretch)
    return i, _train_resized(torch.from_numpy(np.array(photo.pixels))[None], SimpleNamespace(train_resize_short=short))


def _one_thread() -> None:
    """Pool initializer: one torch and one BLAS thread per worker (see _phone_photos)."""
    from as_ai.synthetic.datasets import _one_blas_thread

    torch.set_num_threads(1)
    _one_blas_thread()


def _phone_photos(jobs: list[tuple], workers: int) -> list[tuple[int, torch.Tensor]]:
    from tqdm.auto import tqdm

    if workers <= 1:
        return [_phone_photo(j) for j in tqdm(jobs, desc="phone photos", unit="img", leave=False, disable=None)]
    import multiprocessing as mp

    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    # one torch thread per worker (as DataLoader workers): a forked child that enters the parent's OpenMP
    # thread pool hangs once the parent has run a parallel op (training with threads >= 2); one BLAS thread
    # per worker, or N workers on N cores run N x N threads
    with ctx.Pool(workers, initializer=_one_thread) as pool:
        return list(tqdm(pool.imap(_phone_photo, jobs, chunksize=4), total=len(jobs), desc="phone photos",
                         unit="img", leave=False, disable=None))


def _train_scale(pp: Any, cfg: TrainConfig) -> Any:
    """The short edge training images are cached at: the paper's train size, or the eval size ("centred")."""
    return dataclasses.replace(pp, train_resize_short=pp.resize_short) if cfg.augment == "centred" else pp


def _train_resized(t: torch.Tensor, pp: Any) -> torch.Tensor:
    """A training image cached at the short edge the training view starts from (uint8, to save memory)."""
    from as_ai.transforms import resize_short_edge

    return (resize_short_edge(t, pp.train_resize_short).clamp(0, 1) * 255).round().to(torch.uint8)


def binary_labels(col: pd.Series, where: Path) -> np.ndarray:
    """AS / non-AS (or 1/0, True/False) labels as 0/1 ints; anything else stops the run."""
    values = col.astype(str).str.strip()
    bad = sorted(set(values) - set(LABELS) - {"0", "1", "True", "False"})
    if bad:
        raise SystemExit(f"{where}: labels must be 'AS'/'non-AS' (or 1/0), found {bad[:5]}")
    return values.isin(["AS", "1", "True"]).to_numpy().astype(np.int64)


class TrainSet(torch.utils.data.Dataset):
    """Training samples: random augmentation (train_transform) of the cached image or its phone photo.

    The augmentation strengths the curriculum sets each epoch (``phone_p`` and, when ``jitter`` is given,
    its chance ``jitter_p``) live in shared memory, so DataLoader worker processes that outlive an epoch
    see the new values at once.
    """

    def __init__(self, data: Images, idx: np.ndarray, transform: Any, phone_p: float,
                 jitter: torch.nn.Module | None = None, y: np.ndarray | None = None) -> None:
        self.data, self.idx, self.transform, self.jitter = data, idx, transform, jitter
        self.y = data.y if y is None else y    # the labels this model learns
        self._strength = torch.tensor([float(phone_p), float(getattr(jitter, "p", 0.0))],
                                      dtype=torch.float64).share_memory_()   # exact, as the floats were

    @property
    def phone_p(self) -> float:
        """Chance of showing a sample's phone photo instead of the radiograph."""
        return float(self._strength[0])

    @phone_p.setter
    def phone_p(self, value: float) -> None:
        self._strength[0] = float(value)

    @property
    def jitter_p(self) -> float:
        """Chance that ``jitter`` re-processes a sample as another centre might."""
        return float(self._strength[1])

    @jitter_p.setter
    def jitter_p(self, value: float) -> None:
        self._strength[1] = float(value)

    def __len__(self) -> int:
        return len(self.idx)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        j = int(self.idx[i])
        if self.jitter is not None:          # this process's copy of the transform takes the current chance
            self.jitter.p = self.jitter_p
        src = self.data.train[j]
        if self.data.phone is not None and j in self.data.phone and float(torch.rand(())) < self.phone_p:
            photos = self.data.phone[j]
            # one photo: no extra draw, so runs without variants keep their random stream (and resume alike)
            src = photos[int(torch.randint(len(photos), ()))] if len(photos) > 1 else photos[0]
        return self.transform(src.float() / 255.0), int(self.y[j])


class EvalSet(torch.utils.data.Dataset):
    """Eval samples: the cached model views, normalised like ``as_ai.transforms.to_model_input``."""

    def __init__(self, data: Images, idx: np.ndarray, size: int, pp: Any) -> None:
        self.x, self.idx, self.pp = data.eval[size], idx, pp

    def __len__(self) -> int:
        return len(self.idx)

    def __getitem__(self, i: int) -> torch.Tensor:
        from as_ai.transforms import normalise

        return normalise(self.x[int(self.idx[i])], self.pp)
