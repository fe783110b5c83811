"""The seed's worked example (tinygpt-walkthrough).
Same arguments: see `tinygpt.cli.walkthrough`."""

from tinygpt.cli.walkthrough import main

if __name__ == "__main__":
    main()
