"""Where the time goes, measured side by side in one process (medians over repeats after
warm-up); `scripts/bench.py` runs `run()` and writes docs/benchmarks.md and .json.

What is "our default" is what a default run uses on this machine: the shape, vocabulary and
batch of configs/train.yaml, and the precision `trainer.precision=auto` picks here.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from tinygpt.attention import MultiHeadAttention
from tinygpt.config import compose_train
from tinygpt.data import DataConfig, TextDataModule
from tinygpt.diagnostics import attention_stats, qk_grad_norms
from tinygpt.generate import generate
from tinygpt.lightning_module import GPTLightningModule
from tinygpt.model import GPT, GPTConfig
from tinygpt.precision import Bf16Probe, matmul_gflops, probe_cpu_bf16, resolve_precision
from tinygpt.tokenizer import TokenizerName

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Setup:
    """What a benchmark measures: a model shape and vocabulary, a batch, and how long."""

    cfg: GPTConfig
    batch: int
    data: DataConfig
    quick: bool
    bytes_per_token: float  # of the validation text: turns tokens/s into text per second

    @property
    def warm_reps(self) -> tuple[int, int]:
        return (1, 2) if self.quick else (3, 15)

    @property
    def tokens(self) -> int:
        return self.batch * self.cfg.context_length


def default_setup(quick: bool, *overrides: str, keep_tokenizer: bool = False) -> Setup:
    """The default run's model, data and batch (configs/train.yaml, plus overrides); quick: a
    toy of it (on characters unless keep_tokenizer)."""
    c = compose_train(*overrides)
    data = DataConfig(**{k: c.data[k] for k in ("name", "path", "tokenizer", "vocab_size",
                                                 "stride")})
    shape = {k: c.model[k] for k in ("context_length", "emb_dim", "n_heads", "n_layers")}
    batch = c.data.batch_size
    if quick:  # characters and a toy shape: checks that every measurement runs, in seconds
        data = data if keep_tokenizer else replace(data, tokenizer="char")
        shape = dict(context_length=32, emb_dim=32, n_heads=2, n_layers=2)
        batch = 4
    dm = TextDataModule(data, context_length=shape["context_length"])
    dm.load()
    sizes = dm.tokenizer.token_bytes()  # once: it is a list over the whole vocabulary
    val_bytes = sum(sizes[t] for t in dm.val_ids.tolist())
    return Setup(GPTConfig(vocab_size=dm.tokenizer.vocab_size, **shape), batch, data, quick,
                 bytes_per_token=val_bytes / len(dm.val_ids))


def median_ms(fn, warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def batch(st: Setup, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    xy = torch.randint(0, st.cfg.vocab_size, (st.batch, st.cfg.context_length + 1), generator=g)
    return xy[:, :-1], xy[:, 1:]


def model(st: Setup, **kw) -> GPT:
    torch.manual_seed(0)
    return GPT(replace(st.cfg, **kw))


def raw_step(st: Setup, m: GPT, bf16: bool, sliced_ce: bool):
    """One training step of a minimal PyTorch loop, as nanoGPT writes it, with switches."""
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3, weight_decay=0.1, foreach=True)
    x, y = batch(st)

    def step() -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            if sliced_ce:
                loss = m.loss(x, y)
            else:
                loss = F.cross_entropy(m(x).flatten(0, 1).float(), y.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
        opt.step()
        return loss

    return step


class StepTimer(L.Callback):
    def __init__(self) -> None:
        self.ends: list[float] = []

    def on_train_batch_end(self, *args) -> None:
        self.ends.append(time.perf_counter())


def lightning_ms(st: Setup, precision: str) -> float:
    """ms/step of the project's Lightning path: its module, TensorBoard logging, Throughput."""
    from lightning.pytorch.loggers import TensorBoardLogger

    from tinygpt.callbacks import Throughput

    warmup, steps = st.warm_reps
    x, y = batch(st)
    module = GPTLightningModule(st.cfg, tokenizer={"name": "gpt2", "chars": None})
    torch.manual_seed(0)
    timer = StepTimer()
    with tempfile.TemporaryDirectory() as tmp:
        trainer = L.Trainer(
            accelerator="cpu", devices=1, precision=precision, max_steps=steps + warmup,
            gradient_clip_val=1.0, logger=TensorBoardLogger(tmp, name="", version=""),
            callbacks=[timer, Throughput(window=10)], enable_checkpointing=False,
            enable_progress_bar=False, enable_model_summary=False, log_every_n_steps=10,
            limit_val_batches=0,
        )
        # batch_size=None: the loader hands out the same ready-made batch, as the raw loop uses
        loader = torch.utils.data.DataLoader([(x, y)] * (steps + warmup), batch_size=None)
        trainer.fit(module, train_dataloaders=loader)
    gaps = [(b - a) * 1000 for a, b in zip(timer.ends[warmup:], timer.ends[warmup + 1 :],
                                             strict=False)]
    return statistics.median(gaps)


