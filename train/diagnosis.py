#!/usr/bin/env python
"""Train the diagnosis CNN ensemble the way the reference study did, and write a model repository.

    python train/diagnosis.py --config train/configs/demo.yaml --data data/pxr --out runs/pxr
    accelerate launch train/diagnosis.py --config train/configs/paper.yaml --data data/pxr --out runs/paper

Reads top to bottom:
  1. config   typed :class:`TrainConfig` from YAML (``--set key=value`` overrides), saved as OUT/config.yaml
  2. seed     everything seeded before the split
  3. data     DATA/train/metadata.csv + image files (the Hugging Face ``imagefolder`` layout); every file is
              read with ``as_ai.imaging.load_radiograph`` (PNG, JPEG, TIFF or DICOM -- ``datasets``' own
              imagefolder loader cannot decode DICOM), resized once and kept in memory
  4. CV       per architecture, stratified k-fold (the same folds for all): train with early stopping
              on the validation AUC, fold metrics (AUC, accuracy, precision, recall, F1), out-of-fold
              (OOF) probabilities
  5. rank     architectures by mean CV AUC, keep the top k
  6. final    ``final: refit`` retrains each kept architecture on all training images for the median of its
              best fold epochs (no validation set left, so no early stopping); ``final: common_fold`` keeps
              every architecture's model of one fold, the fold with the best mean validation AUC (cheaper;
              each saw (k-1)/k of the data); ``final: best_fold`` keeps each architecture's best fold model
  7. ensemble combine OOF probabilities (mean / AUC-weighted), fit the calibration (temperature or Platt)
              and the decision threshold (Youden) on them -- never on data the models were trained on.
              With ``common_fold`` they are fitted on that fold's validation images, which no member
              trained on, from the shipped members' own predictions (pooled OOF would mix in the other
              folds' models, which are not shipped and may have trained worse)
  8. evaluate any extra splits present (e.g. DATA/external, DATA/external_phone) against the reference
              labels and, when the data engine wrote them, the true labels
  9. save     OUT/model: members in timm format, as_ai.json, README.md from model_cards/diagnosis.md
 10. publish  optional ``--push-to-hub org/name`` (train.publish)

Accelerate style: bf16 autocast on GPU, channels-last, gradient accumulation, cosine schedule with linear
warm-up, ``save_state`` checkpoints in OUT/checkpoints (``--resume`` continues; never published), tqdm bars,
optional TensorBoard (``tensorboard: true``). Everything trained on synthetic data is marked so.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):            # run as a script (accelerate launch train/diagnosis.py): find train.*
    sys.path.insert(0, str(REPO_ROOT))
LABELS = ("non-AS", "AS")


# ------------------------------------------------------------------------------------------------ 1. config

FINAL_MODES = ("refit", "common_fold", "best_fold")
CALIBRATE_ON = ("clean", "reacquired")

@dataclass
class TrainConfig:
    """Everything a training run depends on; saved with the run and into the model's ``as_ai.json``."""

    name: str = "demo"
    archs: list[str] = field(default_factory=lambda: ["mobilenetv3_small_050"])  # "[name=]timm_arch[.tag]"
    pretrained: Any = False              # true: ImageNet weights via timm (fail if offline); "auto": try, else scratch
    folds: int = 5
    top_k: int = 5
    final: str = "refit"                 # "refit" | "common_fold" | "best_fold"
    combine: str = "mean"                # "mean" | "auc_weighted"
    calibration: str = "temperature"     # "temperature" | "platt" | "none"
    calibrate_on: str = "clean"          # what calibration and threshold are fitted on: "clean" = out-of-fold
                                         # predictions on the validation images as they are; "reacquired" = on
                                         # those images re-processed as other centres might have recorded them
                                         # (the acquisition jitter at full strength), calibration_draws times each
    calibration_draws: int = 2
    calibration_label_column: str | None = None  # labels calibration and threshold are fitted to (null:
                                         # label_column); e.g. an expert panel's labels where training has noisier ones
    threshold: Any = "youden"            # "youden" or a number in (0, 1)
    preprocess: dict[str, Any] = field(default_factory=dict)   # as_ai.transforms.Preprocess fields
    augment: str = "paper"               # "paper": imaging.train_transform (short edge train_resize_short,
                                         # random train_crop); "centred": the eval view (short edge resize_short,
                                         # centre crop) with small random shifts/zoom, rotation and flips
    epochs: int = 10
    batch_size: int = 32
    grad_accum: int = 1
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    drop_rate: float = 0.2
    label_smoothing: float = 0.0
    clip_grad_norm: float | None = None  # clip the gradients' global L2 norm to this before each step (null: off)
    patience: int = 3                    # early stopping: epochs without a better validation AUC
    acquisition_jitter: float = 0.0      # chance of re-processing a training image as another centre might
                                         # (gamma, contrast, blur, edge enhancement, noise; train/_augment.py)
    jitter_blur: list[float] = field(default_factory=lambda: [0.5, 1.3])  # its blur: [chance, largest sigma px]
    zoom: float = 0.08                   # "centred" augmentation: random scale within 1 +- zoom (field of view)
    augment_after_auc: float | None = None  # curriculum: no jitter / phone photos until an epoch's validation AUC
                                         # reaches this (a network from scratch first has to find the joints)
    augment_ramp_epochs: int = 0         # then raise them linearly to full strength over this many epochs; the
                                         # best checkpoint and early stopping only count from full strength on
                                         # (before augmentation starts, the best clean epoch is kept)
    collapse_guard: list[float] | None = None  # [drop, epochs]: when validation AUC stays more than `drop` below
                                         # the epoch that started augmentation for `epochs` epochs in a row, go
                                         # back to that epoch's weights and ramp up again twice as slowly (at
                                         # most twice; then train on without augmentation). train/_collapse.py
    consistency: float = 0.0             # weight of a Jensen-Shannon consistency loss between each training image
                                         # and a copy re-blurred and re-noised as another detector would
                                         # (train/_augment.py: DetectorPair); 0 = off (one forward pass per step)
    photo_stretch: list[float] | None = None  # read photos of a screen with these percentiles mapped to 0 and 1
                                         # (as_ai.json "photo_input"; evaluation reads them so)
    train_photos_stretched: bool = False  # show the training phone photos stretched the same way too
    phone_augment: float = 0.0           # probability of showing a simulated phone photo of the image instead
    phone_fraction: float = 1.0          # share of training images that get a (precomputed) phone photo
    phone_variants: int = 1              # photos precomputed per image (other seeds, next levels): one is drawn
    phone_levels: list[int] = field(default_factory=lambda: [1, 2, 3, 4])
    workers: int = 1                     # processes for precomputing phone photos
    loader_workers: int = 0              # DataLoader processes augmenting training batches (0: in the training
                                         # process; on a GPU the augmentation is what limits images/s)
    label_column: str = "label"          # the reference label used for training (noisy reader on phantoms)
    member_labels: dict[str, str] | None = None  # member name -> the label column that member trains (and
                                         # early-stops) on, e.g. one reader each so that the members disagree
                                         # where the readers do; the others train on label_column. CV AUCs,
                                         # ranking and folds stay on label_column
    true_label_column: str = "true_label"  # ground truth, when the data engine provides it (evaluation only)
    data_command: str | None = None      # how the dataset was made (recorded in the model card)
    train_split: str = "train"
    eval_splits: list[str] = field(default_factory=lambda: ["external", "external_phone"])
    max_images: int | None = None        # use only the first N training images (quick runs)
    seed: int = 0
    mixed_precision: str = "auto"        # "auto" (bf16 on GPU), "no", "bf16", "fp16"
    threads: int | None = None           # torch CPU threads (None: torch's default)
    tensorboard: bool = False
    save_dtype: str = "float16"          # weights in the published repo
    synthetic: bool = True               # trained on the phantom data engine (says so everywhere)

    @classmethod
    def load(cls, path: str | os.PathLike, overrides: Sequence[str] = ()) -> "TrainConfig":
        """Read a YAML config; ``overrides`` are ``key=value`` strings (YAML values) applied on top."""
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        for item in overrides:
            key, sep, value = item.partition("=")
            if not sep:
                raise SystemExit(f"--set expects key=value, got {item!r}")
            raw[key.strip()] = yaml.safe_load(value)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise SystemExit(f"unknown config keys {unknown} in {path}; known keys: {sorted(known)}")
        cfg = cls(**raw)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        from as_ai.ensemble import CALIBRATION_METHODS, COMBINE_RULES

        checks = [
            (self.final in FINAL_MODES, f"final must be one of {FINAL_MODES}, got {self.final!r}"),
            (self.augment in ("paper", "centred"), f"augment must be 'paper' or 'centred', got {self.augment!r}"),
            (self.combine in COMBINE_RULES, f"combine must be one of {COMBINE_RULES}, got {self.combine!r}"),
            (self.calibration in CALIBRATION_METHODS,
             f"calibration must be one of {CALIBRATION_METHODS}, got {self.calibration!r}"),
            (self.pretrained in (True, False, "auto"), f"pretrained must be true, false or auto, got {self.pretrained!r}"),
            (self.folds >= 2, f"folds must be >= 2, got {self.folds}"),
            (1 <= self.top_k, f"top_k must be >= 1, got {self.top_k}"),
            (len(self.archs) >= 1 and len(set(self.archs)) == len(self.archs), f"archs must be distinct, got {self.archs}"),
            (self.threshold == "youden" or (isinstance(self.threshold, (int, float)) and 0 < self.threshold < 1),
             f"threshold must be 'youden' or a number in (0, 1), got {self.threshold!r}"),
            (0.0 <= self.phone_augment <= 1.0, f"phone_augment is a probability, got {self.phone_augment}"),
            (0.0 <= self.acquisition_jitter <= 1.0,
             f"acquisition_jitter is a probability, got {self.acquisition_jitter}"),
            (isinstance(self.jitter_blur, (list, tuple)) and len(self.jitter_blur) == 2
             and 0.0 <= float(self.jitter_blur[0]) <= 1.0 and 0.3 <= float(self.jitter_blur[1]) <= 5.0,
             f"jitter_blur must be [chance 0-1, largest sigma 0.3-5 px], got {self.jitter_blur!r}"),
            (0.0 <= self.zoom < 0.5, f"zoom must be in [0, 0.5), got {self.zoom}"),
            (self.augment_after_auc is None or 0.5 <= self.augment_after_auc < 1.0,
             f"augment_after_auc must be in [0.5, 1) or null, got {self.augment_after_auc}"),
            (self.augment_ramp_epochs >= 0, f"augment_ramp_epochs must be >= 0, got {self.augment_ramp_epochs}"),
            (self.collapse_guard is None or (isinstance(self.collapse_guard, (list, tuple)) and len(self.collapse_guard) == 2
             and 0.0 < float(self.collapse_guard[0]) <= 0.5 and float(self.collapse_guard[1]).is_integer()
             and float(self.collapse_guard[1]) >= 1),
             f"collapse_guard must be [AUC drop in (0, 0.5], epochs >= 1] or null, got {self.collapse_guard!r}"),
            (self.collapse_guard is None or self.augment_after_auc is not None,
             "collapse_guard needs augment_after_auc: it goes back to the epoch whose validation AUC started "
             "augmentation"),
            (0.0 < self.phone_fraction <= 1.0, f"phone_fraction must be in (0, 1], got {self.phone_fraction}"),
            (isinstance(self.phone_variants, int) and 1 <= self.phone_variants <= 16,
             f"phone_variants must be an integer from 1 to 16, got {self.phone_variants!r}"),
        ]
        checks.append((self.consistency >= 0, f"consistency must be >= 0, got {self.consistency}"))
        checks.append((isinstance(self.loader_workers, int) and not isinstance(self.loader_workers, bool)
                       and 0 <= self.loader_workers <= 64,
                       f"loader_workers must be an integer from 0 to 64, got {self.loader_workers!r}"))
        checks.append((self.calibrate_on in CALIBRATE_ON,
                       f"calibrate_on must be one of {CALIBRATE_ON}, got {self.calibrate_on!r}"))
        checks.append((isinstance(self.calibration_draws, int) and 1 <= self.calibration_draws <= 16,
                       f"calibration_draws must be an integer from 1 to 16, got {self.calibration_draws!r}"))
        names = [parse_arch(a)[0] for a in self.archs]
        checks.append((self.member_labels is None or (isinstance(self.member_labels, dict) and all(
            isinstance(c, str) and c for c in self.member_labels.values()) and set(self.member_labels) <= set(names)),
                       f"member_labels must map member names {names} to label columns, got {self.member_labels!r}"))
        checks.append((self.clip_grad_norm is None or (isinstance(self.clip_grad_norm, (int, float))
                                                       and not isinstance(self.clip_grad_norm, bool)
                                                       and self.clip_grad_norm > 0),
                       f"clip_grad_norm must be a positive number or null, got {self.clip_grad_norm!r}"))
        for ok, msg in checks:
            if not ok:
                raise SystemExit(f"config error: {msg}")
        if self.photo_stretch is not None:
            from as_ai.transforms import photo_stretch_from_config

            try:
                photo_stretch_from_config({"contrast_stretch": self.photo_stretch})
            except ValueError as exc:
                raise SystemExit(f"config error: photo_stretch: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------------------------- 3. data
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
    y = _binary(meta[cfg.label_column], meta_path)
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
                                   tuple(cfg.photo_stretch) if cfg.photo_stretch and cfg.train_photos_stretched else None))
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

    i, pixels, level, seed, short, stretch = job
    photo = load_radiograph(photograph(pixels, level=level, seed=seed))
    if stretch is not None:  # as the model will read photos (as_ai.transforms.photo_view)
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


