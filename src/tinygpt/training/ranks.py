"""What the ranks of a multi-process run agree on: one all-reduce of one number, and nothing at
all in a single process."""

from __future__ import annotations

import lightning as L
import torch
import torch.distributed as dist


def reduce_over_ranks(value: float, trainer: L.Trainer, op: dist.ReduceOp) -> float:
    """`value` reduced over every rank with `op` under a multi-process strategy; else itself."""
    if trainer.world_size == 1 or not dist.is_initialized():
        return value
    t = torch.tensor([float(value)], device=trainer.strategy.root_device)
    dist.all_reduce(t, op=op)
    return t.item()


def all_ranks_agree(ok: bool, trainer: L.Trainer) -> bool:
    """Whether `ok` holds on every rank."""
    return reduce_over_ranks(1.0 if ok else 0.0, trainer, dist.ReduceOp.MIN) > 0


def signal_on_any_rank(signum: int | None, trainer: L.Trainer) -> int | None:
    """The signal some rank received (the largest number, if several); None if none did."""
    return int(reduce_over_ranks(signum or 0, trainer, dist.ReduceOp.MAX)) or None
