"""Our default training path against the "from scratch" book's package on the same batches
(`tinygpt-bench-peers` runs `compare()`).

Both train the book's GPTModel shape (4 layers x 128, GPT-2 vocabulary, context 128, dropout
0.1) on the same batches of the embedded corpus, in the same order, for the same number of
tokens; then both are scored on the same held-out windows. The peer runs its own
`train_model_simple` loop with the book's chapter-5 optimizer (AdamW, lr 4e-4, wd 0.1), in
float32; ours runs in whatever `trainer.precision=auto` picks on this machine.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import time
from itertools import islice

import torch

from tinygpt.data.config import DataConfig
from tinygpt.data.tokenizer import get_tokenizer, tokenizer_state
from tinygpt.errors import UsageError
from tinygpt.lab.bench.timing import fit_on_batches
from tinygpt.model.gpt import GPTConfig
from tinygpt.training.config import compose_train
from tinygpt.training.datamodule import TextDataModule
from tinygpt.training.module import GPTLightningModule
from tinygpt.training.precision import resolve_precision

# The book's GPTModel at the default run's size: read from configs/model (the book's keys).
SHAPE_KEYS = ("context_length", "emb_dim", "n_heads", "n_layers", "drop_rate")


def shape() -> dict:
    m = compose_train().model
    return {k: m[k] for k in SHAPE_KEYS}


def require_peer() -> None:
    """A UsageError saying how to install the peer, if it is not (an optional package)."""
    if importlib.util.find_spec("llms_from_scratch") is None:
        raise UsageError("the peer is not installed (pip install -e '.[bench]' && "
                         "pip install --no-deps llms-from-scratch)")


def peer(batches: list, val: list, seed: int) -> dict:
    require_peer()
    from llms_from_scratch.ch04 import GPTModel
    from llms_from_scratch.ch05 import calc_loss_loader, train_model_simple

    torch.manual_seed(seed)
    model = GPTModel({"vocab_size": 50257, "qkv_bias": False, **shape()})
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
        self._t = get_tokenizer("gpt2")

    def encode(self, text: str, allowed_special=None) -> list[int]:
        return self._t.encode(text)

    def decode(self, ids: list[int]) -> str:
        return self._t.decode(ids)


def ours(batches: list, val: list, seed: int, dm: TextDataModule, precision: str) -> dict:
    torch.manual_seed(seed)
    cfg = GPTConfig(vocab_size=dm.tokenizer.vocab_size, **shape())
    module = GPTLightningModule(cfg, tokenizer=tokenizer_state(dm.tokenizer))
    seconds = fit_on_batches(module, batches, precision)
    model = module.model.eval()
    with torch.no_grad():
        losses = [model.loss(x, y).item() for x, y in val]
    return {"seconds": seconds, "val_loss": sum(losses) / len(losses)}


def compare(steps: int, seed: int) -> dict:
    """Both loops for `steps` batches of the default run's GPT-2 tokens, then both scored."""
    require_peer()
    d = compose_train().data  # the default run's batch and stride, with the book's tokenizer
    dm = TextDataModule(DataConfig(tokenizer="gpt2", batch_size=d.batch_size, stride=d.stride),
                        context_length=shape()["context_length"], seed=seed)
    dm.load()
    loader = dm.train_dataloader()
    batches: list = []
    while len(batches) < steps:  # the same batches, in the same order, for both
        batches += list(islice(loader, steps - len(batches)))
    val = list(dm.val_dataloader())
    tokens = steps * dm.per_device_batch * dm.context_length
    choice = resolve_precision("auto", "cpu")
    p = peer(batches, val, seed)
    o = ours(batches, val, seed, dm, choice.precision)
    return {
        "steps": steps, "tokens": tokens,
        "peer_llms_from_scratch": p | {"tokens_per_sec": tokens / p["seconds"]},
        "ours_default": o | {"tokens_per_sec": tokens / o["seconds"],
                             "precision": choice.precision, "why": choice.reason},
        "throughput_ratio": p["seconds"] / o["seconds"],
        "val_loss_gap": o["val_loss"] - p["val_loss"],
        "command": f"python scripts/bench_peers.py --steps {steps}",
    }