def centred_transform(pp: Any, *, zoom: float = 0.08, jitter: float | torch.nn.Module = 0.0) -> Any:
    """Augment around the eval view: small shifts (4 %), zoom (± ``zoom``), rotation, flips, the eval crop,
    then (with chance ``jitter``) re-processing as another centre might (:class:`AcquisitionJitter`).

    Input: 1 x H x W float in [0, 1] with short edge ``pp.resize_short`` (cached). Keeps the anatomy where
    the eval crop expects it, unlike the paper's random 224 crop out of a 512 image. After the crop, the
    view's own tail (``as_ai.transforms.view_tail``: intensity, blur, channels, normalisation), so the
    jittered image is standardised as the model will standardise another centre's image.
    """
    from torchvision.transforms import v2

    from as_ai.transforms import view_tail
    from train._augment import AcquisitionJitter

    return v2.Compose([
        v2.RandomAffine(degrees=pp.rotation_degrees, translate=(0.04, 0.04), scale=(1 - zoom, 1 + zoom),
                        interpolation=v2.InterpolationMode.BILINEAR, fill=0.0),
        v2.RandomHorizontalFlip(pp.hflip),
        v2.RandomVerticalFlip(pp.vflip),
        v2.CenterCrop(pp.crop),
        *view_tail(pp, before_intensity=[jitter if isinstance(jitter, torch.nn.Module) else AcquisitionJitter(jitter)]),
    ])


