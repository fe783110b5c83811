"""What `trainer.precision=auto` trains in: bf16 only where this machine measures it fast.

A CPU flag is not enough: AVX-512 BF16 without AMX multiplies bf16 at about half the float32
rate, and a CPU without either (AVX2 only) emulates bf16 hundreds of times slower. So the CPU
path times one small matmul in each dtype, once per process.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import lru_cache

import torch

# bf16 is chosen where its matmuls beat float32's by at least this factor: mixed precision adds
# casts around every op, so a marginal matmul gain is a net loss.
FAST_BF16_SPEEDUP = 1.5
# Below this fraction of float32's rate the CPU has no bf16 instructions and emulates them
# (measured: about 0.005x on AVX2-only CPUs, 0.5x with AVX-512 BF16 alone, 4-6x with AMX).
NATIVE_BF16_RATIO = 0.1
# The probe's shape: one of the default model's linear layers on 512 tokens (67 MFLOP).
PROBE_SHAPE = (512, 128, 512)


def matmul_gflops(dtype: torch.dtype, m: int, k: int, n: int, budget_s: float = 0.05,
                  min_repeats: int = 2) -> float:
    """Best-of-repeats GFLOP/s of an (m, k) @ (k, n) matmul; repeats until budget_s is spent."""
    g = torch.Generator().manual_seed(0)  # not the global one: a run's draws stay its own
    a, b = torch.randn(m, k, generator=g).to(dtype), torch.randn(k, n, generator=g).to(dtype)
    a @ b  # the first call pays for kernel selection and allocation
    best, repeats, end = float("inf"), 0, time.perf_counter() + budget_s
    while repeats < min_repeats or time.perf_counter() < end:
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
        repeats += 1
    return 2 * m * k * n / best / 1e9


def matmul_peak(dtype: torch.dtype, budget_s: float, largest: int = 2048) -> dict:
    """GFLOP/s of the largest square matmul (256 to `largest`) that takes under 0.1 s in this
    dtype, best of repeats over budget_s: seconds on any CPU, even where bf16 is emulated (a
    1024-wide bf16 matmul took 15 s there)."""
    rate = matmul_gflops(dtype, 256, 256, 256, budget_s=0.02)
    n = 256
    while n < largest and 2 * (2 * n) ** 3 / (rate * 1e9) < 0.1:
        n *= 2
    return {"n": n, "gflops": matmul_gflops(dtype, n, n, n, budget_s=budget_s)}


@dataclass(frozen=True)
class Bf16Probe:
    """Measured single-thread matmul rates on this CPU, in GFLOP/s."""

    float32_gflops: float
    bf16_gflops: float

    @property
    def speedup(self) -> float:
        return self.bf16_gflops / self.float32_gflops

    @property
    def fast(self) -> bool:
        """bf16 is clearly faster than float32: worth training in."""
        return self.speedup >= FAST_BF16_SPEEDUP

    @property
    def native(self) -> bool:
        """bf16 runs on hardware instructions (not emulated), fast or not."""
        return self.speedup >= NATIVE_BF16_RATIO


@lru_cache(maxsize=1)
def probe_cpu_bf16() -> Bf16Probe:
    """Time PROBE_SHAPE in float32 and bf16 on this CPU (well under a second, once per process)."""
    # On one thread: a multithreaded float32 matmul slows down 30x when another process holds
    # the cores (its threads wait for each other), which would skew the ratio; one thread sees
    # the instruction set, not the load.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return Bf16Probe(matmul_gflops(torch.float32, *PROBE_SHAPE),
                         matmul_gflops(torch.bfloat16, *PROBE_SHAPE))
    finally:
        torch.set_num_threads(threads)


@dataclass(frozen=True)
class PrecisionChoice:
    """A Lightning precision string and why it was picked (for the run's summary)."""

    precision: str
    reason: str


def cpu_precision(probe: Bf16Probe) -> PrecisionChoice:
    """bf16-mixed where the probe measured bf16 clearly faster, else 32-true."""
    rates = (f"bf16 matmuls {probe.speedup:.2f}x float32 on this CPU "
             f"({probe.bf16_gflops:.0f} vs {probe.float32_gflops:.0f} GFLOP/s on one thread)")
    if probe.fast:
        return PrecisionChoice("bf16-mixed", f"auto: {rates}")
    need = f"bf16 needs {FAST_BF16_SPEEDUP}x"
    return PrecisionChoice("32-true", f"auto: {rates}; {need}")


def resolve_precision(precision: str, accelerator: str = "auto") -> PrecisionChoice:
    """The precision to train in: `precision` itself unless it is "auto"."""
    if precision != "auto":
        return PrecisionChoice(precision, "set by trainer.precision")
    if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        if torch.cuda.is_bf16_supported():
            return PrecisionChoice("bf16-mixed", "auto: the GPU runs bf16 natively")
        return PrecisionChoice("16-mixed", "auto: the GPU has no bf16, float16 with loss scaling")
    if accelerator in ("auto", "mps") and torch.backends.mps.is_available():
        return PrecisionChoice("32-true", "auto: float32 on Apple's MPS")
    return cpu_precision(probe_cpu_bf16())
