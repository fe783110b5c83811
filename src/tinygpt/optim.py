"""The optimizer and its schedule, in plain PyTorch: AdamW over two parameter groups (decayed
matrices, the rest), linear warmup, then cosine decay."""

from __future__ import annotations

import math

import torch
from torch import nn

from tinygpt.config import OptimConfig


def lr_lambda(step: int, warmup_steps: int, total_steps: int, min_lr_ratio: float) -> float:
    """Linear warmup to 1, then cosine decay to min_lr_ratio at total_steps (factor of lr)."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Decay the matrices of Linear layers and the token embedding (tied to the head); leave
    biases, LayerNorm gains/shifts and the position table alone: shrinking those towards zero
    has no regularising use and only fights the signal they carry."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        is_matrix = p.dim() >= 2 and not name.startswith("pos_emb")
        (decay if is_matrix else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay, "name": "decay"},
            {"params": no_decay, "weight_decay": 0.0, "name": "no_decay"}]


def build_optimizer(model: nn.Module, cfg: OptimConfig, total_steps: int
                    ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW and its per-step schedule over total_steps."""
    # foreach: a few batched kernels per step. (fused=True would be one, but Lightning refuses
    # gradient clipping with a fused optimizer under mixed precision.)
    opt = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr,
                            betas=tuple(cfg.betas), foreach=True)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_lambda(s, cfg.warmup_steps, total_steps, cfg.min_lr_ratio))
    return opt, sched