def _train_resized(t: torch.Tensor, pp: Any) -> torch.Tensor:
    """A training image cached at the short edge the training view starts from (uint8, to save memory)."""
    from as_ai.transforms import resize_short_edge

    return (resize_short_edge(t, pp.train_resize_short).clamp(0, 1) * 255).round().to(torch.uint8)


def _binary(col: pd.Series, where: Path) -> np.ndarray:
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


# --------------------------------------------------------------------------------------------- 4. training
def parse_arch(entry: str) -> tuple[str, str, str]:
    """``"[name=]arch[.pretrained_tag]"`` -> (member name, timm model spec, timm architecture)."""
    name, _, spec = entry.rpartition("=")
    spec = spec.strip()
    return (name.strip() or spec), spec, spec.split(".")[0]


def create_model(entry: str, cfg: TrainConfig, log: list[str]) -> torch.nn.Module:
    """timm model with 2 outputs; ImageNet weights when configured (``auto`` falls back to scratch)."""
    import timm

    arch, spec, base = entry, parse_arch(entry)[1], parse_arch(entry)[2]
    failed_before = any(line.startswith(arch + ":") for line in log)  # do not wait for the Hub again
    if cfg.pretrained and not failed_before:
        try:
            return timm.create_model(spec, pretrained=True, num_classes=2, drop_rate=cfg.drop_rate)
        except Exception as exc:  # offline, Hub unreachable, no weights for this arch
            if cfg.pretrained != "auto":
                raise SystemExit(
                    f"pretrained: true, but timm could not fetch ImageNet weights for {arch!r} "
                    f"({type(exc).__name__}: {str(exc)[:200]}). Give the machine access to the Hugging Face Hub "
                    "(or a mirror via HF_ENDPOINT), or set pretrained: auto (fall back to random init, "
                    "recorded in the model card) or pretrained: false.") from exc
            log.append(f"{arch}: ImageNet weights unavailable ({type(exc).__name__}); trained from scratch")
    return timm.create_model(base, pretrained=False, num_classes=2, drop_rate=cfg.drop_rate)


def training_loader(train_set: TrainSet, cfg: TrainConfig) -> torch.utils.data.DataLoader:
    """Shuffled training batches, augmented in ``cfg.loader_workers`` processes (0: in this one).

    The workers persist across epochs (forking a dozen copies of a process that holds the data set cost
    about 0.6 s an epoch); they read the augmentation strengths from the data set's shared memory. Their
    random streams run on across epochs, so with workers a resumed run draws other augmentations than an
    uninterrupted one.
    """
    workers = cfg.loader_workers
    return torch.utils.data.DataLoader(train_set, batch_size=cfg.batch_size, shuffle=True,
                                       drop_last=len(train_set) > cfg.batch_size, num_workers=workers,
                                       persistent_workers=workers > 0, pin_memory=torch.cuda.is_available())


