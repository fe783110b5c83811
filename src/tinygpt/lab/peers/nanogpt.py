"""nanoGPT's README CPU recipe beside ours at the same settings (`tinygpt-bench-peers --nanogpt`):
each a separate process from a clean start, timed whole; nanoGPT runs from its own checkout,
copied to a scratch folder (it writes its data and checkpoints there)."""

from __future__ import annotations

import json
import math
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tinygpt.errors import UsageError
from tinygpt.lab.report.events import train_loss_times
from tinygpt.run_dir import RESULT

# nanoGPT's README CPU recipe, eval_iters=20 (its evaluation budget; ours: limit_val_batches=20)
RECIPE = ("config/train_shakespeare_char.py", "--device=cpu", "--compile=False",
          "--eval_iters=20", "--log_interval=1", "--block_size=64", "--batch_size=12",
          "--n_layer=4", "--n_head=4", "--n_embd=128", "--max_iters={steps}",
          "--lr_decay_iters={steps}", "--dropout=0.0")
DATA = Path("data/shakespeare_char")
# prepare.py downloads input.txt only when it is missing; it is there, so no network is needed,
# but the module still imports requests: a stand-in lets it run where requests is not installed.
PREPARE = ("import runpy, sys, types; sys.modules.setdefault('requests', "
           "types.ModuleType('requests')); runpy.run_path('prepare.py', run_name='__main__')")


def prepared_copy(checkout: Path, text: Path, scratch: Path) -> Path:
    """nanoGPT's files in scratch, its character data prepared from text."""
    if not (checkout / "train.py").exists():
        raise UsageError(f"{checkout} holds no nanoGPT train.py (give its checkout, e.g. "
                         "--nanogpt ../shared/peers/nanoGPT)")
    if not text.is_file():
        raise UsageError(f"{text} is not a file (give tinyshakespeare.txt: --text PATH)")
    copy = scratch / "nanoGPT"
    shutil.copytree(checkout, copy, ignore=shutil.ignore_patterns("out-*", "*.bin"))
    shutil.copyfile(text, copy / DATA / "input.txt")
    subprocess.run([sys.executable, "-c", PREPARE], cwd=copy / DATA, check=True,
                   capture_output=True)
    return copy


def timed(cmd: list[str], cwd: Path, env: dict | None = None) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    return wall, proc.stdout


def nanogpt_run(copy: Path, steps: int) -> dict:
    """nanoGPT's train.py on its recipe: whole-process seconds, median iteration, final val."""
    wall, out = timed([sys.executable, "train.py", *(a.format(steps=steps) for a in RECIPE)],
                      copy)
    iters = [float(ms) for ms in re.findall(r"^iter \d+: loss [\d.]+, time ([\d.]+)ms", out,
                                            flags=re.M)]
    vals = re.findall(r"^step \d+: train loss [\d.]+, val loss ([\d.]+)", out, flags=re.M)
    return {"wall_s": wall, "median_step_ms": statistics.median(iters[1:]),
            "val_loss": float(vals[-1])}


def our_run(text: Path, steps: int | None, overrides: list[str], folder: Path) -> dict:
    """tinygpt-train experiment=nanogpt_char on the same text: the same measurements, and the
    steps it trained (a run with a target stops at the first validation below it)."""
    args = ["experiment=nanogpt_char", "data=text", f"data.path={text}",
            *([f"trainer.max_steps={steps}"] if steps else []), *overrides,
            f"hydra.run.dir={folder}"]
    started = time.time()
    wall, _ = timed([sys.executable, "-m", "tinygpt.cli.train", *args], folder.parent)
    logged = train_loss_times(folder)
    r = json.loads((folder / RESULT).read_text())
    # start-up: to the first logged loss, less the steps before it; wind-down: from the last
    (first_step, first), (_, last) = logged[0], logged[-1]
    startup = first - started - first_step * r["median_step_ms"] / 1000
    return {"wall_s": wall, "median_step_ms": r["median_step_ms"], "val_loss": r["val_loss"],
            "precision": r["precision"], "overrides": overrides, "steps": r["steps"],
            "train_s": r["train_seconds"], "reached": r["reached_target"],
            "to_first_step_s": startup, "after_last_step_s": started + wall - last}


