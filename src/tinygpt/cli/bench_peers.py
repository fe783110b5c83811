"""Our training against peers: the "from scratch" book's package on the same batches, or
nanoGPT's README CPU recipe side by side (--nanogpt).

    pip install -e ".[bench]" && pip install --no-deps llms-from-scratch
    tinygpt-bench-peers --steps 600
    tinygpt-bench-peers --nanogpt ../shared/peers/nanoGPT --text ../shared/data/tinyshakespeare.txt
    tinygpt-bench-peers --nanogpt ... --text ... --race --ours "variant=race" --repeats 3
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tinygpt.errors import UsageError, usage_errors_exit


def main() -> None:
    ap = argparse.ArgumentParser(prog="tinygpt-bench-peers",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, help="training steps for each (book: 600 batches of "
                    "16 x 128; nanoGPT: its recipe's 2,000 iterations)")
    ap.add_argument("--seed", type=int, default=123)
    ap.add_argument("--nanogpt", metavar="CHECKOUT", help="nanoGPT's files: run its CPU recipe "
                    "beside ours (experiment=nanogpt_char) instead of the book")
    ap.add_argument("--text", help="with --nanogpt: tinyshakespeare.txt, for both")
    ap.add_argument("--ours", nargs="*", default=[""], metavar="OVERRIDES",
                    help="with --nanogpt: our runs, each one quoted set of overrides")
    ap.add_argument("--repeats", type=int, default=1, help="with --nanogpt: runs of each")
    ap.add_argument("--race", action="store_true", help="with --nanogpt: ours to nanoGPT's final "
                    "val loss (the first of --ours; whole process time to that loss)")
    ap.add_argument("--out", help="JSON of the results (default "
                    "docs/results/benchmarks_peers.json, or docs/results/benchmarks_nanogpt.json "
                    "with --nanogpt)")
    args = ap.parse_args()
    with usage_errors_exit():
        if args.nanogpt:
            from tinygpt.lab.bench.timing import machine
            from tinygpt.lab.peers.nanogpt import race, race_table, side_by_side, table

            if not args.text:
                raise UsageError("--nanogpt needs --text (tinyshakespeare.txt, for both)")
            if args.race:
                result = race(Path(args.nanogpt), Path(args.text), args.ours[0].split(),
                              max(args.repeats, 1))
                result["machine"] = machine()
                out, text = args.out or "docs/results/race.json", race_table(result)
            else:
                result = side_by_side(Path(args.nanogpt), Path(args.text), args.steps or 2000,
                                      [o.split() for o in args.ours], args.repeats)
                result["machine"] = machine()
                out, text = args.out or "docs/results/benchmarks_nanogpt.json", table(result)
        else:
            from tinygpt.lab.peers.book import compare

            result = compare(args.steps or 600, args.seed)
            out = args.out or "docs/results/benchmarks_peers.json"
            text = json.dumps(result, indent=2)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(result, indent=2) + "\n")
    print(text)


if __name__ == "__main__":
    main()
