"""The fixed costs a short run pays, on the race's run (nanoGPT's model, `variant=race`): process
start to the end of step 1, and the last step to the process's exit, with a warm token cache
(`tinygpt-bench --startup FILE`, docs/speedrun.md "The race")."""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path

from tinygpt.lab.bench.timing import machine
from tinygpt.lab.peers.nanogpt import our_run

KEYS = ("to_first_step_s", "after_last_step_s", "wall_s")


def bench_startup(text: Path, repeats: int = 4, steps: int = 60) -> dict:
    """`repeats` whole processes of the race's run on `text`, after one that warms the cache."""
    text = text.resolve()  # the runs start in a folder of their own
    with tempfile.TemporaryDirectory() as tmp:
        our_run(text, steps, ["variant=race"], Path(tmp) / "warm-up")
        runs = [our_run(text, steps, ["variant=race"], Path(tmp) / f"run-{i}")
                for i in range(repeats)]
    return {"command": f"python scripts/bench.py --startup {text} --repeats {repeats}",
            "steps": steps, "precision": runs[0]["precision"], "machine": machine(),
            "runs": [{k: r[k] for k in KEYS} for r in runs],
            "median": {k: statistics.median(r[k] for r in runs) for k in KEYS}}


def table(result: dict) -> str:
    """Each run's start-up and wind-down, in seconds, as a Markdown table."""
    lines = ["| run | to the end of step 1 | after the last step | whole process |",
             "| --- | ---: | ---: | ---: |"]
    rows = [(str(i + 1), r) for i, r in enumerate(result["runs"])]
    for name, r in [*rows, ("median", result["median"])]:
        lines.append(f"| {name} | {r['to_first_step_s']:.2f} | {r['after_last_step_s']:.2f} | "
                     f"{r['wall_s']:.1f} |")
    return "\n".join(lines)
