"""Sampling from a GPT: temperature, top-k, top-p, and a KV cache."""

from __future__ import annotations

import torch
from torch import Tensor

from tinygpt.model.config import check_sampling
from tinygpt.model.gpt import GPT, evaluating


def sample_next(
    logits: Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Pick one token per row of logits (B, vocab) -> (B, 1). Temperature 0 is greedy."""
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)
    logits = logits.float() / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, -torch.inf)
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        p = sorted_logits.softmax(dim=-1)
        # Drop a token once the tokens before it already hold top_p; the first always stays.
        drop_sorted = (p.cumsum(dim=-1) - p) >= top_p
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, -torch.inf)
    probs = logits.softmax(dim=-1)
    return torch.multinomial(probs, 1, generator=generator)


@torch.no_grad()
def generate(
    model: GPT,
    idx: Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    eos_token: int | None = None,
    use_cache: bool = True,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Extend idx (B, T) by up to max_new_tokens; the context slides once it exceeds the model's.

    The KV cache makes each new token O(T). A non-causal model gets no cache: there every
    earlier position's keys change when a token is added, so cached keys would be stale.
    """
    check_sampling(temperature, top_k, top_p)
    ctx = model.cfg.context_length
    use_cache = use_cache and model.cfg.attention.causal
    cache = None
    with evaluating(model):
        for _ in range(max_new_tokens):
            if not use_cache:
                logits = model.next_logits(idx[:, -ctx:])
            elif cache is None or cache[0].length + 1 > ctx:
                # First step, or the window slid: positions shifted, so refill from the window.
                cache = model.new_cache()
                logits = model.next_logits(idx[:, -ctx:], cache)
            else:
                logits = model.next_logits(idx[:, -1:], cache)
            nxt = sample_next(logits, temperature, top_k, top_p, generator)
            idx = torch.cat([idx, nxt], dim=1)
            if eos_token is not None and bool((nxt == eos_token).all()):
                break
    return idx
