"""Where the time goes, measured side by side in one process (medians over repeats after warm-up).

    tinygpt-bench                      # the full run; writes docs/results/benchmarks.md + .json
    tinygpt-bench --quick --out /tmp/b # a seconds-long smoke run
    tinygpt-bench --gpu                # on a GPU host: GPT-2 124M, bf16, compile
    tinygpt-bench --prepare FILE       # preparing a large corpus: time, memory, both cores
    tinygpt-bench --startup FILE       # a short run's start-up and wind-down (the race's run)
    tinygpt-bench --sweep "experiment=induction_formation"   # a sweep sequential and parallel
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from tinygpt.errors import UsageError, usage_errors_exit
from tinygpt.lab.bench.gpu import gpu_section
from tinygpt.lab.bench.prepare import bench_prepare
from tinygpt.lab.bench.prepare import write as write_prepare
from tinygpt.lab.bench.render import write
from tinygpt.lab.bench.run import run
from tinygpt.lab.bench.startup import bench_startup
from tinygpt.lab.bench.startup import table as startup_table
from tinygpt.lab.bench.sweeps import bench_sweep, merge
from tinygpt.lab.bench.sweeps import table as sweeps_table


def main() -> None:
    ap = argparse.ArgumentParser(prog="tinygpt-bench", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="seconds-long smoke run")
    ap.add_argument("--out", default="docs/results",
                    help="where benchmarks.md/.json go (default: docs/results)")
    ap.add_argument("--gpu", action="store_true",
                    help="only the GPU section: GPT-2 124M shape, bf16, compile, flash attention")
    ap.add_argument("--gpu-device", default="cuda", help=argparse.SUPPRESS)  # cpu: test the code
    ap.add_argument("--prepare", type=Path, metavar="FILE",
                    help="only the preparation of this text file "
                    "(docs/results/benchmarks_prepare.json)")
    ap.add_argument("--baseline-mb", type=int, default=100,
                    help="with --prepare: the one-call encode measured on this many MB")
    ap.add_argument("--tokenizer", default="gpt2", choices=["gpt2", "bpe", "char"],
                    help="with --prepare: the tokenizer it prepares and trains with")
    ap.add_argument("--startup", type=Path, metavar="FILE", help="only a short run's start-up "
                    "and wind-down: the race's run on this text "
                    "(docs/results/benchmarks_startup.json)")
    ap.add_argument("--repeats", type=int, default=4, help="with --startup: runs measured")
    ap.add_argument("--sweep", metavar="OVERRIDES", help="only this sweep (its overrides, quoted "
                    "as one), one job after another and then side by side "
                    "(docs/results/benchmarks_sweeps.json)")
    args = ap.parse_args()
    out = Path(args.out)
    if args.sweep:
        entries = merge(out / "benchmarks_sweeps.json", bench_sweep(args.sweep.split()))
        out.mkdir(parents=True, exist_ok=True)
        (out / "benchmarks_sweeps.json").write_text(json.dumps(entries, indent=2) + "\n")
        print(sweeps_table(entries))
        return
    if args.startup:
        with usage_errors_exit():
            if not args.startup.is_file():
                raise UsageError(f"{args.startup} is not a file (give a text file, e.g. "
                                 "tinyshakespeare.txt)")
        r = bench_startup(args.startup, args.repeats)
        out.mkdir(parents=True, exist_ok=True)
        (out / "benchmarks_startup.json").write_text(json.dumps(r, indent=2) + "\n")
        print(startup_table(r))
        return
    if args.prepare:
        with usage_errors_exit():
            if not args.prepare.is_file():
                raise UsageError(f"{args.prepare} is not a file (give a UTF-8 text file)")
        r = bench_prepare(args.prepare, args.tokenizer, baseline_mb=args.baseline_mb)
        print(json.dumps(r, indent=2))
        print(write_prepare(r, out))
        return
    if not args.gpu:
        write(run(args.quick), out)
        return
    with usage_errors_exit():
        if args.gpu_device == "cuda" and not torch.cuda.is_available():
            raise UsageError("--gpu needs a CUDA device and none is visible (run it on a GPU "
                             "host)")
    r = gpu_section(args.gpu_device, args.quick)
    print(json.dumps(r, indent=2))
    out.mkdir(parents=True, exist_ok=True)
    (out / "benchmarks_gpu.json").write_text(json.dumps(r, indent=2) + "\n")


if __name__ == "__main__":
    main()
