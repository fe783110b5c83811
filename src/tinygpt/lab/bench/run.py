"""The benchmark, end to end: every measurement of `bench_measure` on this machine, as a dict
that `bench_render.write` turns into docs/results/benchmarks.md and .json (`tinygpt-bench`)."""

from __future__ import annotations

import statistics

import torch

from tinygpt.data.tokenizer import TokenizerName
from tinygpt.lab.bench.measure import (
    Setup,
    attention_table,
    default_setup,
    diagnostics_ms,
    generation,
    lightning_ms,
    loss_curves,
    median_ms,
    model,
    raw_step,
    skipped_bf16,
    time_variant,
)
from tinygpt.lab.bench.memory import train_run_peak_rss
from tinygpt.lab.bench.timing import flops_per_step, machine
from tinygpt.training.config import compose_train
from tinygpt.training.precision import Bf16Probe, matmul_peak, probe_cpu_bf16, resolve_precision


def run(quick: bool = False) -> dict:
    """Every measurement, as a dict that `write` turns into benchmarks.md and .json."""
    st = default_setup(quick)
    probe = probe_cpu_bf16()
    choice = resolve_precision("auto", "cpu")
    R: dict = {"machine": machine(),
               "command": "python scripts/bench.py" + (" --quick" if quick else ""),
               "shape": {"n_layers": st.cfg.n_layers, "emb_dim": st.cfg.emb_dim,
                         "vocab_size": st.cfg.vocab_size, "batch": st.batch,
                         "context_length": st.cfg.context_length},
               "bf16_probe": {"float32_gflops": probe.float32_gflops,
                              "bf16_gflops": probe.bf16_gflops, "speedup": probe.speedup},
               "default_precision": {"precision": choice.precision, "reason": choice.reason}}
    R["peak_gflops"] = peaks(quick)
    R["training"] = training(st, choice.precision == "bf16-mixed", probe)
    # A shared machine's speed drifts: the peak is the best of a measurement before and after
    # the training rows, so MFU is not inflated by a slow moment.
    for dtype, later in peaks(quick).items():
        R["peak_gflops"][dtype] = max(R["peak_gflops"][dtype], later, key=lambda r: r["gflops"])
    R |= summary(st, R)
    R["text_throughput"] = text_throughput(st, choice.precision)
    R["attention_fwd_bwd"] = attention_table(st)
    R["generation"] = generation(st)
    R["loss_curves"] = loss_curves(st, probe)
    R["train_run_peak_rss_mib"] = train_run_peak_rss(*((3, "experiment=smoke") if quick else (30,)))
    return R


def peaks(quick: bool) -> dict:
    return {"float32": matmul_peak(torch.float32, 0.1 if quick else 1.0),
            "bf16": matmul_peak(torch.bfloat16, 0.1 if quick else 1.0)}


def training(st: Setup, default_bf16: bool, probe: Bf16Probe) -> dict:
    """ms/step of the raw loop with each switch, and the default path raw and through Lightning.

    The default is whatever precision=auto picks here; bf16 variants are timed only where bf16
    runs on hardware instructions."""
    d = "bf16" if default_bf16 else "float32"
    variants = {  # name: (bf16, sliced CE, vocab pad, compile)
        "raw float32 eager, full CE (nanoGPT-style)": (False, False, 1, False),
        "raw float32 + sliced CE": (False, True, 64, False),
        "raw bf16 autocast, full CE": (True, False, 64, False),
        "raw bf16 + sliced CE": (True, True, 64, False),
        f"raw {d} + sliced CE, vocabulary unpadded": (default_bf16, True, 1, False),
    }
    if not st.quick:
        variants[f"raw {d} + sliced CE + compile"] = (default_bf16, True, 64, True)
    del variants[f"raw {d} + sliced CE"]  # the default: measured below, beside Lightning
    train: dict = {}
    for name, (bf16, sliced, pad, comp) in variants.items():
        train[name] = (skipped_bf16(probe) if bf16 and not probe.native
                       else time_variant(st, bf16, sliced, pad, comp))
    # The overhead is a few percent, the machine's drift can be as large: alternate the raw loop
    # and the Lightning path in rounds and compare the medians of all rounds.
    raw_ms, lit_ms = [], []
    for _ in range(1 if st.quick else 3):
        step = raw_step(st, model(st), default_bf16, True)
        raw_ms.append(median_ms(step, *st.warm_reps))
        lit_ms.append(lightning_ms(st, "bf16-mixed" if default_bf16 else "32-true"))
    for name, ms in ((f"raw {d} + sliced CE (our default)", raw_ms),
                     (f"Lightning (our default: {d})", lit_ms)):
        train[name] = {"ms_per_step": statistics.median(ms), "rounds_ms": ms,
                       "tokens_per_sec": st.tokens / statistics.median(ms) * 1000,
                       "default": True}
    train["flops_per_step"] = flops_per_step(step)
    return train


def summary(st: Setup, R: dict) -> dict:
    """Ratios between the training rows, the diagnostics' cost, and MFU against the peak of the
    precision the default path uses."""
    train = R["training"]
    flops = train.pop("flops_per_step")
    raw, light = (train[k] for k in train if train[k].get("default"))
    base = train["raw float32 eager, full CE (nanoGPT-style)"]
    dtype = "bf16" if R["default_precision"]["precision"] == "bf16-mixed" else "float32"
    diag = diagnostics_ms(st)
    every = compose_train().probes.every
    achieved = flops / (raw["ms_per_step"] / 1000) / 1e9
    return {
        "ratios": {
            "lightning_vs_raw_same_settings": raw["ms_per_step"] / light["ms_per_step"],
            "lightning_overhead_pct": (light["ms_per_step"] / raw["ms_per_step"] - 1) * 100,
            "default_vs_raw_float32_eager": base["ms_per_step"] / light["ms_per_step"],
        },
        "diagnostics": {"ms": diag, "every_n_steps": every,
                        "overhead_pct": diag / (every * light["ms_per_step"]) * 100},
        "mfu": {"flops_per_step": flops, "achieved_gflops": achieved, "peak_dtype": dtype,
                "mfu": achieved / R["peak_gflops"][dtype]["gflops"]},
    }


def text_throughput(st: Setup, precision: str) -> dict:
    """What a user waits for is text: the Lightning path's tokens/s and bytes/s with the
    default tokenizer and with GPT-2's (the earlier default), at the same shape."""
    gpt2 = (st if st.data.tokenizer == "gpt2"
            else default_setup(st.quick, "tokenizer=gpt2", keep_tokenizer=True))
    out = {}
    tok = TokenizerName(st.data.tokenizer).value
    for name, s in ((f"default ({tok}, vocabulary {st.cfg.vocab_size})", st),
                    (f"GPT-2 tokens (vocabulary {gpt2.cfg.vocab_size})", gpt2)):
        ms = lightning_ms(s, precision)
        tps = s.tokens / ms * 1000
        out[name] = {"ms_per_step": ms, "tokens_per_sec": tps,
                     "bytes_per_token": s.bytes_per_token,
                     "bytes_per_sec": tps * s.bytes_per_token}
    return out
