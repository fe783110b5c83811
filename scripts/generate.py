"""Continue a prompt with a checkpoint (tinygpt-generate).
Same arguments: see `tinygpt.cli.generate`."""

from tinygpt.cli.generate import main

if __name__ == "__main__":
    main()
