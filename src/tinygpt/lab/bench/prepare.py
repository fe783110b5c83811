"""Preparing a large corpus, measured (`tinygpt-bench --prepare FILE`): each step in a process of
its own, its wall time, CPU time (both cores busy: about twice the wall time) and peak resident
memory, with a cache folder of its own so the first preparation really prepares.

- before: the way a corpus was tokenised until shards, one `encode` call on the whole text read
  at once, on the file's first `--baseline-mb` megabytes (the whole file would not fit);
- prepare: `tinygpt.data.prepare` on the whole file, from an empty cache;
- again: the same, the shards already there (what a second run pays before it trains);
- a run: a whole `tinygpt-train` run of five steps on the prepared corpus, its start-up (to
  the end of its first step) and its peak anonymous memory (the heap, not the shards the kernel
  maps from their files and may drop), beside the same run on the embedded corpus: a run's
  memory must not grow with the text it reads.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tinygpt.lab.report.events import train_loss_times

ENCODE_ONCE = """
import sys, time
from tinygpt.data.tokenizer import get_tokenizer
text = open(sys.argv[1], "rb").read(int(sys.argv[2])).decode("utf-8", "ignore")
tok = get_tokenizer(sys.argv[3], text=text, vocab_size=4096)
start = time.perf_counter()
ids = tok.encode(text)
print(len(text.encode()) / (time.perf_counter() - start) / 1e6)
"""
PREPARE = """
import sys
from tinygpt.data.config import DataConfig
from tinygpt.data.prepare import prepare
prepare(DataConfig(name="text", path=sys.argv[1], tokenizer=sys.argv[2], cache_dir=sys.argv[3]))
"""


def measured(args: list[str]) -> dict:
    """Run a process under GNU time: its wall and CPU seconds (its workers' included), the peak
    resident memory of its largest process (MB), and of it and its workers together, all of it
    and its anonymous part alone, sampled every 50 ms."""
    proc = subprocess.Popen(["/usr/bin/time", "-f", "%e %U %S %M", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    tree_peak = anon_peak = 0
    while proc.poll() is None:
        now = tree_memory_kb(proc.pid)
        tree_peak, anon_peak = max(tree_peak, now["VmRSS"]), max(anon_peak, now["RssAnon"])
        time.sleep(0.05)
    stdout, stderr = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"{args[:3]} failed: {stderr[-2000:]}")
    wall, user, system, kb = (float(x) for x in stderr.strip().splitlines()[-1].split())
    return {"wall_s": wall, "cpu_s": user + system, "cores_busy": (user + system) / wall,
            "peak_rss_mb": kb / 1024, "tree_peak_rss_mb": tree_peak / 1024,
            "tree_peak_anon_mb": anon_peak / 1024, "stdout": stdout.strip().splitlines()[-3:]}


def tree_memory_kb(root: int) -> dict[str, int]:
    """The resident memory (VmRSS) and its anonymous part (RssAnon) of a process and all its
    descendants now (kB, from /proc)."""
    parents, memory = {}, {}
    for proc in Path("/proc").iterdir():
        try:
            parents[int(proc.name)] = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            fields = dict(line.split(":", 1) for line in (proc / "status").read_text()
                          .splitlines() if ":" in line)
            memory[int(proc.name)] = {k: int(fields.get(k, "0 kB").split()[0])
                                      for k in ("VmRSS", "RssAnon")}
        except (ValueError, OSError):  # not a process, or gone meanwhile
            continue
    tree, grew = {root}, True
    while grew:
        more = {pid for pid, parent in parents.items() if parent in tree} - tree
        tree, grew = tree | more, bool(more)
    return {k: sum(memory.get(pid, {}).get(k, 0) for pid in tree) for k in ("VmRSS", "RssAnon")}


RUN = ["trainer.max_steps=5", "probes.every=0", "trainer.val_check_interval=5",
       "trainer.limit_val_batches=1", "trainer.log_every_n_steps=1", "sample.max_new_tokens=0"]


def train_run(cache: str, name: str, *data: str) -> dict:
    """A whole five-step `tinygpt-train` run, measured, and its time to its first step."""
    started = time.time()
    run = measured([sys.executable, str(Path(__file__).parents[3] / "scripts" / "train.py"),
                    *data, f"data.cache_dir={cache}", *RUN, f"hydra.run.dir={cache}/{name}"])
    run["to_first_step_s"] = train_loss_times(f"{cache}/{name}")[0][1] - started
    return run


def bench_prepare(path: Path, tokenizer: str = "gpt2", baseline_mb: int = 100) -> dict:
    """The measurements above, and the ratios the issue's bars read."""
    size_mb = path.stat().st_size / 1e6
    with tempfile.TemporaryDirectory() as cache:
        before = measured([sys.executable, "-c", ENCODE_ONCE, str(path),
                           str(baseline_mb * 10**6), tokenizer])
        before["mb_per_s"] = float(before["stdout"][-1])
        first = measured([sys.executable, "-c", PREPARE, str(path), tokenizer, cache])
        first["mb_per_s"] = size_mb / first["wall_s"]
        again = measured([sys.executable, "-c", PREPARE, str(path), tokenizer, cache])
        on_text = train_run(cache, "text", "data=text", f"data.path={path}",
                            f"data.tokenizer={tokenizer}")
        embedded = train_run(cache, "embedded", f"data.tokenizer={tokenizer}")
    return {"file": path.name, "file_mb": size_mb, "tokenizer": tokenizer, "before": before,
            "prepare": first, "again": again, "train_run": on_text,
            "train_run_embedded_corpus": embedded,
            "speedup_vs_one_call": first["mb_per_s"] / before["mb_per_s"]}


def write(result: dict, out: Path) -> Path:
    """Into out/benchmarks_prepare.json beside the other files measured there."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "benchmarks_prepare.json"
    runs = json.loads(path.read_text()) if path.exists() else {}
    runs[f"{result['file']} ({result['tokenizer']})"] = result
    path.write_text(json.dumps(runs, indent=2) + "\n")
    return path
