"""Timing helpers the lab's benchmarks share: a median over repeats, the end of each training
step, and the project's Lightning path fitted on ready-made batches with nothing else around it."""

from __future__ import annotations

import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from torch.utils.flop_counter import FlopCounterMode

from tinygpt.training.throughput import Throughput


def median_ms(fn: Callable[[], object], warmup: int, repeats: int) -> float:
    """The median wall time of fn() in milliseconds, after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def flops_per_step(step: Callable[[], object]) -> int:
    """The FLOPs torch counts in one call of step()."""
    with FlopCounterMode(display=False) as fc:
        step()
    return fc.get_total_flops()


def machine() -> str:
    """The CPU by name, its class, its cores and instruction set, torch and its threads."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    flags: set[str] = set()
    if cpuinfo.exists():
        lines = cpuinfo.read_text().splitlines()
        names = [ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")]
        cpu = names[0] if names else cpu
        flags = next((set(ln.split(":", 1)[1].split()) for ln in lines
                      if ln.startswith("flags")), set())
    aten = torch.backends.cpu.get_cpu_capability()
    return (f"{cpu} ({cpu_class(flags, aten)}), {os.cpu_count()} cores, ATen {aten}, "
            f"torch {torch.__version__}, {torch.get_num_threads()} threads")


def cpu_class(flags: set[str], aten: str) -> str:
    """The CPU class a figure belongs to (docs/benchmarks.md): AMX, AVX-512 BF16 or AVX2, and
    whether AVX2 is the CPU's own or emulated (ATEN_CPU_CAPABILITY=avx2 on a larger one)."""
    native = ("AMX" if "amx_bf16" in flags else "AVX-512 BF16" if "avx512_bf16" in flags
              else "AVX2")
    if aten == "AVX2" and native != "AVX2":
        return f"AVX2, emulated on an {native} CPU"
    return native


class StepTimer(L.Callback):
    """When each training step ended (perf_counter seconds)."""

    def __init__(self) -> None:
        self.ends: list[float] = []

    def on_train_batch_end(self, *args) -> None:
        self.ends.append(time.perf_counter())


def fit_on_batches(module: L.LightningModule, batches: list, precision: str,
                   callbacks: list[L.Callback] | None = None) -> float:
    """Train `module` on the CPU for one step per batch, as a run would log (TensorBoard,
    throughput) but with no checkpoints, validation or progress bar; returns the seconds fit
    took."""
    with tempfile.TemporaryDirectory() as tmp:
        trainer = L.Trainer(
            accelerator="cpu", devices=1, precision=precision, max_steps=len(batches),
            gradient_clip_val=1.0, logger=TensorBoardLogger(tmp, name="", version=""),
            callbacks=[*(callbacks or []), Throughput(window=10)], enable_checkpointing=False,
            enable_progress_bar=False, enable_model_summary=False, log_every_n_steps=10,
            limit_val_batches=0,
        )
        # batch_size=None: the loader hands out the batches as they are
        loader = torch.utils.data.DataLoader(batches, batch_size=None)
        t = time.perf_counter()
        trainer.fit(module, train_dataloaders=loader)
        return time.perf_counter() - t
