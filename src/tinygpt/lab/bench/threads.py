"""Runs that share the CPU (`tinygpt-bench-threads`): one short training run alone, two equal
runs started together, and one beside a busy single-threaded process; each whole process timed,
and the ratio to alone. What `threads` and `thread_wait` are chosen by."""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# A short default run: the default model, data and precision; little besides the steps.
SHORT = ("trainer.val_check_interval={steps}", "trainer.limit_val_batches=2", "probes.every=0",
         "probes.grad_norm_every=0", "sample.max_new_tokens=8", "trainer.enable_progress_bar=false",
         "trainer.enable_model_summary=false", "save_every_n_steps=0")


def start_run(overrides: list[str], steps: int, folder: Path) -> subprocess.Popen:
    args = [f"trainer.max_steps={steps}", *(o.format(steps=steps) for o in SHORT), *overrides,
            f"hydra.run.dir={folder}"]
    return subprocess.Popen([sys.executable, "-m", "tinygpt.cli.train", *args], cwd=folder.parent,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait(proc: subprocess.Popen, started: float) -> float:
    _, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(err[-2000:])
    return time.perf_counter() - started


def runs_at_once(n: int, overrides: list[str], steps: int, beside_busy: bool = False
                 ) -> list[float]:
    """Wall seconds of n equal runs started together (beside a busy process if asked)."""
    with tempfile.TemporaryDirectory() as tmp:
        busy = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if beside_busy \
            else None
        try:
            t = time.perf_counter()
            procs = [start_run(overrides, steps, Path(tmp) / f"run{i}") for i in range(n)]
            return [wait(p, t) for p in procs]
        finally:
            if busy is not None:
                busy.kill()
                busy.wait()


def measure(overrides: list[str], steps: int, repeats: int) -> dict:
    """Median wall seconds alone, two at once, beside a busy process; and the ratios."""
    alone, pair, beside = [], [], []
    for _ in range(repeats):  # interleaved, so a slow spell of the machine hits all three
        alone += runs_at_once(1, overrides, steps)
        pair += runs_at_once(2, overrides, steps)
        beside += runs_at_once(1, overrides, steps, beside_busy=True)
    med = {k: statistics.median(v) for k, v in
           (("alone", alone), ("two_at_once", pair), ("beside_busy", beside))}
    return {"overrides": overrides, "steps": steps, "repeats": repeats, "seconds": med,
            "all_seconds": {"alone": alone, "two_at_once": pair, "beside_busy": beside},
            "ratio_two_at_once": med["two_at_once"] / med["alone"],
            "ratio_beside_busy": med["beside_busy"] / med["alone"]}


def table(results: list[dict]) -> str:
    lines = ["| settings | alone s | two at once s (x alone) | beside a busy process s (x alone) |",
             "| --- | ---: | ---: | ---: |"]
    for r in results:
        s = r["seconds"]
        lines.append(f"| {' '.join(r['overrides']) or 'the default'} | {s['alone']:.1f} | "
                     f"{s['two_at_once']:.1f} ({r['ratio_two_at_once']:.2f}x) | "
                     f"{s['beside_busy']:.1f} ({r['ratio_beside_busy']:.2f}x) |")
    return "\n".join(lines)