def cosine_with_warmup(optimizer: torch.optim.Optimizer, warmup: int, total: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up for ``warmup`` steps, then cosine decay to 0 at ``total`` steps."""
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(1, warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def predict(accelerator: Any, model: torch.nn.Module, loader: Any) -> np.ndarray:
    """P(AS) for every sample of an eval loader (gathered across processes, in order)."""
    model.eval()
    out = []
    with torch.no_grad(), accelerator.autocast():
        for x in loader:
            logits = model(x.contiguous(memory_format=torch.channels_last)).float()
            out.append(accelerator.gather_for_metrics(torch.softmax(logits, dim=1)[:, 1]).cpu())
    return torch.cat(out).numpy().astype(np.float64) if out else np.zeros(0)


def fit_one(accelerator: Any, arch: str, cfg: TrainConfig, data: Images, train_idx: np.ndarray,
            val_idx: np.ndarray | None, *, size: int, pp: Any, epochs: int, ckpt: Path, resume: bool,
            log: list[str], tag: str, augment_from: int = 1, y: np.ndarray | None = None) -> dict[str, Any]:
    """Train one model; with ``val_idx``, early-stop on validation AUC and return the best weights.

    ``y`` (default: ``data.y``) are the labels it learns and is validated against.

    Without ``val_idx`` the curriculum has no validation AUC to wait for: augmentation starts at epoch
    ``augment_from`` (the refit passes the folds' median).
    """
    from tqdm.auto import tqdm

    torch.manual_seed(cfg.seed * 1000 + cfg.archs.index(arch))  # same-arch members still differ
    model = create_model(arch, cfg, log).to(memory_format=torch.channels_last)
    from train._augment import AcquisitionJitter

    jitter = AcquisitionJitter(cfg.acquisition_jitter, blur_p=float(cfg.jitter_blur[0]),
                               blur_max=float(cfg.jitter_blur[1]))
    targets = data.y if y is None else y
    train_set = TrainSet(data, train_idx, training_view(cfg, pp, size, jitter), cfg.phone_augment, jitter=jitter,
                         y=targets)
    train_loader = training_loader(train_set, cfg)
    steps_per_epoch = max(1, math.ceil(len(train_loader) / cfg.grad_accum))
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = cosine_with_warmup(optimizer, int(cfg.warmup_epochs * steps_per_epoch), epochs * steps_per_epoch)
    val_loader = None
    if val_idx is not None:
        val_loader = torch.utils.data.DataLoader(EvalSet(data, val_idx, size, pp), batch_size=cfg.batch_size * 2)
    model, optimizer, train_loader, scheduler = accelerator.prepare(model, optimizer, train_loader, scheduler)
    if val_loader is not None:
        val_loader = accelerator.prepare(val_loader)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    from train._augment import DetectorPair, js_consistency
    from train._collapse import MAX_RESTARTS, RESTART, guard_action

    pair = DetectorPair(pp.std) if cfg.consistency > 0 else None

    curriculum = cfg.augment_after_auc is not None and val_loader is not None
    state = {"epoch": 0, "best_auc": -1.0, "best_epoch": 0, "history": [],
             "augment_from": None if curriculum else augment_from}
    best_weights = anchor_weights = None
    guard = cfg.collapse_guard is not None and val_loader is not None
    state_file = ckpt / "progress.json"
    if resume and state_file.is_file():
        accelerator.load_state(str(ckpt / "last"))
        state = json.loads(state_file.read_text())
        state.setdefault("augment_from", None if curriculum else augment_from)   # checkpoints from before the curriculum
        from safetensors.torch import load_file

        if (ckpt / "best.safetensors").is_file():
            best_weights = load_file(str(ckpt / "best.safetensors"))
        if state.get("anchor") is not None and (ckpt / "anchor.safetensors").is_file():
            anchor_weights = load_file(str(ckpt / "anchor.safetensors"))
        log.append(f"{tag}: resumed after epoch {state['epoch']}")
        log.extend(f"{tag}: epoch {r['epoch']}: {r.get('note', r['action'])}" for r in state.get("restarts", []))  # still true

    for epoch in range(state["epoch"] + 1, epochs + 1 if not state.get("done") else 0):
        strength = 0.0 if state.get("augment_off") else \
            augment_strength(epoch, state["augment_from"], state.get("ramp", cfg.augment_ramp_epochs))
        train_set.jitter_p, train_set.phone_p = cfg.acquisition_jitter * strength, cfg.phone_augment * strength
        model.train()
        t0, seen, total_loss = time.perf_counter(), 0, 0.0
        bar = tqdm(train_loader, desc=f"{tag} ep {epoch}/{epochs}", leave=False,
                   disable=None if accelerator.is_local_main_process else True)  # None: off when not a TTY
        for x, y in bar:
            with accelerator.accumulate(model):
                with accelerator.autocast():
                    if pair is not None and strength > 0:  # the image and its re-acquired copy, one batch
                        logits = model(torch.cat([x, pair(x)]).contiguous(memory_format=torch.channels_last))
                        a, b = logits.chunk(2)
                        loss = (loss_fn(a, y) + loss_fn(b, y)) / 2 + cfg.consistency * strength * js_consistency(a, b)
                    else:
                        loss = loss_fn(model(x.contiguous(memory_format=torch.channels_last)), y)
                accelerator.backward(loss)
                if cfg.clip_grad_norm and accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(model.parameters(), cfg.clip_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            seen += len(y)
            total_loss += loss.detach().item() * len(y)
            bar.set_postfix(loss=f"{total_loss / seen:.3f}")
        rec = {"epoch": epoch, "loss": total_loss / max(seen, 1), "seconds": time.perf_counter() - t0,
               "img_per_s": seen * accelerator.num_processes / (time.perf_counter() - t0), "augment": strength}
        counting = strength >= 1.0 or not (cfg.acquisition_jitter or cfg.phone_augment) or bool(state.get("augment_off"))
        if val_loader is not None:
            p = predict(accelerator, model, val_loader)
            rec["val_auc"] = validation_auc(targets[val_idx], p)
            clean_phase = state["augment_from"] is None  # the curriculum is still waiting: keep its best epoch
            if clean_phase and rec["val_auc"] >= cfg.augment_after_auc:
                state["augment_from"] = epoch + 1
                if guard:
                    state["anchor"] = {"epoch": epoch, "auc": rec["val_auc"]}
                    anchor_weights = _weights(accelerator, model)
            if counting and state.get("counting_from") is None:
                state["counting_from"], state["best_auc"] = epoch, -1.0
            if (counting or clean_phase or best_weights is None) and rec["val_auc"] > state["best_auc"]:
                state["best_auc"], state["best_epoch"] = rec["val_auc"], epoch
                best_weights = _weights(accelerator, model)
        state["history"].append(rec)
        action = guard_action(state, float(cfg.collapse_guard[0]), int(cfg.collapse_guard[1])) if guard else None
        if action is not None:  # back to the anchor: its weights, fresh optimizer moments, best so far
            accelerator.unwrap_model(model).load_state_dict(anchor_weights)
            getattr(optimizer, "optimizer", optimizer).state.clear()
            best_weights = {k: v.clone() for k, v in anchor_weights.items()}
            state["best_auc"], state["best_epoch"] = state["anchor"]["auc"], state["anchor"]["epoch"]
            state["counting_from"], counting = None, False   # early stopping counts again at full strength
            if action == RESTART:
                state["ramp"] = 2 * max(1, state.get("ramp", cfg.augment_ramp_epochs))
                state["augment_from"] = epoch + 1
                msg = (f"validation AUC collapsed ({rec['val_auc']:.3f} against {state['anchor']['auc']:.3f} at "
                       f"epoch {state['anchor']['epoch']}); back to epoch {state['anchor']['epoch']}'s weights, "
                       f"augmentation ramps up again over {state['ramp']} epochs")
            else:
                state["augment_off"] = True
                msg = (f"validation AUC collapsed again after {MAX_RESTARTS} restarts; back to epoch "
                       f"{state['anchor']['epoch']}'s weights, training on without augmentation")
            state.setdefault("restarts", []).append({"epoch": epoch, "action": action, "ramp": state.get("ramp"),
                                                     "note": msg})
            log.append(f"{tag}: epoch {epoch}: {msg}")
            accelerator.print(f"{tag}: {msg}")
        state["epoch"] = epoch
        accelerator.log({f"{tag}/{k}": v for k, v in rec.items() if k != "epoch"}, step=epoch)
        accelerator.print(f"{tag} epoch {epoch}: " + ", ".join(f"{k}={v:.4g}" for k, v in rec.items() if k != "epoch"))
        accelerator.save_state(str(ckpt / "last"))
        if accelerator.is_main_process:
            from safetensors.torch import save_file

            if best_weights is not None:
                save_file({k: v.contiguous() for k, v in best_weights.items()}, str(ckpt / "best.safetensors"))
            if anchor_weights is not None and state["anchor"]["epoch"] == epoch:
                save_file({k: v.contiguous() for k, v in anchor_weights.items()}, str(ckpt / "anchor.safetensors"))
            state_file.write_text(json.dumps(state))
        accelerator.wait_for_everyone()
        if val_loader is not None and counting and epoch - max(state["best_epoch"], state["counting_from"] - 1) >= cfg.patience:
            accelerator.print(f"{tag}: early stop (no better val AUC for {cfg.patience} epochs)")
            break
    if curriculum and state["augment_from"] is None:
        log.append(f"{tag}: validation AUC never reached {cfg.augment_after_auc}; trained without augmentation")
    if accelerator.is_main_process and not state.get("done"):
        state["done"] = True
        ckpt.mkdir(parents=True, exist_ok=True)
        state_file.write_text(json.dumps(state))

    final = accelerator.unwrap_model(model)
    if best_weights is not None:
        final.load_state_dict(best_weights)
    final = copy.deepcopy(final).float().cpu().eval()
    val_prob = None
    if val_loader is not None:
        ev = torch.utils.data.DataLoader(EvalSet(data, val_idx, size, pp), batch_size=cfg.batch_size * 2)
        val_prob = _predict_plain(final, ev)
    accelerator.free_memory()
    return {"model": final, "val_prob": val_prob, "best_epoch": state["best_epoch"] or state["epoch"],
            "best_auc": state["best_auc"], "history": state["history"], "augment_from": state["augment_from"]}


def calibration_labels(data: Images, cfg: TrainConfig) -> tuple[np.ndarray, str]:
    """The labels calibration and threshold are fitted to (1 = AS), and the metadata column they come from."""
    column = cfg.calibration_label_column or cfg.label_column
    if column == cfg.label_column:
        return data.y, column
    if column not in data.meta.columns:
        raise SystemExit(f"calibration_label_column {column!r} is not a column of the training metadata.csv "
                         f"(columns: {list(data.meta.columns)}); set it to one that holds AS / non-AS labels, "
                         "or null to calibrate on label_column")
    return _binary(data.meta[column], Path(cfg.train_split) / "metadata.csv"), column


def member_labels(data: Images, cfg: TrainConfig) -> dict[str, np.ndarray]:
    """The labels each architecture entry trains on (1 = AS): its ``member_labels`` column, else label_column."""
    columns = cfg.member_labels or {}
    out = {}
    for arch in cfg.archs:
        column = columns.get(parse_arch(arch)[0], cfg.label_column)
        if column not in data.meta.columns:
            raise SystemExit(f"member_labels: {column!r} (for {parse_arch(arch)[0]}) is not a column of the training "
                             f"metadata.csv (columns: {list(data.meta.columns)})")
        out[arch] = (data.y if column == cfg.label_column
                     else _binary(data.meta[column], Path(cfg.train_split) / "metadata.csv"))
    return out


def training_view(cfg: TrainConfig, pp: Any, size: int, jitter: torch.nn.Module) -> Any:
    """The random view training shows of a cached image: the configured augmentation, then ``jitter``."""
    from as_ai.transforms import scaled_for_size, train_transform

    if cfg.augment == "centred":
        return centred_transform(dataclasses.replace(pp, crop=size, blur_sigma=scaled_for_size(pp, size).blur_sigma),
                                 zoom=cfg.zoom, jitter=jitter)
    return train_transform(dataclasses.replace(pp, train_crop=size), before_intensity=[jitter])


def reacquired_oof(fold_models: dict[str, list[torch.nn.Module]], folds: Sequence[tuple[np.ndarray, np.ndarray]],
                   data: Images, cfg: TrainConfig, pp: Any, size: int) -> np.ndarray:
    """Out-of-fold P(AS) on validation images re-processed as another centre might have recorded them.

    Each fold's validation images go through the training view with the acquisition jitter at full strength
    (no phone photos), ``cfg.calibration_draws`` times, and each architecture's model of that fold reads them:
    shape (draws, architectures in ``fold_models`` order, images). Calibrating on these instead of the clean
    validation images aims the probabilities at unseen centres, whose images the model reads more softly.
    Seeded by ``cfg.seed``; the global random state is left as it was.
    """
    from train._augment import AcquisitionJitter

    view = training_view(cfg, pp, size, AcquisitionJitter(1.0, blur_p=float(cfg.jitter_blur[0]),
                                                          blur_max=float(cfg.jitter_blur[1])))
    out = np.full((cfg.calibration_draws, len(fold_models), len(data.y)), np.nan)
    with torch.random.fork_rng():
        for d in range(cfg.calibration_draws):
            for k, (_, va) in enumerate(folds):
                torch.manual_seed(cfg.seed * 1000 + 100 * d + k)
                views = TrainSet(data, va, view, 0.0)
                x = torch.stack([views[i][0] for i in range(len(va))])
                for a, models in enumerate(fold_models.values()):
                    out[d, a, va] = _predict_plain(models[k], torch.utils.data.DataLoader(x, batch_size=64))
    return out


def validation_auc(y: np.ndarray, p: np.ndarray) -> float:
    """An epoch's validation AUC: early stopping, the curriculum and the collapse guard read it."""
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, p))


