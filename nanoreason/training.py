"""Small pieces every train_*.py script shares: device choice, optimizer, schedules, the non-finite loss guard."""
from __future__ import annotations

import math

import torch

from nanoreason.config import ConfigError


class NonFiniteLoss(ConfigError):
    """A loss became NaN or inf; the run stops and the last good checkpoint stays on disk."""


def pick_device(name: str) -> str:
    return ("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else name


def make_optimizer(model, lr: float, weight_decay: float = 0.0):
    """AdamW; weight decay on matrices only (nanoGPT)."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.95))


def cosine_lr(it: int, max_iters: int, lr: float, min_lr: float, warmup: int) -> float:
    """Linear warmup, then cosine decay to min_lr."""
    if it < warmup:
        return lr * (it + 1) / warmup
    t = min(1.0, (it - warmup) / max(1, max_iters - warmup))
    return min_lr + 0.5 * (1 + math.cos(math.pi * t)) * (lr - min_lr)


def linear(start: float, end: float, frac: float) -> float:
    """A linear schedule: start at frac=0, end at frac=1."""
    return start + (end - start) * min(1.0, max(0.0, frac))


def check_finite(loss: torch.Tensor, step: int, what: str = "loss"):
    if not torch.isfinite(loss).all():
        raise NonFiniteLoss(f"{what} became {loss.item()} at step {step}; stopping. The last good checkpoint is kept.")
