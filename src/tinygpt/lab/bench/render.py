"""docs/results/benchmarks.md from the benchmark's dict (and the dict itself as its .json)."""

from __future__ import annotations

import json
from pathlib import Path


def write(R: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "benchmarks.json").write_text(json.dumps(R, indent=2) + "\n")
    pk, dp, sh = R["peak_gflops"], R["default_precision"], R["shape"]
    L_ = [f"Command: `{R['command']}`  \nMachine: {R['machine']}  \n",
          f"Default path: `{dp['precision']}` ({dp['reason']}).\n",
          f"Matmul peak: float32 {pk['float32']['gflops']:.0f} GFLOP/s "
          f"({pk['float32']['n']}^3), bf16 {pk['bf16']['gflops']:.0f} GFLOP/s "
          f"({pk['bf16']['n']}^3)\n",
          f"## Training step: {sh['n_layers']} layers x {sh['emb_dim']}, vocabulary "
          f"{sh['vocab_size']}, batch {sh['batch']} x {sh['context_length']}\n",
          "| path | ms/step | tokens/s |", "| --- | ---: | ---: |"]
    for name, r in R["training"].items():
        if "skipped" in r:
            L_.append(f"| {name} | skipped: {r['skipped']} | |")
            continue
        extra = f" (cold compile {r['cold_compile_s']:.1f} s)" if "cold_compile_s" in r else ""
        L_.append(f"| {name}{extra} | {r['ms_per_step']:.0f} | {r['tokens_per_sec']:.0f} |")
    r, mfu = R["ratios"], R["mfu"]
    L_ += ["", "Lightning vs the raw loop at the same settings: "
           f"{r['lightning_vs_raw_same_settings']:.3f}x "
           f"(overhead {r['lightning_overhead_pct']:.1f}%)."
           f" Our default (Lightning) vs the raw float32 eager loop: "
           f"{r['default_vs_raw_float32_eager']:.2f}x.\n",
           f"Attention diagnostics (entropy, saturation, score spread, W_q/W_k gradients on 4 "
           f"sequences, float32): {R['diagnostics']['ms']:.0f} ms per measurement, every "
           f"{R['diagnostics']['every_n_steps']} steps = {R['diagnostics']['overhead_pct']:.1f}% "
           "of training time.\n",
           f"Model FLOPs per step {mfu['flops_per_step'] / 1e9:.2f} GFLOP; the default raw loop "
           f"achieves {mfu['achieved_gflops']:.0f} GFLOP/s = {mfu['mfu']:.1%} of the "
           f"{mfu['peak_dtype']} matmul peak (CPU MFU, the precision the default trains in).\n",
           *later_sections(R)]
    (out / "benchmarks.md").write_text("# Benchmarks\n\n" + "\n".join(L_))
    print("\n".join(L_))


def later_sections(R: dict) -> list[str]:
    """benchmarks.md after the training table: attention, generation, loss curves, memory."""
    pr = R["bf16_probe"]
    L_ = ["## Attention alone, forward + backward (batch 16, 4 heads x 32)\n",
           "| T | manual ms | sdpa ms | sdpa speed-up | manual peak MiB | sdpa peak MiB |",
           "| ---: | ---: | ---: | ---: | ---: | ---: |"]
    for T, row in R["attention_fwd_bwd"].items():
        mm = [row[b]["peak_mib"] for b in ("manual", "sdpa")]
        mem = " | ".join("n/a" if v is None else f"{v:.0f}" for v in mm)
        L_.append(f"| {T} | {row['manual']['ms']:.1f} | {row['sdpa']['ms']:.1f} | "
                  f"{row['sdpa_speedup']:.2f}x | {mem} |")
    L_ += ["", "## Text per second: the default tokenizer against GPT-2's (Lightning, default "
           "precision, same shape)\n",
           "| tokenizer | ms/step | tokens/s | bytes per token | bytes/s |",
           "| --- | ---: | ---: | ---: | ---: |"]
    for label, row in R.get("text_throughput", {}).items():
        L_.append(f"| {label} | {row['ms_per_step']:.0f} | {row['tokens_per_sec']:.0f} | "
                  f"{row['bytes_per_token']:.2f} | {row['bytes_per_sec']:.0f} |")
    g = R["generation"]
    c = R["loss_curves"]
    L_ += ["", f"## Generation, {g['new_tokens']} new tokens (greedy, context 512)\n",
           "| model | KV cache tokens/s | no cache tokens/s | speed-up |",
           "| --- | ---: | ---: | ---: |"]
    for label, row in g.items():
        if label != "new_tokens":
            L_.append(f"| {label} | {row['kv_cache']:.0f} | {row['no_cache']:.0f} | "
                      f"{row['speedup']:.1f}x |")
    L_ += ["", f"## bf16 vs float32 loss curve ({c['steps']} steps, same init and batches)\n"]
    if "skipped" in c:
        L_.append(f"Skipped: {c['skipped']}.\n")
    else:
        L_.append(f"Mean loss over the last fifth: float32 {c['final_float32']:.4f}, bf16 "
                  f"{c['final_bf16']:.4f}; largest per-step difference {c['max_abs_diff']:.4f}; "
                  f"float32's own step-to-step noise (std) {c['step_to_step_noise']:.4f}.\n")
    L_ += [f"## Memory\n\nPeak resident memory of a default training run: "
           f"{R['train_run_peak_rss_mib']:.0f} MiB.\n",
           "bf16 probe (what precision=auto measures, one thread): "
           f"float32 {pr['float32_gflops']:.0f}, bf16 {pr['bf16_gflops']:.0f} GFLOP/s "
           f"({pr['speedup']:.2f}x).\n"]
    return L_
