"""Where the time goes (tinygpt-bench).
Same arguments: see `tinygpt.cli.bench`."""

from tinygpt.cli.bench import main

if __name__ == "__main__":
    main()