def diagnostics_ms(st: Setup) -> float:
    """One AttentionDiagnostics measurement at the default shape: 4 validation sequences through
    the manual backend in float32, plus the W_q/W_k gradient norms."""
    m = model(st)
    x, y = batch(st)
    m.loss(x, y).backward()
    idx = x[:4]
    return median_ms(lambda: (attention_stats(m, idx), qk_grad_norms(m)), 1, 3)


def matmul_peak(dtype: torch.dtype, budget_s: float) -> dict:
    """GFLOP/s of the largest square matmul (256 to 2048) that takes under 0.1 s in this dtype,
    best of repeats over budget_s: seconds on any CPU, even where bf16 is emulated."""
    rate = matmul_gflops(dtype, 256, 256, 256, budget_s=0.02)
    n = 256
    while n < 2048 and 2 * (2 * n) ** 3 / (rate * 1e9) < 0.1:
        n *= 2
    return {"n": n, "gflops": matmul_gflops(dtype, n, n, n, budget_s=budget_s)}


def flops_per_step(step) -> int:
    with FlopCounterMode(display=False) as fc:
        step()
    return fc.get_total_flops()


ATTN_CHILD = """
import sys, torch
from tinygpt.attention import MultiHeadAttention
backend, T = sys.argv[1], int(sys.argv[2])
m = MultiHeadAttention(128, 128, T, 4, backend=backend)
x = torch.randn(16, T, 128, requires_grad=True)
def rss(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024
before = rss("VmRSS:")
open("/proc/self/clear_refs", "w").write("5")  # reset the high-water mark to now
m(x).sum().backward()
print(rss("VmHWM:") - before)
"""


def attention_peak_bytes(backend: str, T: int) -> int | None:
    """Peak resident memory one fwd+bwd adds, in a fresh process (Linux /proc); else None."""
    if not Path("/proc/self/clear_refs").exists():
        return None
    threads = {"OMP_NUM_THREADS": str(torch.get_num_threads())}
    p = subprocess.run([sys.executable, "-c", ATTN_CHILD, backend, str(T)],
                       capture_output=True, text=True, env=os.environ | threads)
    return int(p.stdout.strip()) if p.returncode == 0 else None


