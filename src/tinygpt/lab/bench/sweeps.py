"""A sweep run one job after another (Hydra's basic launcher) and side by side
(hydra/launcher=parallel): the whole sweep's wall time each way, as a user's command takes it, and
each job's final losses, which must not change with the launcher."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tinygpt.lab.bench.timing import machine

LAUNCHERS = {"sequential": [], "parallel": ["hydra/launcher=parallel"]}


def timed_sweep(overrides: list[str], sweep_dir: Path) -> float:
    """Run `tinygpt-train -m overrides` into sweep_dir; its wall time in seconds."""
    start = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "tinygpt.cli.train", "-m", *overrides,
                        f"hydra.sweep.dir={sweep_dir}"], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if p.returncode != 0:
        raise RuntimeError(f"the sweep {' '.join(overrides)} failed:\n{p.stderr[-3000:]}")
    return seconds


def job_results(sweep_dir: Path) -> dict[str, dict[str, float]]:
    """Each job's folder name: its final train loss, val loss and val bpb."""
    out = {}
    for path in sorted(sweep_dir.glob("*/result.json")):
        r = json.loads(path.read_text())
        out[path.parent.name] = {k: r[k] for k in ("train_loss", "val_loss", "val_bpb")}
    return out


def bench_sweep(overrides: list[str]) -> dict:
    """The sweep both ways, one after the other on an otherwise idle machine."""
    seconds, results = {}, {}
    with tempfile.TemporaryDirectory(prefix="tinygpt-bench-sweep-") as tmp:
        for name, extra in LAUNCHERS.items():
            sweep_dir = Path(tmp) / name
            seconds[name] = timed_sweep([*overrides, *extra], sweep_dir)
            results[name] = job_results(sweep_dir)
    seq, par = results["sequential"], results["parallel"]
    if sorted(seq) != sorted(par):
        raise RuntimeError(f"the two sweeps ran different jobs: {sorted(seq)} against "
                           f"{sorted(par)}")
    diff = max(abs(seq[j][k] - par[j][k]) for j in seq for k in seq[j])
    return {"sweep": " ".join(overrides), "machine": machine(), "jobs": len(seq),
            "seconds": seconds, "speedup": seconds["sequential"] / seconds["parallel"],
            "max_loss_difference": diff, "results": results}


def table(entries: list[dict]) -> str:
    """The sweeps measured, as a Markdown table."""
    rows = ["| sweep | machine | jobs | sequential | parallel | speed-up | largest loss "
            "difference |", "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for e in entries:
        s = e["seconds"]
        rows.append(f"| `{e['sweep']}` | {e['machine']} | {e['jobs']} | "
                    f"{s['sequential']:.0f} s | {s['parallel']:.0f} s | {e['speedup']:.2f}x | "
                    f"{e['max_loss_difference']:.1e} |")
    return "\n".join(rows)


def merge(path: Path, entry: dict) -> list[dict]:
    """The file's entries with this one in place of an earlier one of the same sweep and
    machine."""
    entries = json.loads(path.read_text()) if path.exists() else []
    entries = [e for e in entries if (e["sweep"], e["machine"]) != (entry["sweep"],
                                                                    entry["machine"])]
    return [*entries, entry]
