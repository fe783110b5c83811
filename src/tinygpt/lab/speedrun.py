"""The CPU speedrun (`tinygpt-speedrun`): wall time until val bpb falls below a target, over
several seeds per configuration, and a record kept only where a one-sided Welch t-test says so.

Configurations run interleaved (seed 1 of each, then seed 2 of each, ...), so a slow spell of the
machine hits them all alike; record 0 is the first configuration, measured in the same sweep.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from tinygpt.errors import UsageError
from tinygpt.lab.report.stats import Summary, format_p, welch_p_less
from tinygpt.run_dir import RESULT

TARGET_BPB = 1.777  # the default run's val bpb at its last step (README: what a run costs)
RECORD_P = 0.01  # a new record needs p below this (modded-nanogpt's rule)
RECORD_SEEDS = 5  # ... and at least this many seeds


@dataclass(frozen=True)
class Config:
    """A named set of overrides; its command is `tinygpt-train <overrides>`. seeds: run only
    the first this many of the sweep's seeds (a change tried on fewer cannot be a record)."""

    name: str
    overrides: tuple[str, ...]
    seeds: int | None = None

    @classmethod
    def parse(cls, text: str, seeds: int | None = None) -> Config:
        """`NAME: override override ...` (nothing after the colon: the default run)."""
        name, sep, rest = text.partition(":")
        if not sep or not name.strip() or " " in name.strip():
            raise UsageError(f"--config {text!r} needs a name and a colon (e.g. --config "
                             "'muon: optim=muon')")
        return cls(name.strip(), tuple(rest.split()), seeds)


@dataclass(frozen=True)
class Attempt:
    """One training run of a configuration with one seed."""

    config: str
    seed: int
    wall_s: float  # the whole process: imports, data, training, the end-of-run summary
    train_s: float  # the training loop alone (result.json's train_seconds)
    steps: int
    tokens: int
    train_bytes: float
    val_bpb: float
    reached: bool
    median_step_ms: float | None = None
    step_peak_share: float | None = None  # the step's FLOP/s over the matmul peak


def attempt(config: Config, seed: int, target: float, folder: Path) -> Attempt:
    """Train config with seed until val bpb < target (or its max_steps), timing the process."""
    args = [*config.overrides, f"seed={seed}", f"target_bpb={target}", f"hydra.run.dir={folder}"]
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "tinygpt.cli.train", *args],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise UsageError(f"{config.name} (seed {seed}) failed: {proc.stderr.strip()[-500:]} "
                         "(fix its overrides)")
    r = json.loads((folder / RESULT).read_text())
    return Attempt(config.name, seed, wall, r["train_seconds"], r["steps"], r["tokens"],
                   r["train_bytes"], r["val_bpb"], bool(r["reached_target"]),
                   r["median_step_ms"], r["step_peak_share"])


def sweep(configs: list[Config], seeds: list[int], target: float, root: Path,
          report=print) -> list[Attempt]:
    """Every configuration with every seed, interleaved; report() hears of each attempt."""
    attempts = []
    for seed in seeds:
        for c in (c for c in configs if c.seeds is None or seed <= c.seeds):
            a = attempt(c, seed, target, root / c.name / f"seed{seed}")
            report(f"{c.name:>16} seed {seed}: {a.wall_s:6.1f} s whole, {a.train_s:6.1f} s "
                   f"training, {a.steps} steps, val {a.val_bpb:.4f}"
                   + ("" if a.reached else "  (target not reached)"))
            attempts.append(a)
    return attempts


@dataclass
class Verdict:
    """A configuration against the record standing when it was tried."""

    config: Config
    wall: Summary
    train: Summary
    steps: Summary
    step_ms: Summary
    share: Summary  # the step's FLOP/s as a share of the peak
    reached: int
    n: int
    against: str | None  # the record it was tested against (None: record 0)
    p: float | None
    record: bool