def side_by_side(checkout: Path, text: Path, steps: int, ours: list[list[str]],
                 repeats: int = 1) -> dict:
    """nanoGPT, then each of our override sets, `repeats` times interleaved; the median wall."""
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        copy = prepared_copy(checkout, text.resolve(), scratch)
        runs: dict[str, list[dict]] = {}
        for r in range(repeats):
            runs.setdefault("nanoGPT", []).append(nanogpt_run(copy, steps))
            for i, o in enumerate(ours):
                name = "tinygpt " + (" ".join(o) or "(experiment=nanogpt_char)")
                runs.setdefault(name, []).append(
                    our_run(text.resolve(), steps, o, scratch / f"ours{i}_{r}"))
    rows = {name: {k: statistics.median(x[k] for x in v) if isinstance(v[0][k], float) else
                   v[0][k] for k in v[0]} | {"all_wall_s": [x["wall_s"] for x in v]}
            for name, v in runs.items()}
    base = rows["nanoGPT"]["wall_s"]
    for row in rows.values():
        row["speedup_vs_nanogpt"] = base / row["wall_s"]
    return {"steps": steps, "repeats": repeats, "rows": rows}


def race(checkout: Path, text: Path, ours: list[str], repeats: int = 3) -> dict:
    """To nanoGPT's loss: its recipe to its end (2,000 iterations) for its final val loss, then
    ours with that loss as its target (nats per character / ln 2: bits per byte of this ASCII
    text) on the same text, split and validation budget; interleaved, `repeats` times. Whole
    process seconds to the loss, steps, and the ratio per pair and their median."""
    pairs = []
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        copy = prepared_copy(checkout, text.resolve(), scratch)
        for r in range(repeats):
            theirs = nanogpt_run(copy, 2000)
            target = theirs["val_loss"] / math.log(2)
            mine = our_run(text.resolve(), None, [*ours, f"target_bpb={target:.6f}"],
                           scratch / f"race_{r}")
            pairs.append({"nanoGPT": theirs, "tinygpt": mine,
                          "speedup": theirs["wall_s"] / mine["wall_s"]})
    speedups = [p["speedup"] for p in pairs]
    return {"ours": ours, "repeats": repeats, "pairs": pairs,
            "median_speedup": statistics.median(speedups),
            "min_speedup": min(speedups), "max_speedup": max(speedups),
            "all_reached": all(p["tinygpt"]["reached"] for p in pairs)}


def race_table(result: dict) -> str:
    lines = ["| pair | nanoGPT s (2,000 steps) | its val loss | ours s | our steps | our val loss "
             "| ours: start-up s, wind-down s | x nanoGPT |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for i, p in enumerate(result["pairs"]):
        n, o = p["nanoGPT"], p["tinygpt"]
        lines.append(f"| {i + 1} | {n['wall_s']:.1f} | {n['val_loss']:.4f} | {o['wall_s']:.1f} | "
                     f"{o['steps']} | {o['val_loss']:.4f} | {o['to_first_step_s']:.1f}, "
                     f"{o['after_last_step_s']:.1f} | {p['speedup']:.2f}x |")
    lines.append(f"| median | | | | | | | **{result['median_speedup']:.2f}x** "
                 f"({result['min_speedup']:.2f}-{result['max_speedup']:.2f}) |")
    return "\n".join(lines)


def table(result: dict) -> str:
    lines = ["| program | whole process s | median step ms | val loss | x nanoGPT |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for name, r in result["rows"].items():
        lines.append(f"| {name} | {r['wall_s']:.1f} | {r['median_step_ms']:.1f} | "
                     f"{r['val_loss']:.4f} | {r['speedup_vs_nanogpt']:.2f}x |")
    return "\n".join(lines)
