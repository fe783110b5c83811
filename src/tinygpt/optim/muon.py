"""Muon (Jordan et al. 2024): momentum SGD whose update for each weight matrix is orthogonalised by
a Newton-Schulz iteration. The same algorithm as `torch.optim.Muon`, with the iteration batched
over matrices of one shape and run in a dtype of the caller's choice: torch's always runs it in
bf16, which a CPU without bf16 instructions emulates hundreds of times slower than float32."""

from __future__ import annotations

import math

import torch
from torch import Tensor

# The quintic iteration's coefficients (Keller Jordan's, also torch's defaults)
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


def orthogonalise(g: Tensor, steps: int, dtype: torch.dtype, eps: float = 1e-7) -> Tensor:
    """About U V^T of each matrix g = U S V^T (singular values pushed towards 1), computed in
    dtype; g is one matrix or a stack of them (..., rows, cols)."""
    a, b, c = NS_COEFFICIENTS
    x = g.to(dtype)
    tall = g.size(-2) > g.size(-1)
    if tall:  # iterate on the short side: its Gram matrix is the small one
        x = x.mT
    x = x / x.norm(dim=(-2, -1), keepdim=True).clamp(min=eps)  # spectral norm at most 1
    for _ in range(steps):
        gram = x @ x.mT
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.mT if tall else x


def run_closure(closure) -> Tensor | None:
    """The loss a closure returns, computed with gradients on, as torch's optimizers call it."""
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()


class Muon(torch.optim.Optimizer):
    """Muon for 2-D parameters; lr is scaled by sqrt(max(1, rows / cols)) as in the original.
    ns_dtype: "bfloat16" (torch's choice) or "float32", by name so checkpoints hold a string."""

    def __init__(self, params, lr: float = 0.02, weight_decay: float = 0.1,
                 momentum: float = 0.95, nesterov: bool = True, ns_steps: int = 5,
                 ns_dtype: str = "bfloat16"):
        super().__init__(params, {"lr": lr, "weight_decay": weight_decay, "momentum": momentum,
                                  "nesterov": nesterov, "ns_steps": ns_steps,
                                  "ns_dtype": ns_dtype})
        for group in self.param_groups:
            if any(p.dim() != 2 for p in group["params"]):
                raise ValueError("Muon takes 2-D parameters only (give the rest to AdamW)")

    @torch.no_grad()
    def step(self, closure=None):
        loss = run_closure(closure)
        for group in self.param_groups:
            lr, mu = group["lr"], group["momentum"]
            by_shape: dict[torch.Size, list[tuple[Tensor, Tensor]]] = {}
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p)
                buf = state["momentum_buffer"].lerp_(p.grad, 1 - mu)
                update = p.grad.lerp(buf, mu) if group["nesterov"] else buf
                by_shape.setdefault(p.shape, []).append((p, update))
            # Matrices of one shape (the same layer in every block) go through the iteration
            # together: a few large matmuls instead of many small ones.
            for shape, pairs in by_shape.items():
                ortho = orthogonalise(torch.stack([u for _, u in pairs]), group["ns_steps"],
                                      getattr(torch, group["ns_dtype"]))
                scale = -lr * math.sqrt(max(1.0, shape[0] / shape[1]))
                for (p, _), update in zip(pairs, ortho, strict=True):
                    p.mul_(1 - lr * group["weight_decay"])
                    p.add_(update, alpha=scale)
        return loss
