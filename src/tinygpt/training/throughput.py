"""Training throughput: tokens per second over all devices (`train/tokens_per_sec`) and model
FLOPs utilisation (`train/mfu`), from Lightning's `Throughput` meter; the training loop's time."""

from __future__ import annotations

import statistics
import time

import lightning as L
import torch
from lightning.fabric.utilities.throughput import Throughput as ThroughputMeter
from lightning.fabric.utilities.throughput import get_available_flops

from tinygpt.metrics import MFU, TOKENS_PER_SEC
from tinygpt.training.precision import matmul_peak


class Throughput(L.Callback):
    """Feeds Lightning's `Throughput` meter each training step (tokens as its items, the
    module's `flops_per_batch` as the FLOPs) and logs its rolling rates with the losses.

    The peak MFU divides by: `peak_tflops` if given, else Lightning's table for GPUs, else (CPUs,
    which the table lacks) a measured dense matmul rate in the training dtype.
    """

    def __init__(self, window: int, peak_tflops: float | None = None):
        self.window, self.peak_tflops = max(2, window), peak_tflops

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        p = str(trainer.precision)
        dtype = (torch.bfloat16 if p.startswith("bf16") else torch.float16 if p.startswith("16")
                 else torch.float32)
        device = trainer.strategy.root_device
        peak = self.peak_tflops * 1e12 if self.peak_tflops else get_available_flops(device,
                                                                                    dtype)
        if peak is None and device.type == "cpu":
            # a 1024-wide matmul, or a smaller one where that is slow (bf16 emulated)
            peak = matmul_peak(dtype, budget_s=0.2, largest=1024)["gflops"] * 1e9
        self.meter = ThroughputMeter(available_flops=peak, world_size=trainer.world_size,
                                     window_size=self.window)
        self.available_flops = peak

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._t0, self._batches, self._samples, self._tokens = time.perf_counter(), 0, 0, 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if trainer.strategy.root_device.type == "cuda":
            torch.cuda.synchronize()  # the clock must see the step's kernels finished
        y = batch[1]
        self._batches += 1
        self._samples += y.shape[0]
        self._tokens += y.numel()
        self.meter.update(time=time.perf_counter() - self._t0, batches=self._batches,
                          samples=self._samples, lengths=self._tokens,
                          flops=getattr(pl_module, "flops_per_batch", None))
        if trainer.global_step % trainer.log_every_n_steps or trainer.logger is None:
            return
        m = self.meter.compute()
        out = {}
        if "device/items_per_sec" in m:
            out[TOKENS_PER_SEC] = m["device/items_per_sec"] * trainer.world_size
        if "device/mfu" in m:
            out[MFU] = m["device/mfu"]
        if out:
            trainer.logger.log_metrics(out, step=trainer.global_step)


class TrainClock(L.Callback):
    """Wall seconds of the training loop alone (validation inside it included): from the first
    step's start to training's end, without the imports, data and setup before it; and the
    median time from one step's end to the next's (nanoGPT's "time" per iteration)."""

    def __init__(self) -> None:
        self.seconds: float | None = None
        self._ends: list[float] = []

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, *args: object) -> None:
        self._ends.append(time.perf_counter())

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.seconds = time.perf_counter() - self._t0

    @property
    def median_step_ms(self) -> float | None:
        gaps = [b - a for a, b in zip(self._ends, self._ends[1:], strict=False)]
        return 1000 * statistics.median(gaps) if gaps else None
