"""Training one model: :func:`fit_one`, its epochs, its curriculum, collapse guard and checkpoints.

One call trains one architecture on one fold (or, for the refit, on every training image), with early
stopping on the validation AUC when it has a validation set. What it has done so far is a
:class:`FoldState`, written to ``CKPT/progress.json`` after every epoch beside accelerate's ``save_state``
(``CKPT/last``), the best weights (``best.safetensors``) and the collapse guard's anchor
(``anchor.safetensors``); ``--resume`` reads them back and goes on where the run stopped.

The curriculum (``augment_after_auc``): no acquisition jitter and no phone photos until an epoch's validation
AUC reaches the goal, then a linear ramp to full strength (:func:`augment_strength`); the best epoch and
early stopping only count from full strength on. The collapse guard (``train/_collapse.py``) goes back to the
anchor's weights when validation AUC falls apart once augmentation starts.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from train.config import parse_arch
from train.data import EvalSet, Images, TrainSet
from train.views import training_view

if TYPE_CHECKING:
    from train.config import TrainConfig


# ------------------------------------------------------------------------------------------ building blocks
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


def predict_plain(model: torch.nn.Module, loader: Any) -> np.ndarray:
    """P(AS) of a plain (CPU, unprepared) model for every batch of ``loader``."""
    model.eval()
    with torch.inference_mode():
        return torch.cat([torch.softmax(model(x.contiguous(memory_format=torch.channels_last)).float(), 1)[:, 1]
                          for x in loader]).numpy().astype(np.float64)


def validation_auc(y: np.ndarray, p: np.ndarray) -> float:
    """An epoch's validation AUC: early stopping, the curriculum and the collapse guard read it."""
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, p))


def augment_strength(epoch: int, start: int | None, ramp: int) -> float:
    """How strongly to augment in ``epoch`` (0..1): off before ``start``, then rising over ``ramp`` epochs."""
    if start is None or epoch < start:
        return 0.0
    return min(1.0, (epoch - start + 1) / ramp) if ramp > 0 else 1.0


def epoch_seconds(history: list[dict[str, Any]], n_images: int) -> float:
    """Seconds spent in training epochs (older checkpoints recorded only images/s)."""
    return float(sum(h.get("seconds") or n_images / max(h["img_per_s"], 1e-9) for h in history))


