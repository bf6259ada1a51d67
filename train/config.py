"""The training run's configuration: :class:`TrainConfig`, read from YAML with ``--set key=value`` overrides.

Every field is documented where it is declared; :meth:`TrainConfig.validate` refuses a bad value before any
image is read. ``archs`` entries are ``"[name=]timm_arch[.pretrained_tag]"`` (:func:`parse_arch`).
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import yaml

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
    photo_rectify: bool = False          # cut the radiograph out of every photo of a screen and make it upright
                                         # (as_ai.rectify), the training photos and, via as_ai.json "photo_input",
                                         # every photo the model reads; needs photo_stretch
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
        if self.photo_rectify and self.photo_stretch is None:
            raise SystemExit("config error: photo_rectify needs photo_stretch (photos are reworked only when the "
                             "model stretches them), e.g. photo_stretch: [0.5, 99.5]")
        if self.photo_stretch is not None:
            from as_ai.transforms import photo_stretch_from_config

            try:
                photo_stretch_from_config({"contrast_stretch": self.photo_stretch})
            except ValueError as exc:
                raise SystemExit(f"config error: photo_stretch: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def parse_arch(entry: str) -> tuple[str, str, str]:
    """``"[name=]arch[.pretrained_tag]"`` -> (member name, timm model spec, timm architecture)."""
    name, _, spec = entry.rpartition("=")
    spec = spec.strip()
    return (name.strip() or spec), spec, spec.split(".")[0]

