"""The optimizer and its schedule, in plain PyTorch: AdamW over two parameter groups (decayed
matrices, the rest), or Muon for the blocks' matrices beside AdamW for the rest; linear warmup,
then cosine decay or warmup-stable-decay."""

from __future__ import annotations

import math

import torch
from torch import nn

from tinygpt.optim.config import Algorithm, OptimConfig, Schedule
from tinygpt.optim.muon import Muon, run_closure


def lr_lambda(step: int, warmup_steps: int, total_steps: int, min_lr_ratio: float,
              schedule: Schedule = Schedule.cosine, decay_fraction: float = 0.3) -> float:
    """Linear warmup to 1, then cosine decay to min_lr_ratio at total_steps (factor of lr); or,
    for wsd, 1 until the last decay_fraction of the steps and a straight line down over them."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == Schedule.wsd:
        decay_start = total_steps * (1.0 - decay_fraction)
        progress = min(1.0, max(0.0, step - decay_start) / max(1.0, total_steps - decay_start))
        return 1.0 - (1.0 - min_lr_ratio) * progress
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


def hidden_matrices(model: nn.Module) -> list[nn.Parameter]:
    """The blocks' 2-D weights: what Muon orthogonalises (embeddings and head stay with AdamW)."""
    return [p for name, p in model.named_parameters()
            if p.dim() == 2 and name.startswith("blocks.")]


class Combined(torch.optim.Optimizer):
    """Several optimizers stepped as one, so Lightning's automatic optimization, its gradient
    clipping and one LR scheduler see a single optimizer over all their parameter groups. Its
    groups are the parts' own dicts (a rate the scheduler sets is the part's); each part keeps
    its own state."""

    def __init__(self, *optimizers: torch.optim.Optimizer):
        self.optimizers = optimizers
        super().__init__([g for o in optimizers for g in o.param_groups], defaults={})

    @torch.no_grad()
    def step(self, closure=None):
        loss = run_closure(closure)
        for o in self.optimizers:
            o.step()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        for o in self.optimizers:
            o.zero_grad(set_to_none)

    def state_dict(self) -> dict:
        return {"optimizers": [o.state_dict() for o in self.optimizers]}

    def load_state_dict(self, state_dict: dict) -> None:
        for o, s in zip(self.optimizers, state_dict["optimizers"], strict=True):
            o.load_state_dict(s)
        # a part's load_state_dict replaces its group dicts: share the new ones
        self.param_groups = [g for o in self.optimizers for g in o.param_groups]


def build_optimizer(model: nn.Module, cfg: OptimConfig, total_steps: int, fused: bool = False,
                    fast_bf16: bool = False
                    ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW (or Muon + AdamW) and its per-step schedule over total_steps. fused: AdamW in one
    kernel per step, else foreach (a few batched kernels). fast_bf16: Muon's iteration in bf16
    (where bf16 matmuls are fast), else float32."""
    groups = param_groups(model, cfg.weight_decay)
    adamw_args = {"lr": cfg.lr, "betas": tuple(cfg.betas)} | (
        {"fused": True} if fused else {"foreach": True})
    if cfg.algorithm == Algorithm.muon:
        muon_params = {id(p) for p in hidden_matrices(model)}
        for g in groups:
            g["params"] = [p for p in g["params"] if id(p) not in muon_params]
        muon = Muon(hidden_matrices(model), lr=cfg.muon_lr, weight_decay=cfg.weight_decay,
                    momentum=cfg.muon_momentum, ns_steps=cfg.muon_ns_steps,
                    ns_dtype="bfloat16" if fast_bf16 else "float32")
        muon.param_groups[0]["name"] = "muon"
        opt = Combined(muon, torch.optim.AdamW(groups, **adamw_args))
    else:
        opt = torch.optim.AdamW(groups, **adamw_args)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_lambda(
        s, cfg.warmup_steps, total_steps, cfg.min_lr_ratio, cfg.schedule, cfg.decay_fraction))
    return opt, sched
