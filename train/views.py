"""The random views training shows of a cached image: the paper's geometry or the centred one.

``augment: paper`` is ``as_ai.transforms.train_transform`` (random crop out of the larger training image);
``augment: centred`` is :func:`centred_transform`, small shifts, zoom, rotation and flips around the eval
view, then its centre crop. Both end in the view's own tail (``as_ai.transforms.view_tail``), with the
acquisition jitter (``train/_augment.py``) before the intensity standardisation.
"""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from train.config import TrainConfig


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


def training_view(cfg: TrainConfig, pp: Any, size: int, jitter: torch.nn.Module) -> Any:
    """The random view training shows of a cached image: the configured augmentation, then ``jitter``."""
    from as_ai.transforms import scaled_for_size, train_transform

    if cfg.augment == "centred":
        return centred_transform(dataclasses.replace(pp, crop=size, blur_sigma=scaled_for_size(pp, size).blur_sigma),
                                 zoom=cfg.zoom, jitter=jitter)
    return train_transform(dataclasses.replace(pp, train_crop=size), before_intensity=[jitter])