def judge(configs: list[Config], attempts: list[Attempt]) -> list[Verdict]:
    """Record 0 is the first configuration; each later one, in order, becomes the new record
    only if it ran on at least 5 seeds, every seed reached the target and its whole-process
    time is lower at p < 0.01."""
    verdicts: list[Verdict] = []
    current: Verdict | None = None
    for c in configs:
        mine = [a for a in attempts if a.config == c.name]
        if not mine:
            continue
        v = Verdict(c, Summary(tuple(a.wall_s for a in mine)),
                    Summary(tuple(a.train_s for a in mine)),
                    Summary(tuple(float(a.steps) for a in mine)),
                    Summary(tuple(a.median_step_ms or 0.0 for a in mine)),
                    Summary(tuple(100 * (a.step_peak_share or 0.0) for a in mine)),
                    sum(a.reached for a in mine), len(mine), None, None, current is None)
        if current is not None:
            v.against = current.config.name
            v.p = welch_p_less(v.wall, current.wall)
            v.record = (v.n >= RECORD_SEEDS and v.reached == v.n and v.p is not None
                        and v.p < RECORD_P
                        and v.wall.mean < current.wall.mean)
        if v.record:
            current = v
        verdicts.append(v)
    return verdicts


def command(c: Config) -> str:
    """The configuration as the command a user types, in backticks."""
    return "`" + " ".join(("tinygpt-train", *c.overrides)) + "`"


def tables(verdicts: list[Verdict], machine: str, target: float, first_record: int = 0) -> str:
    """Markdown: the records, then the changes that did not beat the record they met; the first
    configuration is record `first_record` (1: a sweep that starts from record 1)."""
    head = ("| {} | command | time to target, s (whole process) | training loop, s | steps | "
            "median step, ms | step FLOP/s, % of peak | reached | p vs {} |\n"
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    rows = {True: [], False: []}
    for i, v in enumerate(verdicts):
        p = "" if v.p is None else f"{format_p(v.p)} ({v.against})"
        number = first_record + sum(1 for w in verdicts[:i] if w.record)
        name = f"record {number}: {v.config.name}" \
            if v.record else v.config.name
        rows[v.record].append(f"| {name} | {command(v.config)} | {v.wall.format(1)} | "
                              f"{v.train.format(1)} | {v.steps.format(0)} | "
                              f"{v.step_ms.format(1)} | {v.share.format(1)} | {v.reached}/{v.n} | "
                              f"{p} |")
    out = [f"Target: val bpb < {target}. Machine: {machine}.", "", "Records:", "",
           head.format("record", "the record before"), *rows[True]]
    if rows[False]:
        out += ["", "Tried, not a record:", "", head.format("change", "the record"), *rows[False]]
    return "\n".join(out)


def save(path: Path, configs: list[Config], attempts: list[Attempt], machine: str,
         target: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "machine": machine, "target_bpb": target,
        "configs": [{"name": c.name, "overrides": list(c.overrides), "seeds": c.seeds}
                    for c in configs],
        "attempts": [asdict(a) for a in attempts]}, indent=2) + "\n")


def load(path: Path) -> tuple[list[Config], list[Attempt], str, float]:
    book = json.loads(path.read_text())
    return ([Config(c["name"], tuple(c["overrides"]), c.get("seeds")) for c in book["configs"]],
            [Attempt(**a) for a in book["attempts"]], book["machine"], book["target_bpb"])


BEGIN, END = "<!-- speedrun tables: begin -->", "<!-- speedrun tables: end -->"


def markers(block: str = "") -> tuple[str, str]:
    """The comments around a doc's tables: BEGIN and END, or with the block's name in them."""
    if not block:
        return BEGIN, END
    return tuple(m.replace("tables:", f"tables {block}:") for m in (BEGIN, END))


def write_tables(doc: Path, text: str, block: str = "") -> None:
    """Put the tables between the markers of doc (the prose around them stays); `block` names
    one of several sweeps' blocks in the same doc."""
    begin, end = markers(block)
    old = doc.read_text() if doc.exists() else f"{begin}\n{end}\n"
    if begin not in old or end not in old:
        raise UsageError(f"{doc} has no '{begin}' ... '{end}' block (add one where the tables go)")
    before, rest = old.split(begin, 1)
    doc.write_text(f"{before}{begin}\n{text}\n{end}{rest.split(end, 1)[1]}")
