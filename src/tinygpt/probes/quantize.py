"""Quantisation sensitivity: a model scored with every linear layer's weights and inputs rounded
to int8 (simulated: rounded, then used in float), against the same model in float."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from tinygpt.model.gpt import GPT
from tinygpt.probes.evaluate import Score, score_windows


def fake_int8(t: Tensor) -> Tensor:
    """Symmetric per-tensor int8: t rounded to the 255 levels of max|t| / 127 and back."""
    step = t.detach().abs().amax().clamp_min(1e-12) / 127
    return (t / step).round().clamp(-127, 127) * step


@contextmanager
def int8_simulated(model: GPT) -> Iterator[GPT]:
    """Inside the block, every nn.Linear's weight and input are fake-quantised (the LM head's
    input too: it is the final LayerNorm's output); afterwards the weights are as they were."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    saved = {id(m.weight): m.weight.detach().clone() for m in linears}  # a tied head: once
    hooks = [m.register_forward_pre_hook(lambda _m, args: (fake_int8(args[0]), *args[1:]))
             for m in linears]
    hooks.append(model.ln_f.register_forward_hook(lambda _m, _a, out: fake_int8(out)))
    try:
        with torch.no_grad():
            for m in linears:
                m.weight.copy_(fake_int8(saved[id(m.weight)]))
        yield model
    finally:
        for h in hooks:
            h.remove()
        with torch.no_grad():
            for m in linears:
                m.weight.copy_(saved[id(m.weight)])


def int8_sensitivity(model: GPT, windows: Dataset, token_bytes: Tensor) -> tuple[Score,
                                                                                        Score]:
    """The model's score on the windows in float, and with int8 weights and inputs."""
    with torch.autocast(next(model.parameters()).device.type, enabled=False):
        exact = score_windows(model, windows, token_bytes)
        with int8_simulated(model):
            rounded = score_windows(model, windows, token_bytes)
    return exact, rounded
