"""Summarise a sweep from its TensorBoard events: a table and plots, one line per run.

    tinygpt-report outputs/attention_ablation/2026-11-26/10-00-00 [--out DIR]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tinygpt.errors import UsageError, usage_errors_exit


def main() -> None:
    p = argparse.ArgumentParser(prog="tinygpt-report", description=__doc__.split("\n")[0])
    p.add_argument("sweep", type=Path, help="a sweep folder (or one run's folder)")
    p.add_argument("--out", type=Path, help="where to write report.md and the PNGs "
                   "(default: the sweep folder)")
    p.add_argument("--compare", action="append", metavar="KEY[=VALUE]", default=[],
                   help="test each setting against the one with KEY at VALUE (default: its "
                   "default) and every other key as it is (repeatable; none: every key at its "
                   "default)")
    args = p.parse_args()
    with usage_errors_exit():
        if not args.sweep.is_dir():
            raise UsageError(f"{args.sweep} is not a folder (pass the sweep folder a multirun "
                             "printed)")
        if args.out is not None and args.out.exists() and not args.out.is_dir():
            raise UsageError(f"--out {args.out} is a file (give a folder for report.md and its "
                             "plots)")
        from tinygpt.lab.report.page import write_report  # torch and Lightning: after the check

        compare = dict((c.split("=", 1) + [None])[:2] for c in args.compare)
        path = write_report(args.sweep, args.out or args.sweep, compare)
    print(path.read_text().split("\n![")[0])
    print(f"\nwrote {path} and its plots")


if __name__ == "__main__":
    main()
