"""Runs sharing the CPU: alone, two at once, beside a busy process (tinygpt-bench-threads).
Same arguments: see `tinygpt.cli.bench_threads`."""

from tinygpt.cli.bench_threads import main

if __name__ == "__main__":
    main()
