"""Draw a trained model's best induction head, its strongest first-token (sink) head and its
induction circuit, and print what ablating each head of layer 0 does to the copy loss.

    tinygpt-heads CKPT [--text FILE] [--out DIR]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tinygpt.data.corpus import python_docs_text
from tinygpt.errors import UsageError, not_utf8, usage_errors_exit
from tinygpt.lab.demos.heads import draw_circuit, draw_heads
from tinygpt.weights.checkpoint import load_model


def main() -> None:
    p = argparse.ArgumentParser(prog="tinygpt-heads", description=__doc__.split("\n")[0])
    p.add_argument("ckpt", help="a training checkpoint (.ckpt) or a run folder")
    p.add_argument("--text", type=Path, help="text for the sink head (default: the embedded "
                   "corpus's last part, which no run trains on)")
    p.add_argument("--out", type=Path, default=Path("outputs/heads"))

    args = p.parse_args()
    with usage_errors_exit():
        if args.text is not None and not args.text.is_file():
            raise UsageError(f"{args.text} is not a file (pass a UTF-8 text file)")
        text = read_text(args.text) if args.text else python_docs_text()[-4000:]
        model, tokenizer = load_model(args.ckpt)
        drawn = draw_heads(model, tokenizer, text, args.out)
        if model.cfg.n_layers > 1:
            drawn += draw_circuit(model, tokenizer, args.out)
        for path, title in drawn:
            print(f"{path}: " + title.replace("\n", " "))


def read_text(path: Path) -> str:
    """A UTF-8 text file; a UsageError for one that is not."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise not_utf8(path, e) from None


if __name__ == "__main__":
    main()
