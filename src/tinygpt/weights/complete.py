"""A prompt's continuation by a saved model, as `tinygpt-generate` prints it: load the model (a
training checkpoint, a run folder or a Hugging Face GPT-2 directory), check the prompt and the
sampling settings, sample."""

from __future__ import annotations

import torch

from tinygpt.errors import UsageError
from tinygpt.model.config import check_sampling
from tinygpt.model.generate import generate
from tinygpt.weights.checkpoint import load_model


def complete(ckpt: str, prompt: str, max_new_tokens: int, temperature: float = 1.0,
             top_k: int | None = None, top_p: float | None = None, seed: int = 0,
             use_cache: bool = True, device: str = "auto") -> str:
    """The prompt and its continuation by a training checkpoint, a run folder or a Hugging Face
    GPT-2 directory; UsageError for an unreadable checkpoint or an unusable prompt or setting."""
    check_sampling(temperature, top_k, top_p)
    if max_new_tokens < 1:
        raise UsageError(f"max_new_tokens={max_new_tokens} is too small (set 1 or more)")
    device = pick_device(device)
    model, tok = load_model(ckpt, map_location=device)
    ids = tok.encode(prompt)
    if not ids:
        raise UsageError('the prompt is empty (give one, e.g. prompt="The for statement")')
    if len(ids) > model.cfg.context_length:
        raise UsageError(f"the prompt is {len(ids)} tokens, longer than the model's context of "
                         f"{model.cfg.context_length} (shorten it)")
    gen = torch.Generator(device=device).manual_seed(seed)
    out = generate(model, torch.tensor([ids], device=device), max_new_tokens, temperature,
                   top_k, top_p, eos_token=tok.eot_token, use_cache=use_cache, generator=gen)
    return tok.decode(out[0].tolist())


def pick_device(name: str) -> torch.device:
    """The device `name` says (auto: a CUDA GPU if there is one, else the CPU); a UsageError
    for a name that is no device, or a device this machine does not have."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UsageError(f"device={name!r} is not a device (use auto, cpu, cuda or cuda:N)") \
            from None
    have = {"cpu": 1, "cuda": torch.cuda.device_count(),
            "mps": int(torch.backends.mps.is_available())}.get(device.type, 0)
    if have <= (device.index or 0):
        raise UsageError(f"device={name}: this machine has no such device (use device=auto or "
                         "device=cpu)")
    return device
