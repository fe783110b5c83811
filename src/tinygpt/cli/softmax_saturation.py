"""Why attention divides by sqrt(d_k), in isolation: random unit-variance queries and keys.

    tinygpt-softmax-saturation [--keys 64] [--rows 2000] [--out DIR]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tinygpt.lab.demos.softmax_saturation import (
    DIMS,
    plot,
    renorm_breaking_gap,
    softmax_stats,
    table,
)


def main() -> None:
    p = argparse.ArgumentParser(prog="tinygpt-softmax-saturation",
                                description=__doc__.split("\n")[0])
    p.add_argument("--keys", type=int, default=64, help="keys per query (a row's length)")
    p.add_argument("--rows", type=int, default=2000, help="random queries per setting")
    p.add_argument("--dims", type=int, nargs="+", default=DIMS)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("outputs/softmax_saturation"))
    args = p.parse_args()
    results = {(d, scaled): softmax_stats(d, args.keys, args.rows, scaled, args.seed)
               for d in args.dims for scaled in (False, True)}
    print(table(results, args.keys))
    print(f"The renormalised mask turns a row into 0/0 = NaN once a future score leads the visible "
          f"ones by {renorm_breaking_gap():.1f} (float32); the -inf mask never reads them.")
    args.out.mkdir(parents=True, exist_ok=True)
    plot(results, args.out / "softmax_saturation.png")
    print(f"\nwrote {args.out / 'softmax_saturation.png'}")


if __name__ == "__main__":
    main()
