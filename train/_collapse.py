"""Collapse guard: undo a fold whose validation AUC falls apart once augmentation starts.

Trained from scratch on CPU, a network that has just found the joints sometimes loses them for good when
the acquisition jitter and phone photos switch on: in the bundled demo run of 2026-11-27, ``resnet_b``'s
fold 0 went from validation AUC 0.91 to 0.53 in one epoch and stayed near chance for the ten epochs left.
Its out-of-fold predictions then went into the calibration and the threshold as noise.

The guard keeps the weights of the epoch that started augmentation (the *anchor*). When validation AUC has
stayed more than ``drop`` below the anchor's for ``epochs`` epochs in a row, training goes back to the
anchor (fresh optimizer moments) and ramps augmentation up again, twice as slowly. After ``MAX_RESTARTS``
restarts it gives up on augmentation for that fold and trains on from the anchor without it, which the
training log says. Short dips that recover (0.85 -> 0.55 -> 0.59 -> 0.88 in the same run) are left alone.
"""
from __future__ import annotations

from typing import Any, Sequence

MAX_RESTARTS = 2
RESTART = "restart"
STOP_AUGMENTING = "stop_augmenting"


def collapsed(aucs: Sequence[float], anchor_auc: float, drop: float, epochs: int) -> bool:
    """True when the last ``epochs`` validation AUCs all lie more than ``drop`` below ``anchor_auc``."""
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    return len(aucs) >= epochs and all(a < anchor_auc - drop for a in aucs[-epochs:])


def guard_action(state: dict[str, Any], drop: float, epochs: int) -> str | None:
    """What a fold's training should do after its latest epoch: None, ``RESTART`` or ``STOP_AUGMENTING``.

    ``state`` is the fold's progress record: ``history`` (per-epoch dicts with ``epoch`` and ``val_auc``),
    ``anchor`` (``{"epoch", "auc"}`` once augmentation has started), ``restarts`` and ``augment_off``.
    Only epochs after the anchor, or after the latest restart, count.
    """
    anchor = state.get("anchor")
    if anchor is None or state.get("augment_off"):
        return None
    restarts = state.get("restarts", [])
    since = restarts[-1]["epoch"] if restarts else anchor["epoch"]
    aucs = [h["val_auc"] for h in state["history"] if h["epoch"] > since and "val_auc" in h]
    if not collapsed(aucs, float(anchor["auc"]), drop, epochs):
        return None
    return RESTART if len(restarts) < MAX_RESTARTS else STOP_AUGMENTING
