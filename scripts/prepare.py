"""Prepare a corpus's token shards ahead of training (tinygpt-prepare).
Same arguments: see `tinygpt.cli.prepare`."""

from tinygpt.cli.prepare import main

if __name__ == "__main__":
    main()