def _weights(accelerator: Any, model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A CPU copy of the model's current weights."""
    return {k: v.detach().cpu().clone() for k, v in accelerator.unwrap_model(model).state_dict().items()}


# ------------------------------------------------------------------------------------------- fold state
@dataclass
class FoldState:
    """A fold's training so far: what ``progress.json`` holds, and what ``--resume`` continues from."""

    epoch: int = 0                                   # the last epoch trained
    best_auc: float = -1.0                           # the best validation AUC that counts (see counting_from)
    best_epoch: int = 0                              # its epoch (0: none yet)
    history: list[dict[str, Any]] = field(default_factory=list)   # per epoch: loss, seconds, img/s, augment, val AUC
    augment_from: int | None = None                  # first augmented epoch (None: the curriculum still waits)
    anchor: dict[str, Any] | None = None             # collapse guard: {"epoch", "auc"} of the epoch that started
                                                     # augmentation, whose weights it goes back to
    counting_from: int | None = None                 # first epoch at full strength: best epoch, early stopping count
    ramp: int | None = None                          # ramp epochs after a restart (None: cfg.augment_ramp_epochs)
    restarts: list[dict[str, Any]] = field(default_factory=list)  # the guard's actions: epoch, action, ramp, note
    augment_off: bool = False                        # the guard gave up augmenting this fold
    done: bool = False                               # finished: a resumed run trains no further epoch

    def ramp_epochs(self, default: int) -> int:
        """The epochs augmentation ramps up over: after a restart the guard's, else ``default``."""
        return default if self.ramp is None else self.ramp

    def to_json(self) -> dict[str, Any]:
        """``progress.json``'s record: the optional entries appear once they are set (``counting_from`` stays,
        as null, once the guard has reset it)."""
        out: dict[str, Any] = {"epoch": self.epoch, "best_auc": self.best_auc, "best_epoch": self.best_epoch,
                               "history": self.history, "augment_from": self.augment_from}
        if self.anchor is not None:
            out["anchor"] = self.anchor
        if self.counting_from is not None or self.restarts:
            out["counting_from"] = self.counting_from
        if self.ramp is not None:
            out["ramp"] = self.ramp
        if self.restarts:
            out["restarts"] = self.restarts
        if self.augment_off:
            out["augment_off"] = True
        if self.done:
            out["done"] = True
        return out

    @classmethod
    def from_json(cls, raw: dict[str, Any], *, augment_from: int | None) -> "FoldState":
        """A state read back from ``progress.json``; ``augment_from`` for checkpoints from before the curriculum."""
        known = {f.name for f in dataclasses.fields(cls)}
        state = cls(**{k: v for k, v in raw.items() if k in known})
        if "augment_from" not in raw:
            state.augment_from = augment_from
        return state


@dataclass
class FitResult:
    """One trained model and how its training went."""

    model: torch.nn.Module               # the best epoch's weights (the last without validation), CPU, float32
    val_prob: np.ndarray | None          # its P(AS) of the validation images (None without validation)
    best_epoch: int
    best_auc: float
    history: list[dict[str, Any]]        # per epoch, as in progress.json
    augment_from: int | None             # the first augmented epoch (None: the curriculum never started)


# ------------------------------------------------------------------------------------------------ fit_one
def fit_one(accelerator: Any, arch: str, cfg: TrainConfig, data: Images, train_idx: np.ndarray,
            val_idx: np.ndarray | None, *, size: int, pp: Any, epochs: int, ckpt: Path, resume: bool,
            log: list[str], tag: str, augment_from: int = 1, y: np.ndarray | None = None) -> FitResult:
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
    state = FoldState(augment_from=None if curriculum else augment_from)
    best_weights = anchor_weights = None
    guard = cfg.collapse_guard is not None and val_loader is not None
    state_file = ckpt / "progress.json"
    if resume and state_file.is_file():
        accelerator.load_state(str(ckpt / "last"))
        state = FoldState.from_json(json.loads(state_file.read_text()), augment_from=None if curriculum else augment_from)
        from safetensors.torch import load_file

        if (ckpt / "best.safetensors").is_file():
            best_weights = load_file(str(ckpt / "best.safetensors"))
        if state.anchor is not None and (ckpt / "anchor.safetensors").is_file():
            anchor_weights = load_file(str(ckpt / "anchor.safetensors"))
        log.append(f"{tag}: resumed after epoch {state.epoch}")
        log.extend(f"{tag}: epoch {r['epoch']}: {r.get('note', r['action'])}" for r in state.restarts)  # still true

    for epoch in range(state.epoch + 1, epochs + 1 if not state.done else 0):
        strength = 0.0 if state.augment_off else \
            augment_strength(epoch, state.augment_from, state.ramp_epochs(cfg.augment_ramp_epochs))
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
        counting = strength >= 1.0 or not (cfg.acquisition_jitter or cfg.phone_augment) or state.augment_off

        # validation: the curriculum's start, the anchor, the best epoch that counts
        if val_loader is not None:
            p = predict(accelerator, model, val_loader)
            rec["val_auc"] = validation_auc(targets[val_idx], p)
            clean_phase = state.augment_from is None  # the curriculum is still waiting: keep its best epoch
            if clean_phase and rec["val_auc"] >= cfg.augment_after_auc:
                state.augment_from = epoch + 1
                if guard:
                    state.anchor = {"epoch": epoch, "auc": rec["val_auc"]}
                    anchor_weights = _weights(accelerator, model)
            if counting and state.counting_from is None:
                state.counting_from, state.best_auc = epoch, -1.0
            if (counting or clean_phase or best_weights is None) and rec["val_auc"] > state.best_auc:
                state.best_auc, state.best_epoch = rec["val_auc"], epoch
                best_weights = _weights(accelerator, model)
        state.history.append(rec)

        # the collapse guard: back to the anchor when validation AUC has fallen apart
        action = guard_action(state.to_json(), float(cfg.collapse_guard[0]), int(cfg.collapse_guard[1])) if guard else None
        if action is not None:  # back to the anchor: its weights, fresh optimizer moments, best so far
            accelerator.unwrap_model(model).load_state_dict(anchor_weights)
            getattr(optimizer, "optimizer", optimizer).state.clear()
            best_weights = {k: v.clone() for k, v in anchor_weights.items()}
            state.best_auc, state.best_epoch = state.anchor["auc"], state.anchor["epoch"]
            state.counting_from, counting = None, False   # early stopping counts again at full strength
            if action == RESTART:
                state.ramp = 2 * max(1, state.ramp_epochs(cfg.augment_ramp_epochs))
                state.augment_from = epoch + 1
                msg = (f"validation AUC collapsed ({rec['val_auc']:.3f} against {state.anchor['auc']:.3f} at "
                       f"epoch {state.anchor['epoch']}); back to epoch {state.anchor['epoch']}'s weights, "
                       f"augmentation ramps up again over {state.ramp} epochs")
            else:
                state.augment_off = True
                msg = (f"validation AUC collapsed again after {MAX_RESTARTS} restarts; back to epoch "
                       f"{state.anchor['epoch']}'s weights, training on without augmentation")
            state.restarts.append({"epoch": epoch, "action": action, "ramp": state.ramp, "note": msg})
            log.append(f"{tag}: epoch {epoch}: {msg}")
            accelerator.print(f"{tag}: {msg}")
        state.epoch = epoch

        # log and checkpoint the epoch; early stopping
        accelerator.log({f"{tag}/{k}": v for k, v in rec.items() if k != "epoch"}, step=epoch)
        accelerator.print(f"{tag} epoch {epoch}: " + ", ".join(f"{k}={v:.4g}" for k, v in rec.items() if k != "epoch"))
        accelerator.save_state(str(ckpt / "last"))
        if accelerator.is_main_process:
            from safetensors.torch import save_file

            if best_weights is not None:
                save_file({k: v.contiguous() for k, v in best_weights.items()}, str(ckpt / "best.safetensors"))
            if anchor_weights is not None and state.anchor["epoch"] == epoch:
                save_file({k: v.contiguous() for k, v in anchor_weights.items()}, str(ckpt / "anchor.safetensors"))
            state_file.write_text(json.dumps(state.to_json()))
        accelerator.wait_for_everyone()
        if val_loader is not None and counting and epoch - max(state.best_epoch, state.counting_from - 1) >= cfg.patience:
            accelerator.print(f"{tag}: early stop (no better val AUC for {cfg.patience} epochs)")
            break
    if curriculum and state.augment_from is None:
        log.append(f"{tag}: validation AUC never reached {cfg.augment_after_auc}; trained without augmentation")
    if accelerator.is_main_process and not state.done:
        state.done = True
        ckpt.mkdir(parents=True, exist_ok=True)
        state_file.write_text(json.dumps(state.to_json()))

    final = accelerator.unwrap_model(model)
    if best_weights is not None:
        final.load_state_dict(best_weights)
    final = copy.deepcopy(final).float().cpu().eval()
    val_prob = None
    if val_loader is not None:
        ev = torch.utils.data.DataLoader(EvalSet(data, val_idx, size, pp), batch_size=cfg.batch_size * 2)
        val_prob = predict_plain(final, ev)
    accelerator.free_memory()
    return FitResult(model=final, val_prob=val_prob, best_epoch=state.best_epoch or state.epoch,
                     best_auc=state.best_auc, history=state.history, augment_from=state.augment_from)
