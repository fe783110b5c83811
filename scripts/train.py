"""Train a tiny GPT (tinygpt-train).
Same arguments: see `tinygpt.cli.train`."""

from tinygpt.cli.train import main

if __name__ == "__main__":
    main()
