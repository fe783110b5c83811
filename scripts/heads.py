"""Draw a trained model's induction and sink heads (tinygpt-heads).
Same arguments: see `tinygpt.cli.heads`."""

from tinygpt.cli.heads import main

if __name__ == "__main__":
    main()
