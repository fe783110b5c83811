"""Time to a target val bpb over several seeds per configuration; records by one-sided Welch test.

    tinygpt-speedrun --seeds 5 --config "default:" --config "muon: optim=muon" \
        --try "muon_wsd: optim=muon optim.schedule=wsd" --try-seeds 3
    tinygpt-speedrun --tables docs/results/speedrun.json --doc docs/speedrun.md   # the tables
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from tinygpt.errors import UsageError, usage_errors_exit
from tinygpt.lab.speedrun import (
    TARGET_BPB,
    Config,
    judge,
    load,
    save,
    sweep,
    tables,
    write_tables,
)


def main() -> None:
    ap = argparse.ArgumentParser(prog="tinygpt-speedrun", description=__doc__.splitlines()[0])
    ap.add_argument("--config", action="append", default=[], metavar="'NAME: OVERRIDES'",
                    help="a configuration (repeat; the first is record 0, each later one is "
                         "tested against the record standing before it)")
    ap.add_argument("--try", dest="tries", action="append", default=[],
                    metavar="'NAME: OVERRIDES'", help="a change measured on --try-seeds seeds, "
                    "after the configurations, against the record they leave")
    ap.add_argument("--seeds", type=int, default=5, help="seeds per configuration (1, 2, ...)")
    ap.add_argument("--try-seeds", type=int, default=3, help="seeds per --try")
    ap.add_argument("--target", type=float, default=TARGET_BPB, help="val bpb to get below")
    ap.add_argument("--out", default="docs/results/speedrun.json",
                    help="every attempt, for --tables")
    ap.add_argument("--doc", help="markdown file whose speedrun-tables block is rewritten")
    ap.add_argument("--tables", metavar="JSON", help="no runs: redraw the tables of a sweep")
    ap.add_argument("--first-record", type=int, default=0, metavar="K", help="the first "
                    "--config is record K (default 0; 1 when it is record 1 measured again)")
    ap.add_argument("--block", default="", help="with --doc: the name in the markers of the "
                    "block to rewrite (a doc with several sweeps' tables)")
    args = ap.parse_args()
    with usage_errors_exit():
        if args.tables:
            configs, attempts, machine, target = load(Path(args.tables))
        else:
            configs = ([Config.parse(c) for c in args.config] or [Config("default", ())]) + [
                Config.parse(t, min(args.try_seeds, args.seeds)) for t in args.tries]
            if len({c.name for c in configs}) < len(configs):
                raise UsageError("two --config share a name (give each its own)")
            if args.seeds < 2:
                raise UsageError(f"--seeds {args.seeds} leaves no spread to test (use >= 2)")
            from tinygpt.lab.bench.timing import machine as describe

            machine, target = describe(), args.target
            with tempfile.TemporaryDirectory() as tmp:
                attempts = sweep(configs, list(range(1, args.seeds + 1)), target, Path(tmp))
            save(Path(args.out), configs, attempts, machine, target)
        text = tables(judge(configs, attempts), machine, target, args.first_record)
        if args.doc:
            write_tables(Path(args.doc), text, args.block)
    print(text)


if __name__ == "__main__":
    main()