def _weights(accelerator: Any, model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A CPU copy of the model's current weights."""
    return {k: v.detach().cpu().clone() for k, v in accelerator.unwrap_model(model).state_dict().items()}


def common_fold(fold_aucs: Sequence[Sequence[float]]) -> int:
    """The fold whose models to ship: best mean validation AUC across the kept architectures.

    ``fold_aucs[a][k]`` is architecture ``a``'s validation AUC in fold ``k``. Keeping one fold for all
    members leaves that fold's validation images unseen by every member, so the ensemble can be
    calibrated on its own predictions; a fold where one architecture failed to train is passed over.
    """
    a = np.asarray(fold_aucs, dtype=float)
    if a.ndim != 2 or a.size == 0:
        raise ValueError(f"fold_aucs must be architectures x folds, got shape {a.shape}")
    return int(np.argmax(a.mean(axis=0)))


def augment_strength(epoch: int, start: int | None, ramp: int) -> float:
    """How strongly to augment in ``epoch`` (0..1): off before ``start``, then rising over ``ramp`` epochs."""
    if start is None or epoch < start:
        return 0.0
    return min(1.0, (epoch - start + 1) / ramp) if ramp > 0 else 1.0


def _predict_plain(model: torch.nn.Module, loader: Any) -> np.ndarray:
    model.eval()
    with torch.inference_mode():
        return torch.cat([torch.softmax(model(x.contiguous(memory_format=torch.channels_last)).float(), 1)[:, 1]
                          for x in loader]).numpy().astype(np.float64)


def fold_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """AUC, accuracy, precision, recall, F1 (threshold 0.5) of one fold."""
    from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, roc_auc_score

    hard = (p >= 0.5).astype(int)
    return {"auc": float(roc_auc_score(y, p)), "accuracy": float(accuracy_score(y, hard)),
            "precision": float(precision_score(y, hard, zero_division=0)),
            "recall": float(recall_score(y, hard, zero_division=0)), "f1": float(f1_score(y, hard, zero_division=0))}


# -------------------------------------------------------------------------------------------- 8. evaluate
def evaluate_split(diagnoser: Any, data: Images, cfg: TrainConfig) -> dict[str, Any]:
    """Ensemble and member metrics of one split (AUC with DeLong CI, report at the threshold, ECE)."""
    from as_ai.metrics import auc_ci, binary_report, delong_test

    with torch.inference_mode():
        xs = {s: _normalise(data.eval[s], diagnoser.preprocess) for s in diagnoser.ensemble.sizes}
        probs, members = [], []
        for i in range(0, len(data.y), 64):
            p, m = diagnoser.predict_tensor({s: x[i:i + 64] for s, x in xs.items()})
            probs.append(p.double())
            members.append(m.double())
    p, m = torch.cat(probs).numpy(), torch.cat(members).numpy()
    out: dict[str, Any] = {"n": int(len(p)), "n_as_reference": int(data.y.sum())}
    targets = {"reference": data.y}
    if cfg.true_label_column in data.meta.columns:
        targets["true"] = _binary(data.meta[cfg.true_label_column], Path(cfg.true_label_column))
    for tname, y in targets.items():
        if len(np.unique(y)) < 2:
            continue
        lo, auc, hi = auc_ci(y, p)
        rep = binary_report(y, p, diagnoser.threshold).to_dict()
        member_auc = {n: auc_ci(y, m[:, j])[1] for j, n in enumerate(diagnoser.ensemble.names)}
        best = max(member_auc, key=member_auc.get)
        dl = delong_test(y, p, m[:, diagnoser.ensemble.names.index(best)]).to_dict()
        out[tname] = {"auc": auc, "auc_ci": [lo, hi], **{k: rep[k] for k in rep if k != "threshold"},
                      "members_auc": member_auc, "best_member": best, "vs_best_member": dl}
    return out


def split_metrics(diagnoser: Any, data_dir: Path, cfg: TrainConfig, splits: Sequence[str], *,
                  log: Any = print) -> dict[str, Any]:
    """Training's step 8: each of ``splits`` present under ``data_dir`` read as the model reads it and scored
    (:func:`evaluate_split`; the softness test on ``external``), plus the phone photos' AUC drop."""
    metrics: dict[str, Any] = {}
    for split in splits:
        if (data_dir / split / "metadata.csv").is_file():
            ev = read_split(data_dir / split, cfg, diagnoser.preprocess, diagnoser.ensemble.sizes, train_size=False,
                            desc=split, view=lambda rg: diagnoser.model_views([rg])[0])
            metrics[split] = evaluate_split(diagnoser, ev, cfg)
            if split == "external" and cfg.true_label_column in ev.meta.columns:
                metrics["external_softness"] = softness_split(diagnoser, ev, cfg)
            log(f"{split}: " + json.dumps({t: {k: round(metrics[split][t][k], 4) for k in ("auc", "ece")}
                                           for t in ("reference", "true") if t in metrics[split]}))
    if "external" in metrics and "external_phone" in metrics:
        metrics["phone_auc_drop"] = {t: metrics["external"][t]["auc"] - metrics["external_phone"][t]["auc"]
                                     for t in ("reference", "true") if t in metrics["external"] and t in metrics["external_phone"]}
    return metrics


def softness_split(diagnoser: Any, data: Images, cfg: TrainConfig) -> dict[str, Any]:
    """The evaluation's softness test (``train.evaluate.softness_metrics``) on a split's cached crops, against
    the true labels: the same images blurred by 0.5 and 1 px at the reading scale."""
    from as_ai.transforms import soften_input
    from train.evaluate import SOFTNESS_SIGMAS, softness_metrics

    y = _binary(data.meta[cfg.true_label_column], Path(cfg.true_label_column))
    probs = {}
    with torch.inference_mode():
        for sigma in (0.0, *SOFTNESS_SIGMAS):
            xs = {s: _normalise(soften_input(data.eval[s].float(), sigma), diagnoser.preprocess)
                  for s in diagnoser.ensemble.sizes}
            probs[sigma] = torch.cat([diagnoser.predict_tensor({s: x[i:i + 64] for s, x in xs.items()})[0].double()
                                      for i in range(0, len(y), 64)]).numpy()
    return softness_metrics(y, probs, diagnoser.threshold)


def _normalise(x: torch.Tensor, pp: Any) -> torch.Tensor:
    from as_ai.transforms import normalise

    return normalise(x, pp).contiguous(memory_format=torch.channels_last)


# --------------------------------------------------------------------------------------------------- main
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from sklearn.model_selection import StratifiedKFold

    import as_ai
    from as_ai.diagnosis import Diagnoser
    from as_ai.ensemble import Calibration, combine_weights, youden_threshold
    from as_ai.transforms import Preprocess

    # 1. config
    cfg = TrainConfig.load(args.config, args.set)
    out = Path(args.out)
    data_dir = Path(args.data)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    mp = cfg.mixed_precision if cfg.mixed_precision != "auto" else ("bf16" if torch.cuda.is_available() else "no")
    accelerator = Accelerator(cpu=not torch.cuda.is_available(), mixed_precision=mp, gradient_accumulation_steps=cfg.grad_accum,
                              log_with="tensorboard" if cfg.tensorboard else None, project_dir=str(out / "logs"))
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False), encoding="utf-8")
    if cfg.tensorboard:
        accelerator.init_trackers(cfg.name, config={k: str(v) for k, v in cfg.to_dict().items()})
    started = time.time()
    log: list[str] = []

    # 2. seed
    set_seed(cfg.seed)

    # 3. data
    pp = Preprocess.from_dict(cfg.preprocess)
    if pp.intensity != "none" and "intensity_reference" not in cfg.preprocess:
        pp = fit_intensity_reference(data_dir / cfg.train_split, pp)
        accelerator.print(f"intensity {pp.intensity}: reference (low, high, median) {pp.intensity_reference} "
                          f"from the training images")
    size = pp.crop
    train = read_split(data_dir / cfg.train_split, cfg, pp, [size], train_size=True, phone=cfg.phone_augment > 0,
                       limit=cfg.max_images, desc="train images")
    accelerator.print(f"{len(train.y)} training images ({int(train.y.sum())} AS by {cfg.label_column!r}); "
                      f"archs {cfg.archs}; {cfg.folds}-fold CV; device {accelerator.device}; precision {mp}")
    folds = list(StratifiedKFold(cfg.folds, shuffle=True, random_state=cfg.seed).split(np.zeros(len(train.y)), train.y))
    calibration_labels(train, cfg)  # a bad calibration_label_column fails now, not after training
    labels = member_labels(train, cfg)  # and so does a bad member_labels column
    for name, column in (cfg.member_labels or {}).items():
        accelerator.print(f"{name} trains on {column!r}")

    # 4. cross-validation per architecture
    cv: dict[str, dict[str, Any]] = {}
    train_seconds = 0.0  # summed over epochs, also those of earlier (resumed) runs
    for arch in cfg.archs:
        oof = np.full(len(train.y), np.nan)
        results = []
        for k, (tr, va) in enumerate(folds):
            r = fit_one(accelerator, arch, cfg, train, tr, va, size=size, pp=pp, epochs=cfg.epochs,
                        ckpt=out / "checkpoints" / arch / f"fold{k}", resume=args.resume, log=log, tag=f"{arch} f{k}",
                        y=labels[arch])
            oof[va] = r["val_prob"]
            train_seconds += _seconds(r["history"], len(tr))
            results.append({**fold_metrics(train.y[va], r["val_prob"]), "best_epoch": r["best_epoch"],
                            "history": r["history"], "model": r["model"],
                            "augment_from": r["augment_from"]})
        aucs = [r["auc"] for r in results]
        cv[arch] = {"oof": oof, "folds": results, "mean_auc": float(np.mean(aucs)), "std_auc": float(np.std(aucs))}
        accelerator.print(f"{arch}: CV AUC {np.mean(aucs):.4f} ± {np.std(aucs):.4f}")

    # 5. rank and keep the top k
    ranked = sorted(cfg.archs, key=lambda a: cv[a]["mean_auc"], reverse=True)
    kept = ranked[:cfg.top_k]
    accelerator.print("ranking by mean CV AUC: " + ", ".join(f"{a} {cv[a]['mean_auc']:.4f}" for a in ranked))

    # 6. final models
    members: dict[str, torch.nn.Module] = {}
    common = common_fold([[r["auc"] for r in cv[a]["folds"]] for a in kept]) if cfg.final == "common_fold" else None
    for arch in kept:
        if common is not None:
            members[arch] = cv[arch]["folds"][common]["model"]
        elif cfg.final == "best_fold":
            members[arch] = max(cv[arch]["folds"], key=lambda r: r["auc"])["model"]
        else:
            epochs = max(1, int(np.median([r["best_epoch"] for r in cv[arch]["folds"]])))
            starts = [r["augment_from"] for r in cv[arch]["folds"] if r.get("augment_from") is not None]
            r = fit_one(accelerator, arch, cfg, train, np.arange(len(train.y)), None, size=size, pp=pp, epochs=epochs,
                        ckpt=out / "checkpoints" / arch / "final", resume=args.resume, log=log, tag=f"{arch} final",
                        augment_from=int(np.median(starts)) if starts else 1, y=labels[arch])
            members[arch] = r["model"]
            train_seconds += _seconds(r["history"], len(train.y))

    # 7. ensemble: combine OOF -> calibration -> threshold
    photo_input = {"photo_input": {"contrast_stretch": [float(v) for v in cfg.photo_stretch]}} if cfg.photo_stretch else {}
    cv_aucs = {a: cv[a]["mean_auc"] for a in kept}
    weights = dict(zip(kept, combine_weights(cfg.combine, [cv_aucs[a] for a in kept])))
    oof_ens = np.sum([weights[a] * cv[a]["oof"] for a in kept], axis=0)
    fit_idx = folds[common][1] if common is not None else np.arange(len(train.y))  # never seen by the members
    images = "common fold validation" if common is not None else "out-of-fold, all folds"
    y_cal, cal_column = calibration_labels(train, cfg)
    if cfg.calibrate_on == "reacquired":
        fold_models = {a: [r["model"] for r in cv[a]["folds"]] for a in kept}
        re_ens = np.einsum("a,dan->dn", np.array([weights[a] for a in kept]),
                           reacquired_oof(fold_models, folds, train, cfg, pp, size))
        raw_fit, y_fit = re_ens[:, fit_idx].ravel(), np.tile(y_cal[fit_idx], cfg.calibration_draws)
        images += f", re-acquired as other centres might ({cfg.calibration_draws} draws of the acquisition jitter)"
    else:
        raw_fit, y_fit = oof_ens[fit_idx], y_cal[fit_idx]
    calibration = Calibration.fit(raw_fit, y_fit, method=cfg.calibration)
    oof_cal = calibration.apply(oof_ens)
    p_fit = calibration.apply(raw_fit)
    threshold = youden_threshold(p_fit, y_fit) if cfg.threshold == "youden" else float(cfg.threshold)
    calibration_set = {"images": images, "fold": common, "n": int(len(y_fit)), "labels": cal_column,
                       "calibrate_on": cfg.calibrate_on, **fold_metrics(y_fit, p_fit), **_oof_extra(y_fit, p_fit, threshold)}
    accelerator.print(f"calibration ({cfg.calibration}) and threshold {threshold:.3f} fitted on {images}, labels "
                      f"{cal_column!r} ({len(y_fit)} predictions, AUC {calibration_set['auc']:.4f}, "
                      f"ECE {calibration_set['ece']:.4f})")
    if accelerator.is_main_process:  # for analysis (e.g. other calibrations); never published
        fold_of = np.empty(len(train.y), dtype=int)
        for k, (_, va) in enumerate(folds):
            fold_of[va] = k
        oof_table = train.meta.drop(columns=["rois"], errors="ignore").assign(
            fold=fold_of, ensemble_raw=oof_ens, ensemble=oof_cal, **{f"member_{parse_arch(a)[0]}": cv[a]["oof"] for a in kept})
        oof_table.to_csv(out / "oof.csv", index=False)
    metrics: dict[str, Any] = {"cv": {
        "n": int(len(train.y)), "folds": cfg.folds, "label": cfg.label_column, "common_fold": common,
        "calibration_set": calibration_set,
        "ensemble_oof": {**fold_metrics(train.y, oof_cal), **_oof_extra(train.y, oof_cal, threshold)},
        "architectures": {a: {"mean_auc": cv[a]["mean_auc"], "std_auc": cv[a]["std_auc"], "kept": a in kept,
                              "folds": [{k: v for k, v in r.items() if k not in ("model", "history")}
                                        for r in cv[a]["folds"]]} for a in ranked}}}

    diagnoser = Diagnoser({parse_arch(a)[0]: members[a] for a in kept},
                          archs={parse_arch(a)[0]: parse_arch(a)[2] for a in kept}, preprocess=pp, weights={parse_arch(a)[0]: weights[a] for a in kept},
                          cv_aucs={parse_arch(a)[0]: cv_aucs[a] for a in kept}, combine=cfg.combine, calibration=calibration, threshold=threshold,
                          config=photo_input)

    # 8. evaluate extra splits (external centres, phone photos) when present, on the training device
    diagnoser.to(accelerator.device)
    metrics.update(split_metrics(diagnoser, data_dir, cfg, cfg.eval_splits, log=accelerator.print))

    # 9. save the model repository
    training = {
        "synthetic": bool(cfg.synthetic), "config": cfg.to_dict(), "config_file": str(args.config),
        "command": _command(argv if argv is not None else sys.argv[1:]), "data_command": cfg.data_command,
        "data": _data_provenance(data_dir, cfg), "git_commit": _git_commit(), "as_ai_version": as_ai.__version__,
        "torch": torch.__version__, "timm": _version("timm"), "device": str(accelerator.device),
        "num_processes": accelerator.num_processes, "mixed_precision": mp,
        "pretrained": {parse_arch(a)[0]: (f"imagenet ({parse_arch(a)[1]})" if cfg.pretrained
                                          and not any(l.startswith(a + ":") for l in log) else "scratch") for a in kept},
        "final_models": cfg.final, "notes": log, "minutes": round((time.time() - started) / 60, 1),
        "training_minutes": round(train_seconds / 60, 1),  # across resumed runs
        "throughput_img_per_s": {a: float(np.mean([h["img_per_s"] for r in cv[a]["folds"] for h in r["history"]]))
                                 for a in cfg.archs},
    }
    if cfg.member_labels:  # the labels each kept member learned, for the card
        training["member_labels"] = {parse_arch(a)[0]: cfg.member_labels.get(parse_arch(a)[0], cfg.label_column)
                                     for a in cfg.archs if a in kept}
    diagnoser.config = {**photo_input, "metrics": metrics, "training": training}
    diagnoser.to("cpu")
    if accelerator.is_main_process:
        dtype = {"float16": torch.float16, "float32": torch.float32, "bfloat16": torch.bfloat16}[cfg.save_dtype]
        model_dir = out / "model"
        diagnoser.save_pretrained(model_dir, dtype=dtype)  # writes as_ai.json first (the card reads it)
        card = render_card(json.loads((model_dir / "as_ai.json").read_text()))
        (model_dir / "README.md").write_text(card, encoding="utf-8")
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2), encoding="utf-8")
        accelerator.print(f"model written to {model_dir} ({_size_mb(model_dir):.1f} MB) in "
                          f"{training['minutes']} min")
    accelerator.wait_for_everyone()
    accelerator.end_training()

    # 10. publish
    if args.push_to_hub and accelerator.is_main_process:
        try:
            from train.publish import publish
        except ImportError as exc:
            raise SystemExit(f"--push-to-hub needs train/publish.py ({exc})") from exc
        publish(out / "model", args.push_to_hub, tag=args.tag)
    return 0


