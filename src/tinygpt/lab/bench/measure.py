"""What `bench_run` measures, each in isolation: the training step of a minimal PyTorch loop and
of the Lightning path, attention alone, generation, bf16 against float32, the diagnostics' cost.
Medians over repeats after warm-up.

"Our default" is what a default run uses on this machine: the shape, vocabulary and batch of
configs/train.yaml, and the precision `trainer.precision=auto` picks here.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from tinygpt.data.config import DataConfig
from tinygpt.data.windows import load_split
from tinygpt.lab.bench.memory import attention_peak_bytes
from tinygpt.lab.bench.timing import StepTimer, fit_on_batches, median_ms
from tinygpt.model.attention import MultiHeadAttention
from tinygpt.model.generate import generate
from tinygpt.model.gpt import GPT, GPTConfig
from tinygpt.probes.attention import attention_stats, qk_grad_norms
from tinygpt.training.config import compose_train
from tinygpt.training.datamodule import TextDataModule
from tinygpt.training.module import GPTLightningModule
from tinygpt.training.precision import Bf16Probe


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
    split = load_split(data, context_length=shape["context_length"])
    return Setup(GPTConfig(vocab_size=split.tokenizer.vocab_size, **shape), batch, data, quick,
                 bytes_per_token=split.val_ids.bytes / len(split.val_ids))


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


def lightning_ms(st: Setup, precision: str) -> float:
    """ms/step of the project's Lightning path: its module, TensorBoard logging, Throughput."""
    warmup, steps = st.warm_reps
    module = GPTLightningModule(st.cfg, tokenizer={"name": "gpt2", "chars": None})
    torch.manual_seed(0)
    timer = StepTimer()
    # the same ready-made batch each step, as the raw loop uses
    fit_on_batches(module, [batch(st)] * (steps + warmup), precision, [timer])
    gaps = [(b - a) * 1000 for a, b in zip(timer.ends[warmup:], timer.ends[warmup + 1 :],
                                             strict=False)]
    return statistics.median(gaps)


def diagnostics_ms(st: Setup) -> float:
    """One AttentionStats measurement at the default shape: 4 validation sequences through
    the manual backend in float32, plus the W_q/W_k gradient norms."""
    m = model(st)
    x, y = batch(st)
    m.loss(x, y).backward()
    idx = x[:4]
    return median_ms(lambda: (attention_stats(m, idx), qk_grad_norms(m)), 1, 3)


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


def skipped_bf16(probe: Bf16Probe) -> dict:
    return {"skipped": f"bf16 is emulated on this CPU ({probe.speedup:.3f}x float32's matmul "
                       "rate): a step would take minutes"}


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
