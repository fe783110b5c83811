"""Write a checkpoint as a Hugging Face GPT-2 directory (tinygpt-export-hf).
Same arguments: see `tinygpt.cli.export_hf`."""

from tinygpt.cli.export_hf import main

if __name__ == "__main__":
    main()
