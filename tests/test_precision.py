import os
import subprocess
import sys

import pytest
import torch

from tinygpt.training.precision import Bf16Probe, cpu_precision, matmul_gflops, resolve_precision

# What an AVX2-only CPU looks like to torch: no AVX-512 kernels, oneDNN and MKL without bf16.
AVX2_ONLY = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2",
             "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
RESOLVE = ("from tinygpt.training.precision import probe_cpu_bf16, resolve_precision; "
           "c = resolve_precision('auto', 'cpu'); p = probe_cpu_bf16(); "
           "print(c.precision, p.speedup, p.native); print(c.reason)")


def test_auto_picks_float32_where_the_cpu_emulates_bf16():
    # A process boundary on purpose: the ISA limits are read when torch starts, and they make
    # bf16 slow for real, so the probe itself has to notice it.
    p = subprocess.run([sys.executable, "-c", RESOLVE], capture_output=True, text=True,
                       env=os.environ | AVX2_ONLY, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    first, reason = p.stdout.strip().splitlines()
    precision, speedup, native = first.split()
    assert precision == "32-true"
    assert float(speedup) < 0.1 and native == "False"  # emulated: far below float32's rate
    assert reason.startswith("auto: bf16 matmuls") and "needs 1.5x" in reason


@pytest.mark.parametrize(
    "f32,bf16,precision,native",
    [(100.0, 600.0, "bf16-mixed", True),  # AMX: several times faster
     (300.0, 150.0, "32-true", True),  # AVX-512 BF16 without AMX: native but slower
     (100.0, 120.0, "32-true", True),  # marginal: casts would eat the gain
     (80.0, 0.5, "32-true", False)],  # AVX2 only: emulated
)
def test_cpu_precision_follows_the_measured_rates(f32, bf16, precision, native):
    probe = Bf16Probe(float32_gflops=f32, bf16_gflops=bf16)
    choice = cpu_precision(probe)
    assert choice.precision == precision and probe.native is native
    assert f"{bf16 / f32:.2f}x" in choice.reason  # the summary line says what was measured


def test_an_explicit_precision_is_never_second_guessed():
    for p in ("bf16-mixed", "32-true", "16-mixed"):
        assert resolve_precision(p, "cpu").precision == p


def test_matmul_rate_is_positive_and_finite():
    rate = matmul_gflops(__import__("torch").float32, 64, 64, 64, budget_s=0.01)
    assert 0 < rate < 1e6


def test_the_matmul_peak_shrinks_where_a_dtype_is_emulated(monkeypatch):
    # train/mfu's peak on a CPU: a 1024-wide matmul took 15 s where bf16 is emulated
    from tinygpt.training import precision

    rates = {torch.bfloat16: 0.4, torch.float32: 80.0}  # GFLOP/s on an AVX2-only CPU
    monkeypatch.setattr(precision, "matmul_gflops", lambda dtype, *shape, **kw: rates[dtype])
    assert precision.matmul_peak(torch.bfloat16, 0.2, largest=1024)["n"] == 256
    assert precision.matmul_peak(torch.float32, 0.2, largest=1024)["n"] == 1024
