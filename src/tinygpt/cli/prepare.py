"""Prepare a corpus ahead of training (a large one, or once for a cluster's ranks): its text read
in bounded memory and encoded on every core into token shards in the cache, where every later
run with the same data settings reads them.

    tinygpt-prepare data=text data.path=corpus/ [data.tokenizer=bpe data.vocab_size=4096 ...]
    tinygpt-prepare data=tinystories
"""

from __future__ import annotations

import sys

from omegaconf import OmegaConf

from tinygpt.errors import UsageError, usage_errors_exit
from tinygpt.training.precheck import compose, parse, task
from tinygpt.training.settings import check_windows


def main() -> None:
    args = sys.argv[1:]
    with usage_errors_exit():
        if any(a.startswith("-") for a in args):
            raise UsageError(f"unknown option {next(a for a in args if a.startswith('-'))} "
                             "(give data.* settings as key=value, e.g. data=text data.path=...)")
        cfg = OmegaConf.to_object(task(compose(args, parse(args))))
        cfg.data.validate()
        check_windows(cfg.data, cfg.model.context_length)
        from tinygpt.data.prepare import prepare  # numpy and the tokenizers: once the input is good

        prepared = prepare(cfg.data)
        print(f"ready: {len(prepared.train):,} train and {len(prepared.val):,} val tokens in "
              f"{prepared.folder} (runs with the same data.* settings read them)")


if __name__ == "__main__":
    main()
