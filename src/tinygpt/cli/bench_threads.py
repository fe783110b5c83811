"""Runs sharing the CPU: alone, two at once, beside a busy process (whole-process wall times).

    tinygpt-bench-threads                          # the default settings
    tinygpt-bench-threads --compare "cpu.wait=active cpu.spin=null" cpu.threads=1
"""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path

from tinygpt.lab.bench.threads import measure, table
from tinygpt.lab.bench.timing import machine


def main() -> None:
    ap = argparse.ArgumentParser(prog="tinygpt-bench-threads",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=100, help="training steps of each run")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--compare", nargs="*", default=[], metavar="KEY=VALUE",
                    help="also measure each of these (one quoted item: several overrides)")
    ap.add_argument("--out", default="docs/results/benchmarks_threads.json")
    args = ap.parse_args()
    results = [measure(o, args.steps, args.repeats)
               for o in ([[]] + [c.split() for c in args.compare])]
    out = {"machine": machine(), "results": results,
           "command": "tinygpt-bench-threads " + " ".join(
               [f"--steps {args.steps}", f"--repeats {args.repeats}"]
               + (["--compare", *(shlex.quote(c) for c in args.compare)] if args.compare
                  else []))}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"{out['command']}\n{out['machine']}\n\n{table(results)}")


if __name__ == "__main__":
    main()
