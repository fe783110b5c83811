"""Our default training path against the "from scratch" book's package on the same batches.

    pip install -e ".[bench]" && pip install --no-deps llms-from-scratch
    tinygpt-bench-peers --steps 600
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tinygpt.errors import usage_errors_exit
from tinygpt.lab.peer_book import compare


def main() -> None:
    ap = argparse.ArgumentParser(prog="tinygpt-bench-peers",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=600, help="training batches for each (16 x 128)")
    ap.add_argument("--seed", type=int, default=123)
    ap.add_argument("--out", default="docs/benchmarks_peers.json")
    args = ap.parse_args()
    with usage_errors_exit():
        result = compare(args.steps, args.seed)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
