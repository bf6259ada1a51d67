"""The joint reader's training loops (``train/joints.py``): the localiser's heatmap loss and loop, the grader's
ordinal loss and loop, and the grader's temperature.

Both loops print one line per epoch and keep the weights of the best validation epoch.
"""
from __future__ import annotations

import copy
import math
import time
from typing import Callable, Sequence

import numpy as np
import torch

from as_ai.joints._view import joint_crop, standardise
from as_ai.joints.grader import OrdinalGraderNet, ordinal_probabilities
from as_ai.joints.localiser import LocaliserNet
from train._augment import AcquisitionJitter
from train._joints_data import Item, augment_localiser, negative_view


# ------------------------------------------------------------------------------------------- localiser
def heatmap_targets(boxes: Sequence[Sequence], grid: tuple[int, int], stride: int, short_edge: int, sigma: float
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Targets for one view: heat 2 x gh x gw (Gaussian peak 1 at each present joint's centre cell), regression
    targets 8 (dx, dy, log w, log h per side) and a mask 2 (joint present)."""
    gh, gw = grid
    heat = torch.zeros(2, gh, gw)
    reg = torch.zeros(8)
    mask = torch.zeros(2)
    yy, xx = torch.meshgrid(torch.arange(gh, dtype=torch.float32), torch.arange(gw, dtype=torch.float32),
                            indexing="ij")
    for s, b in enumerate(boxes):
        if b is None:
            continue
        cx, cy = (b[0] + b[2]) / 2 / stride, (b[1] + b[3]) / 2 / stride
        ix, iy = int(min(max(math.floor(cx), 0), gw - 1)), int(min(max(math.floor(cy), 0), gh - 1))
        heat[s] = torch.exp(-((xx - ix) ** 2 + (yy - iy) ** 2) / (2 * sigma ** 2))
        heat[s, iy, ix] = 1.0
        reg[4 * s: 4 * s + 4] = torch.tensor([cx - ix, cy - iy, math.log(max(b[2] - b[0], 1) / short_edge),
                                              math.log(max(b[3] - b[1], 1) / short_edge)])
        mask[s] = 1.0
    return heat, reg, mask


def localiser_loss(out: torch.Tensor, heat: torch.Tensor, reg: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss on the heatmaps + L1 on offsets and log sizes at the true centres."""
    logit = out[:, :2]
    p = torch.sigmoid(logit).clamp(1e-4, 1 - 1e-4)
    pos = heat.eq(1.0).float()
    pos_loss = -(torch.log(p) * (1 - p) ** 2 * pos).sum()
    neg_loss = -(torch.log(1 - p) * p ** 2 * (1 - heat) ** 4 * (1 - pos)).sum()
    n_pos = pos.sum().clamp_min(1.0)
    focal = (pos_loss + neg_loss) / n_pos
    n, _, gh, gw = out.shape
    l1 = out.new_zeros(())
    for s in range(2):
        flat = pos[:, s].reshape(n, -1).argmax(1)
        pred = out[:, 2 + 4 * s: 6 + 4 * s].reshape(n, 4, -1)[torch.arange(n), :, flat]    # n x 4
        err = (pred - reg[:, 4 * s: 4 * s + 4]).abs().sum(1)
        l1 = l1 + (err * mask[:, s]).sum()
    return focal + l1 / mask.sum().clamp_min(1.0)


def train_localiser(train: Sequence[Item], phones: Sequence[Item], *, pp, epochs: int, batch: int, lr: float,
                    phone_share: float, neg_share: float, short_edge: int, stride: int, width: int, seed: int,
                    validate: Callable[[LocaliserNet], float], log: Callable[[str], None] = print) -> LocaliserNet:
    """Train the heatmap localiser; returns the best-validated network (``validate`` returns a score to maximise)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng([seed, 41])
    net = LocaliserNet(width)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * math.ceil(len(train) / batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    jitter = AcquisitionJitter(0.8, blur_p=0.4, blur_max=0.8)
    best, best_state = -1.0, None
    for ep in range(epochs):
        net.train()
        t0, total = time.time(), 0.0
        order = rng.permutation(len(train))
        for i in range(0, len(order), batch):
            views, targets = [], []
            for j in order[i:i + batch]:
                if rng.random() < neg_share:
                    views.append(negative_view(rng, short_edge))
                    targets.append([None, None])
                    continue
                item = phones[j] if phones and rng.random() < phone_share else train[j]
                v, boxes = augment_localiser(item, rng)
                views.append(jitter(v))
                targets.append(boxes)
            x = standardise(torch.stack(views), pp)
            gh, gw = x.shape[-2] // stride, x.shape[-1] // stride
            t = [heatmap_targets(b, (gh, gw), stride, short_edge, sigma=1.0) for b in targets]
            heat, reg, mask = (torch.stack([a[k] for a in t]) for k in range(3))
            loss = localiser_loss(net(x), heat, reg, mask)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(views)
        score = validate(net)
        if score > best:
            best, best_state = score, copy.deepcopy(net.state_dict())
        log(f"  localiser epoch {ep + 1}/{epochs}: loss {total / len(order):.4f}  val {score:.4f}  "
            f"({time.time() - t0:.0f} s)")
    net.load_state_dict(best_state)
    return net.eval()


# ---------------------------------------------------------------------------------------------- grader
def jitter_box(box: Sequence[float], rng: np.random.Generator, *, shift: float, scale: float) -> tuple[float, ...]:
    """``box`` moved by N(0, shift) of its size and resized by exp(N(0, scale)) on each axis (localiser error)."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    cx = (x0 + x1) / 2 + rng.normal(0, shift) * w
    cy = (y0 + y1) / 2 + rng.normal(0, shift) * h
    w, h = w * math.exp(rng.normal(0, scale)), h * math.exp(rng.normal(0, scale))
    return cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2


def grader_crops(items: Sequence[Item], cfg, *, boxes: Sequence[Sequence] | None = None,
                 rng: np.random.Generator | None = None, jitter=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Crops of both joints of every item (left, right in turn) and their true grades; ``boxes`` replace the
    true boxes (e.g. the localiser's); ``rng`` jitters the boxes; ``jitter`` re-processes the crops."""
    crops, grades = [], []
    for k, item in enumerate(items):
        px = torch.from_numpy(item.pixels)
        for s, side in enumerate(("left", "right")):
            b = (boxes[k][s] if boxes is not None else item.boxes[s])
            if rng is not None:
                b = jitter_box(b, rng, shift=0.07, scale=0.08)
            c = joint_crop(px, b, size=cfg.crop, margin=cfg.margin, mirror=side == cfg.mirror_side)
            crops.append(jitter(c) if jitter is not None else c)
            grades.append(item.grades[s])
    return torch.stack(crops), torch.tensor(grades)


def ordinal_nll(score: torch.Tensor, th: torch.Tensor, y: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Negative log-likelihood of the true grades under the cumulative-logit model."""
    p = ordinal_probabilities(score, th, temperature)
    return -torch.log(p[torch.arange(len(y)), y].clamp_min(1e-6)).mean()


def train_grader(train: Sequence[Item], phones: Sequence[Item], cfg, *, pp, epochs: int, batch: int, lr: float,
                 phone_share: float, seed: int, validate: Callable[[OrdinalGraderNet], float],
                 log: Callable[[str], None] = print) -> OrdinalGraderNet:
    """Train the ordinal grader on jittered crops around the true boxes; returns the best-validated network."""
    torch.manual_seed(seed)
    rng = np.random.default_rng([seed, 43])
    net = OrdinalGraderNet(cfg.width)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-3)
    per_epoch = math.ceil(len(train) / (batch // 2))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * per_epoch, pct_start=0.15)
    jitter = AcquisitionJitter(0.8, blur_p=0.4, blur_max=1.0)
    best, best_state = -2.0, None
    for ep in range(epochs):
        net.train()
        t0, total = time.time(), 0.0
        order = rng.permutation(len(train))
        for i in range(0, len(order), batch // 2):
            items = [phones[j] if phones and rng.random() < phone_share else train[j] for j in order[i:i + batch // 2]]
            x, y = grader_crops(items, cfg, rng=rng, jitter=jitter)
            score, th = net(standardise(x, pp))
            loss = ordinal_nll(score, th, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(y)
        val = validate(net)
        if val > best:
            best, best_state = val, copy.deepcopy(net.state_dict())
        log(f"  grader epoch {ep + 1}/{epochs}: nll {total / (2 * len(order)):.4f}  val QWK {val:.4f}  "
            f"({time.time() - t0:.0f} s)")
    net.load_state_dict(best_state)
    return net.eval()


def fit_temperature(score: torch.Tensor, th: torch.Tensor, y: torch.Tensor) -> float:
    """The temperature that minimises the held-out NLL (a grid over 0.05-4, log-spaced)."""
    grid = np.exp(np.linspace(math.log(0.05), math.log(4.0), 241))
    nll = [float(ordinal_nll(score, th, y, float(t))) for t in grid]
    return float(grid[int(np.argmin(nll))])
