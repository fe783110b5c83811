"""Why attention divides by sqrt(d_k), in isolation: random unit-variance queries and keys
(scripts/softmax_saturation.py prints and plots these).

For each d_k, a query scores `keys` keys with q.k (unscaled) or q.k/sqrt(d_k) (scaled). The
unscaled scores spread like sqrt(d_k), the softmax turns one-hot, and its Jacobian (the factor
every gradient to W_q and W_k passes through) goes to zero. Prints a table, the score lead at which
the renormalised causal mask breaks, and writes softmax_saturation.png.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

DIMS = [4, 16, 64, 256, 1024, 4096]


def softmax_stats(d_k: int, keys: int, rows: int, scaled: bool, seed: int = 0,
                  chunk: int = 100) -> dict[str, float]:
    """Means over `rows` random queries: score spread, largest weight, entropy, and the
    Frobenius norm of the softmax's Jacobian diag(p) - p p^T."""
    gen = torch.Generator().manual_seed(seed)
    sums = {"score_std": 0.0, "max_weight": 0.0, "entropy": 0.0, "jacobian": 0.0,
            "saturated": 0.0}
    for start in range(0, rows, chunk):
        n = min(chunk, rows - start)
        q = torch.randn(n, 1, d_k, generator=gen)
        k = torch.randn(n, keys, d_k, generator=gen)
        s = (q @ k.transpose(1, 2)).squeeze(1)  # (n, keys)
        if scaled:
            s = s / math.sqrt(d_k)
        p = torch.softmax(s, dim=-1)
        jac = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]
        sums["score_std"] += s.std(dim=-1, unbiased=False).sum().item()
        sums["max_weight"] += p.amax(-1).sum().item()
        sums["entropy"] += (-torch.special.xlogy(p, p).sum(-1)).sum().item()
        sums["jacobian"] += torch.linalg.matrix_norm(jac).sum().item()
        sums["saturated"] += (p.amax(-1) > 0.99).float().sum().item()
    return {k: v / rows for k, v in sums.items()}


def renorm_breaking_gap(dtype: torch.dtype = torch.float32) -> float:
    """The smallest lead of a future score over the only visible one at which the seed's mask
    (softmax over all, zero the future, renormalise) gives NaN: exp underflows to 0, then 0/0."""
    def breaks(gap: float) -> bool:
        w = torch.softmax(torch.tensor([0.0, gap], dtype=dtype), dim=-1)[:1]
        return bool(torch.isnan(w / w.sum()).any())

    lo, hi = 0.0, 1000.0
    for _ in range(40):  # bisection to well below 0.01
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if breaks(mid) else (mid, hi)
    return hi


def table(results: dict[tuple[int, bool], dict[str, float]], keys: int) -> str:
    head = ("| d_k | scaled | score std | largest weight | rows > 0.99 | entropy (nats) "
            "| softmax Jacobian norm |\n|---|---|---|---|---|---|---|")
    lines = [head]
    for (d, scaled), r in results.items():
        lines.append(f"| {d} | {'yes' if scaled else 'no'} | {r['score_std']:.2f} | "
                     f"{r['max_weight']:.3f} | {r['saturated']:.0%} | {r['entropy']:.2f} | "
                     f"{r['jacobian']:.4f} |")
    lines.append(f"\n{keys} keys per query; uniform attention: largest weight {1 / keys:.3f}, "
                 f"entropy {math.log(keys):.2f} nats.")
    return "\n".join(lines)


def plot(results: dict[tuple[int, bool], dict[str, float]], path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 3.6))
    axes = fig.subplots(1, 3)
    panels = [("score_std", "score std", True), ("max_weight", "largest softmax weight", False),
              ("jacobian", "softmax Jacobian norm", True)]
    for ax, (key, title, log) in zip(axes, panels, strict=True):
        for scaled, style in ((False, "o-"), (True, "s--")):
            dims = [d for d, s in results if s == scaled]
            ax.plot(dims, [results[d, scaled][key] for d in dims], style,
                    label="q.k/sqrt(d_k)" if scaled else "q.k")
        ax.set_xscale("log", base=2)
        if log:
            ax.set_yscale("log")
        ax.set_xlabel("d_k")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