def _seconds(history: list[dict[str, Any]], n_images: int) -> float:
    """Seconds spent in training epochs (older checkpoints recorded only images/s)."""
    return float(sum(h.get("seconds") or n_images / max(h["img_per_s"], 1e-9) for h in history))


def _command(argv: Sequence[str]) -> str:
    """The training command as typed, without --resume (resuming does not change the result)."""
    return " ".join(shlex.quote(a) for a in ["python", "train/diagnosis.py", *argv] if a != "--resume")


def _oof_extra(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, Any]:
    from as_ai.metrics import binary_report

    rep = binary_report(y, p, threshold).to_dict()
    return {"ece": rep["ece"], "at_threshold": {k: rep[k] for k in ("accuracy", "precision", "recall", "specificity", "f1")}}


def render_card(config: dict[str, Any]) -> str:
    """The model card from ``model_cards/diagnosis.md`` (Jinja2) and the repo's ``as_ai.json``."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(REPO_ROOT / "model_cards")),
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                             keep_trailing_newline=True)
    env.filters["f3"] = lambda v: "n/a" if v is None else f"{float(v):.3f}"
    env.filters["num"] = lambda v: "null" if v is None else f"{float(v):.4f}"
    from as_ai.diagnosis import SOFTNESS_CAUTION_RISE

    return env.get_template("diagnosis.md").render(cfg=config, m=config.get("metrics", {}),
                                                   t=config.get("training", {}), softness_rise=SOFTNESS_CAUTION_RISE)


def _data_provenance(data_dir: Path, cfg: TrainConfig) -> dict[str, Any]:
    from as_ai.hub import sha256_file

    prov: dict[str, Any] = {"dir": str(data_dir), "train_split": cfg.train_split,
                            "label_column": cfg.label_column, "max_images": cfg.max_images}
    meta = data_dir / cfg.train_split / "metadata.csv"
    prov["train_metadata_sha256"] = sha256_file(meta)
    for name in ("dataset.json", "synth.json", "manifest.json", "dataset_info.json"):
        for p in (data_dir / name, data_dir / cfg.train_split / name):
            if p.is_file():
                try:
                    prov["manifest"] = json.loads(p.read_text(encoding="utf-8"))
                except ValueError:
                    pass
    return prov


def _git_commit() -> str | None:
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                             timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return (sha + ("-dirty" if dirty else "")) or None
    except (OSError, subprocess.SubprocessError):
        return None


def _version(mod: str) -> str | None:
    try:
        return __import__(mod).__version__
    except ImportError:
        return None


def _size_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Train the as-ai diagnosis CNN ensemble (k-fold CV, top-k ensemble, "
                                "calibration, model repo).")
    p.add_argument("--config", required=True, help="YAML config (train/configs/demo.yaml, paper.yaml)")
    p.add_argument("--data", required=True, help="dataset root holding train/metadata.csv (+ external/, ...)")
    p.add_argument("--out", required=True, help="run folder: config.yaml, checkpoints/, metrics.json, model/")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints")
    p.add_argument("--push-to-hub", metavar="ORG/NAME", help="publish OUT/model with train.publish")
    p.add_argument("--tag", help="tag for --push-to-hub")
    return p


if __name__ == "__main__":
    sys.exit(main())
