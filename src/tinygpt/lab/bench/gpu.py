"""The GPU section of the benchmark: GPT-2 124M's shape, bf16 autocast, compiled, flash
attention: tokens/s and MFU (`tinygpt-bench --gpu`)."""

from __future__ import annotations

import time

import torch

from tinygpt.lab.bench.timing import flops_per_step, median_ms
from tinygpt.model.gpt import GPT, GPTConfig

# Dense bf16 peaks (TFLOP/s) from the vendors' data sheets, for the MFU of the GPU section.
GPU_BF16_PEAK = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L4": 121.0, "A10": 125.0}


def gpu_section(device: str, quick: bool) -> dict:
    """GPT-2 124M shape, bf16 autocast, compiled, flash attention: tokens/s and MFU."""
    shape = (dict(context_length=64, emb_dim=64, n_heads=4, n_layers=2) if quick else
             dict(context_length=1024, emb_dim=768, n_heads=12, n_layers=12))
    b = 2 if quick else 16
    vocab = 512 if quick else 50257  # quick: the code path; GPT-2's head is slow in emulated bf16
    torch.manual_seed(0)
    m = GPT(GPTConfig(vocab_size=vocab, pad_vocab_multiple=64, qkv_bias=True, **shape)).to(device)
    if device == "cuda":
        torch.set_float32_matmul_precision("high")
        m.hidden = torch.compile(m.hidden)
    opt = torch.optim.AdamW(m.parameters(), lr=6e-4, fused=device == "cuda")
    xy = torch.randint(0, vocab, (b, shape["context_length"] + 1), device=device)
    x, y = xy[:, :-1], xy[:, 1:]

    def step() -> None:
        with torch.autocast(device, dtype=torch.bfloat16):
            loss = m.loss(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if device == "cuda":
            torch.cuda.synchronize()

    t = time.perf_counter()
    step()  # includes the compile
    cold = time.perf_counter() - t
    ms = median_ms(step, 1 if quick else 5, 2 if quick else 20)
    flops = flops_per_step(step)
    name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    peak = next((v for k, v in GPU_BF16_PEAK.items() if k in name), None)
    achieved = flops / (ms / 1000) / 1e12
    return {"device": name, "batch": f"{b} x {shape['context_length']}", "ms_per_step": ms,
            "tokens_per_sec": b * shape["context_length"] / ms * 1000, "cold_s": cold,
            "tflops": achieved, "peak_tflops": peak, "mfu": achieved / peak if peak else None}
