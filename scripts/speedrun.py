"""Time to a target val bpb, records by one-sided Welch test (tinygpt-speedrun).
Same arguments: see `tinygpt.cli.speedrun`."""

from tinygpt.cli.speedrun import main

if __name__ == "__main__":
    main()
