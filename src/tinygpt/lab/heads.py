"""Pictures of what attention does in a trained model: its best induction head on a random
sequence and its copy, and its head with the most first-token mass on text (what
`tinygpt-heads` draws for docs/attention_lab.md)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import torch

from tinygpt.diagnostics import attention_weights
from tinygpt.induction import head_scores, repeated_tokens
from tinygpt.model import GPT
from tinygpt.tokenizer import Tokenizer
from tinygpt.training.attention_maps import attention_figure, token_label


def best_head(scores: torch.Tensor) -> tuple[int, int]:
    """(layer, head) of the largest entry of a (layers, heads) table."""
    i = int(scores.argmax())
    return divmod(i, scores.shape[1])


def draw_heads(model: GPT, tokenizer: Tokenizer, text: str, out: Path,
               length: int = 16) -> list[tuple[Path, str]]:
    """induction_head.png and sink_head.png in `out`, each with a line saying which head."""
    out.mkdir(parents=True, exist_ok=True)
    drawn = []
    bos = tokenizer.eot_token  # as lab III's windows start (none: the sequence alone)
    idx = repeated_tokens(model.cfg.vocab_size, length, batch=1, seed=7, bos=bos)
    _, weights = attention_weights(model, idx)
    induction, _ = head_scores(weights, length, start=int(bos is not None))
    layer, head = best_head(induction)
    labels = [token_label(tokenizer.decode([t])) for t in idx[0].tolist()]
    title = (f"layer {layer} head {head}: induction score {induction[layer, head]:.2f}\n"
             f"({length} random tokens, then the same again)")
    drawn.append((_save(weights[layer][0, head], labels, title, out / "induction_head.png"),
                   title))
    ids = tokenizer.encode(text)[: min(48, model.cfg.context_length - 1)]
    if tokenizer.eot_token is not None:
        ids = [tokenizer.eot_token, *ids]
    x = torch.tensor([ids])
    _, weights = attention_weights(model, x)
    mass = torch.stack([w[0, :, 1:, 0].mean(-1) for w in weights])
    layer, head = best_head(mass)
    labels = [token_label(tokenizer.decode([t])) for t in ids]
    title = f"layer {layer} head {head}: first-token mass {mass[layer, head]:.2f} on text"
    drawn.append((_save(weights[layer][0, head], labels, title, out / "sink_head.png"), title))
    return drawn


def _save(weights: torch.Tensor, labels: list[str], title: str, path: Path) -> Path:
    fig = attention_figure(weights[None].clamp(min=0), labels, title)
    fig.axes[0].set_title("")  # one head: the figure's title names it
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
