"""Pictures of what attention does in a trained model: its best induction head on a random
sequence and its copy, its head with the most first-token mass on text, and the copy task's
circuit (a previous-token head in layer 0, an induction head in the last layer) with what
ablating each
head of layer 0 does to the copy loss (what `tinygpt-heads` draws for docs/attention_lab.md)."""

from __future__ import annotations

from pathlib import Path

import torch

from tinygpt.data.config import Synthetic, SyntheticKind
from tinygpt.data.tokenizer import Tokenizer
from tinygpt.model.gpt import GPT
from tinygpt.probes.attention import attention_weights
from tinygpt.probes.circuit import ablation_check, circuit_scores, copy_windows
from tinygpt.probes.induction import head_scores, repeated_tokens
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
    # as the repeated-segment setting's windows start (none: the sequence alone)
    bos = tokenizer.eot_token
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


def draw_circuit(model: GPT, tokenizer: Tokenizer, out: Path, task: Synthetic | None = None,
                 name: str = "circuit") -> list[tuple[Path, str]]:
    """<name>_previous_token.png and <name>_induction.png in `out`: layer 0's best previous-token
    head and the last layer's best induction head on one of the copy task's windows (`task`;
    default: the copy task's), each with a line saying which head; and a line with what
    ablating each head of layer 0 does to the copy loss."""
    task = task or Synthetic(kind=SyntheticKind.copies)
    out.mkdir(parents=True, exist_ok=True)
    n_tokens = min(3 * task.prefix, model.cfg.context_length) + 1
    windows, copied = copy_windows(model.cfg.vocab_size, n_tokens, task, n=1, seed=7)
    _, weights = attention_weights(model, windows[:, :-1])
    induction, previous = circuit_scores(weights, windows, copied)
    labels = [token_label(tokenizer.decode([t])) for t in windows[0, :-1].tolist()]
    last, drawn = len(weights) - 1, []
    for layer, scores, what in ((0, previous, "previous-token"), (last, induction, "induction")):
        head = int(scores[layer].argmax())
        title = (f"layer {layer} head {head}: {what} score {scores[layer, head]:.2f}\n"
                 f"({task.prefix} random tokens, then chunks copied from them)")
        path = out / f"{name}_{what.replace('-', '_')}.png"
        drawn.append((_save(weights[layer][0, head], labels, title, path), title))
    check = ablation_check(model, *copy_windows(model.cfg.vocab_size,
                                                model.cfg.context_length + 1, task))
    others = ", ".join(f"head {h} {loss:.2f}" for h, loss in check.without_other.items())
    drawn.append((out, f"copy loss {check.intact:.2f} nats; without layer 0's previous-token head "
                       f"(head {check.previous_head}) {check.without_previous:.2f}; without "
                       f"another head of layer 0: {others}"))
    return drawn


def _save(weights: torch.Tensor, labels: list[str], title: str, path: Path) -> Path:
    fig = attention_figure(weights[None].clamp(min=0), labels, title)
    fig.axes[0].set_title("")  # one head: the figure's title names it
    fig.savefig(path, dpi=90)
    return path
