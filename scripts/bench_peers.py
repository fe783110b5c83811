"""Our training path against the book's (tinygpt-bench-peers).
Same arguments: see `tinygpt.cli.bench_peers`."""

from tinygpt.cli.bench_peers import main

if __name__ == "__main__":
    main()