def train_run_peak_rss(steps: int, *overrides: str) -> float:
    """Peak RSS (MiB) of scripts/train.py with its defaults, for `steps` steps."""
    with tempfile.TemporaryDirectory() as tmp:
        p = subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "train.py"), *overrides,
             f"trainer.max_steps={steps}",
             f"trainer.val_check_interval={steps}", "trainer.enable_progress_bar=false",
             f"hydra.run.dir={tmp}/run"], capture_output=True, text=True, cwd=ROOT)
        if p.returncode != 0:
            raise RuntimeError(p.stderr[-2000:])
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def loss_curves(st: Setup, probe: Bf16Probe) -> dict:
    """The same model, data and init trained in float32 and in bf16 autocast."""
    steps = 10 if st.quick else 100
    if not probe.native:
        return {"steps": steps} | skipped_bf16(probe)
    dm = TextDataModule(replace(st.data, batch_size=st.batch), st.cfg.context_length)
    dm.load()
    curves = {}
    for name, bf16 in (("float32", False), ("bf16", True)):
        m = model(st)
        losses = []
        opt = torch.optim.AdamW(m.parameters(), lr=1e-3, foreach=True)
        for i, (x, y) in enumerate(dm.train_dataloader()):
            if i == steps:
                break
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = m.loss(x, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        curves[name] = losses
    a, b = curves["float32"], curves["bf16"]
    tail = max(1, steps // 5)
    noise = statistics.pstdev([a[i] - a[i - 1] for i in range(len(a) - tail, len(a))])
    return {
        "steps": steps,
        "final_float32": statistics.mean(a[-tail:]), "final_bf16": statistics.mean(b[-tail:]),
        "max_abs_diff": max(abs(u - v) for u, v in zip(a, b, strict=True)),
        "step_to_step_noise": noise,
    }


# Dense bf16 peaks (TFLOP/s) from the vendors' data sheets, for the MFU of the GPU section.
GPU_BF16_PEAK = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L4": 121.0, "A10": 125.0}


def gpu_section(device: str, quick: bool) -> dict:
    """GPT-2 124M shape, bf16 autocast, compiled, flash attention: tokens/s and MFU."""
    shape = (dict(context_length=64, emb_dim=64, n_heads=4, n_layers=2) if quick else
             dict(context_length=1024, emb_dim=768, n_heads=12, n_layers=12))
    b = 2 if quick else 16
    torch.manual_seed(0)
    m = GPT(GPTConfig(vocab_size=50257, pad_vocab_multiple=64, qkv_bias=True, **shape)).to(device)
    if device == "cuda":
        torch.set_float32_matmul_precision("high")
        m.hidden = torch.compile(m.hidden)
    opt = torch.optim.AdamW(m.parameters(), lr=6e-4, fused=device == "cuda")
    xy = torch.randint(0, 50257, (b, shape["context_length"] + 1), device=device)
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


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [ln.split(":", 1)[1].strip() for ln in cpuinfo.read_text().splitlines()
                 if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    return (f"{cpu}, {os.cpu_count()} cores, ATen {torch.backends.cpu.get_cpu_capability()}, "
            f"torch {torch.__version__}, {torch.get_num_threads()} threads")


def skipped_bf16(probe: Bf16Probe) -> dict:
    return {"skipped": f"bf16 is emulated on this CPU ({probe.speedup:.3f}x float32's matmul "
                       "rate): a step would take minutes"}


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


def time_variant(st: Setup, bf16: bool, sliced: bool, pad: int, comp: bool) -> dict:
    m = model(st, pad_vocab_multiple=pad)
    out = {}
    if comp:
        m.hidden = torch.compile(m.hidden)
        t = time.perf_counter()
        raw_step(st, m, bf16, sliced)()
        out["cold_compile_s"] = time.perf_counter() - t
    ms = median_ms(raw_step(st, m, bf16, sliced), *st.warm_reps)
    return out | {"ms_per_step": ms, "tokens_per_sec": st.tokens / ms * 1000}


def summary(st: Setup, R: dict) -> dict:
    """Ratios between the training rows, the diagnostics' cost, and MFU against the peak of the
    precision the default path uses."""
    train = R["training"]
    flops = train.pop("flops_per_step")
    raw, light = (train[k] for k in train if train[k].get("default"))
    base = train["raw float32 eager, full CE (nanoGPT-style)"]
    dtype = "bf16" if R["default_precision"]["precision"] == "bf16-mixed" else "float32"
    diag = diagnostics_ms(st)
    every = compose_train().diagnostics_every
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


def attention_table(st: Setup) -> dict:
    attn = {}
    for T in ([64, 128] if st.quick else [64, 128, 256, 512, 1024]):
        row = {}
        for backend in ("manual", "sdpa"):
            m = MultiHeadAttention(128, 128, T, 4, backend=backend)
            x = torch.randn(16, T, 128, requires_grad=True)
            # memory needs a fresh process per point: a quick run measures one T
            b = attention_peak_bytes(backend, T) if not st.quick or T == 128 else None
            row[backend] = {
                "ms": median_ms(lambda m=m, x=x: m(x).sum().backward(), *st.warm_reps),
                "peak_mib": b / 2**20 if b else None,
            }
        row["sdpa_speedup"] = row["manual"]["ms"] / row["sdpa"]["ms"]
        attn[T] = row
    return attn


def generation(st: Setup) -> dict:
    q = st.quick
    new = 32 if q else 256
    prompt = torch.randint(0, st.cfg.vocab_size, (1, 16),
                           generator=torch.Generator().manual_seed(0))
    gen: dict = {"new_tokens": new}
    shapes = {"default shape": {}}
    if not q:  # where the blocks, not the vocabulary head, are most of the work
        shapes["12 layers x 768 (GPT-2 small)"] = dict(emb_dim=768, n_heads=12, n_layers=12)
    for label, kw in shapes.items():
        g = model(st, **(kw | {"context_length": 512})).eval()
        row = {}
        for cache in (True, False):
            run_ = lambda c=cache, g=g: generate(g, prompt, new, temperature=0, use_cache=c)  # noqa: E731
            ms = median_ms(run_, 0 if q else 1, 1 if q else 3)
            row["kv_cache" if cache else "no_cache"] = new / ms * 1000
        row["speedup"] = row["kv_cache"] / row["no_cache"]
        gen[label] = row
    return gen


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

