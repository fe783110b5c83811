"""Peak memory, each measured in a fresh process (Linux /proc): what one attention forward +
backward adds, and a whole default training run. `python -m tinygpt.lab.bench.memory BACKEND T`
is the child that measures attention."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

CLEAR_REFS = Path("/proc/self/clear_refs")


def _rss(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


def attention_fwd_bwd_bytes(backend: str, T: int) -> int:
    """In this process: resident memory one fwd+bwd of the default attention adds at length T."""
    from tinygpt.model.attention import MultiHeadAttention

    m = MultiHeadAttention(128, 128, T, 4, backend=backend)
    x = torch.randn(16, T, 128, requires_grad=True)
    before = _rss("VmRSS:")
    CLEAR_REFS.write_text("5")  # reset the high-water mark to now
    m(x).sum().backward()
    return _rss("VmHWM:") - before


def attention_peak_bytes(backend: str, T: int) -> int | None:
    """attention_fwd_bwd_bytes in a fresh process (a used heap hides a peak); None off Linux."""
    if not CLEAR_REFS.exists():
        return None
    threads = {"OMP_NUM_THREADS": str(torch.get_num_threads())}
    p = subprocess.run([sys.executable, "-m", __name__, backend, str(T)],
                       capture_output=True, text=True, env=os.environ | threads)
    return int(p.stdout.strip()) if p.returncode == 0 else None


def train_run_peak_rss(steps: int, *overrides: str) -> float:
    """Peak RSS (MiB) of a training run (`tinygpt-train` with overrides) for `steps` steps."""
    with tempfile.TemporaryDirectory() as tmp:
        p = subprocess.run(
            [sys.executable, "-m", "tinygpt.cli.train", *overrides,
             f"trainer.max_steps={steps}", f"trainer.val_check_interval={steps}",
             "trainer.enable_progress_bar=false", f"hydra.run.dir={tmp}/run"],
            capture_output=True, text=True, cwd=tmp)
        if p.returncode != 0:
            raise RuntimeError(p.stderr[-2000:])
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


if __name__ == "__main__":
    print(attention_fwd_bwd_bytes(sys.argv[1], int(sys.argv[2])))
