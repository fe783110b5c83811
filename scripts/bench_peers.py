"""Our default training path against the "from scratch" book's package on the same batches.

    pip install -e ".[bench]" && pip install --no-deps llms-from-scratch
    python scripts/bench_peers.py --steps 600

Both train the book's GPTModel shape (4 layers x 128, GPT-2 vocabulary, context 128, dropout
0.1) on the same batches of the embedded corpus, in the same order, for the same number of
tokens; then both are scored on the same held-out windows. The peer runs its own
`train_model_simple` loop with the book's chapter-5 optimizer (AdamW, lr 4e-4, wd 0.1), in
float32; ours runs in whatever `trainer.precision=auto` picks on this machine.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
import time
from dataclasses import asdict
from itertools import islice
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger

from tinygpt.callbacks import TokensPerSecond
from tinygpt.data import TextDataModule
from tinygpt.lit import LitGPT
from tinygpt.model import GPTConfig
from tinygpt.precision import resolve_precision
from tinygpt.tokenizer import tokenizer_state

ROOT = Path(__file__).resolve().parents[1]
SHAPE = dict(context_length=128, emb_dim=128, n_heads=4, n_layers=4, drop_rate=0.1)


def peer(batches: list, val: list, seed: int) -> dict:
    try:
        from llms_from_scratch.ch04 import GPTModel
        from llms_from_scratch.ch05 import calc_loss_loader, train_model_simple
    except ImportError as e:
        sys.exit(f"error: the peer is not installed: {e} (pip install -e '.[bench]' && "
                 "pip install --no-deps llms-from-scratch)")
    torch.manual_seed(seed)
    model = GPTModel({"vocab_size": 50257, "qkv_bias": False, **SHAPE})
    opt = torch.optim.AdamW(model.parameters(), lr=4e-4, weight_decay=0.1)
    t = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # its loop prints evaluations and a sample
        train_model_simple(model, batches, val[:1], opt, "cpu", num_epochs=1,
                           eval_freq=10**9, eval_iter=1, start_context="The", tokenizer=_Tok())
    seconds = time.perf_counter() - t
    model.eval()
    with torch.no_grad():
        val_loss = calc_loss_loader(val, model, "cpu")
    return {"seconds": seconds, "val_loss": float(val_loss)}


class _Tok:
    """What the peer's end-of-epoch sample needs from a tokenizer (GPT-2's, offline)."""

    def __init__(self) -> None:
        from tinygpt.tokenizer import get_tokenizer

        self._t = get_tokenizer("gpt2")

    def encode(self, text: str, allowed_special=None) -> list[int]:
        return self._t.encode(text)

    def decode(self, ids: list[int]) -> str:
        return self._t.decode(ids)


def ours(batches: list, val: list, seed: int, dm: TextDataModule, precision: str) -> dict:
    torch.manual_seed(seed)
    cfg = GPTConfig(vocab_size=50257, pad_vocab_multiple=64, **SHAPE)
    lit = LitGPT(model=asdict(cfg), tokenizer=tokenizer_state(dm.tokenizer))
    with tempfile.TemporaryDirectory() as tmp:
        trainer = L.Trainer(
            accelerator="cpu", devices=1, precision=precision, max_steps=len(batches),
            gradient_clip_val=1.0, logger=TensorBoardLogger(tmp, name="", version=""),
            callbacks=[TokensPerSecond()], enable_checkpointing=False, enable_progress_bar=False,
            enable_model_summary=False, log_every_n_steps=10, limit_val_batches=0,
        )
        loader = torch.utils.data.DataLoader(batches, batch_size=None)
        t = time.perf_counter()
        trainer.fit(lit, train_dataloaders=loader)
        seconds = time.perf_counter() - t
    model = lit.model.eval()
    with torch.no_grad():
        losses = [model.loss(x, y).item() for x, y in val]
    return {"seconds": seconds, "val_loss": sum(losses) / len(losses)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=600, help="training batches for each (16 x 128)")
    ap.add_argument("--seed", type=int, default=123)
    ap.add_argument("--out", default=str(ROOT / "docs" / "benchmarks_peers.json"))
    args = ap.parse_args()

    dm = TextDataModule(context_length=128, batch_size=16, stride=64, seed=args.seed,
                        cache_dir=str(ROOT / "data" / "cache"))
    dm.load()
    loader = dm.train_dataloader()
    batches: list = []
    while len(batches) < args.steps:  # the same batches, in the same order, for both
        batches += list(islice(loader, args.steps - len(batches)))
    val = list(dm.val_dataloader())
    tokens = args.steps * 16 * 128

    choice = resolve_precision("auto", "cpu")
    p = peer(batches, val, args.seed)
    o = ours(batches, val, args.seed, dm, choice.precision)
    result = {
        "steps": args.steps, "tokens": tokens,
        "peer_llms_from_scratch": p | {"tokens_per_sec": tokens / p["seconds"]},
        "ours_default": o | {"tokens_per_sec": tokens / o["seconds"],
                             "precision": choice.precision, "why": choice.reason},
        "throughput_ratio": p["seconds"] / o["seconds"],
        "val_loss_gap": o["val_loss"] - p["val_loss"],
        "command": f"python scripts/bench_peers.py --steps {args.steps}",
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
