"""A sweep's report: tables and plots (tinygpt-report).
Same arguments: see `tinygpt.cli.report`."""

from tinygpt.cli.report import main

if __name__ == "__main__":
    main()
