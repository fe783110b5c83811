"""Cross-entropy of a linear LM head without materialising the (tokens x vocab) logits.

With GPT-2's 50,257-token vocabulary the head's logits dominate a small model's step: for
16 x 128 tokens they are 411 MB of float32, written and re-read by softmax and its backward.
Computing loss and gradients a few rows at a time keeps each slice in cache; the numbers are the
same as `F.cross_entropy(h @ W.T, y)` up to rounding.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _chunk_rows(vocab_size: int, device: torch.device) -> int:
    # About 16 MB of float32 logits per slice on a CPU (cache-sized); GPUs prefer big launches.
    budget = 1 << 22 if device.type == "cpu" else 1 << 28
    return max(1, budget // vocab_size)


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h: Tensor, weight: Tensor, targets: Tensor, compute_dtype: torch.dtype,
                n_valid: int, softcap: float | None):
        n = h.shape[0]
        hc, wc = h.to(compute_dtype), weight.to(compute_dtype)
        need_grad = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        grad_h = torch.empty_like(h) if need_grad else None
        grad_w = torch.zeros_like(weight, dtype=torch.float32) if need_grad else None
        total = torch.zeros((), dtype=torch.float32, device=h.device)
        step = _chunk_rows(weight.shape[0], h.device)
        for s in range(0, n, step):
            hs, ys = hc[s : s + step], targets[s : s + step]
            logits = (hs @ wc.T).float()
            if softcap is not None:  # z = c tanh(l / c); dz/dl = 1 - tanh²
                tanh = logits.div_(softcap).tanh_()
                slope = 1.0 - tanh.square() if need_grad else None
                logits = tanh.mul_(softcap)
            if n_valid < logits.shape[1]:
                logits[:, n_valid:] = -torch.inf  # padding rows: probability 0, gradient 0
            lse = torch.logsumexp(logits, dim=-1)
            total += (lse - logits.gather(1, ys[:, None]).squeeze(1)).sum()
            if need_grad:
                # d(loss_i)/d(logits_i) = softmax(logits_i) - onehot(y_i), built in place.
                p = logits.sub_(lse[:, None]).exp_()
                p[torch.arange(len(ys), device=p.device), ys] -= 1.0
                if softcap is not None:
                    p.mul_(slope)
                pc = p.to(compute_dtype)
                grad_h[s : s + step] = pc @ wc
                grad_w += (pc.T @ hs).float()
        ctx.save_for_backward(grad_h, grad_w)
        ctx.weight_dtype = weight.dtype
        return total / n

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        grad_h, grad_w = ctx.saved_tensors
        scale = grad_out / grad_h.shape[0]
        return grad_h * scale, (grad_w * scale).to(ctx.weight_dtype), None, None, None, None


def linear_cross_entropy(
    h: Tensor, weight: Tensor, targets: Tensor, n_valid: int | None = None,
    softcap: float | None = None,
) -> Tensor:
    """Mean cross-entropy of logits h @ weight.T (h: (N, d), weight: (V, d), targets: (N,)),
    soft-capped to softcap * tanh(logits / softcap) if softcap is set.

    Only the first n_valid rows of weight are classes (the rest is padding). Under autocast the
    matmuls run in the autocast dtype; softmax and the sums stay float32.
    """
    n = weight.shape[0] if n_valid is None else n_valid
    dev = h.device.type
    if not torch.amp.is_autocast_available(dev):  # e.g. the meta device FLOPs are counted on
        return _LinearCrossEntropy.apply(h, weight, targets, h.dtype, n, softcap)
    dtype = torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else h.dtype
    with torch.autocast(dev, enabled=False):
        return _LinearCrossEntropy.apply(h, weight, targets, dtype, n, softcap)
