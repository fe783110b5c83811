"""How a run looks in TensorBoard: the custom-scalars layout (losses first, one multi-line chart
per attention quantity) and attention maps a person can read."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")  # files and TensorBoard images only, no display
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def custom_scalars_layout(n_layers: int, longer_context: bool = False) -> dict:
    """The Custom Scalars tab: what a run is for first (losses, bits per byte; at twice the
    context where the positions allow it), then how it trains, then what the attention does,
    each quantity one chart with a line per layer."""
    def chart(*regexes: str) -> list:
        return ["Multiline", list(regexes)]

    per_layer = r"layer_\d+$"
    attention = {
        "entropy per layer, nats (entropy_uniform: its maximum)": chart(
            rf"^attention/entropy/{per_layer}", r"^attention/entropy_uniform$"),
        "largest weight per row (1 = saturated)": chart(rf"^attention/max_weight/{per_layer}"),
        "spread of the pre-softmax scores": chart(rf"^attention/score_std/{per_layer}"),
        "largest pre-softmax score (attention-logit growth)": chart(
            rf"^attention/max_score/{per_layer}"),
        "gradient norm reaching W_q": chart(rf"^attention/grad_wq/{per_layer}"),
        "gradient norm reaching W_k": chart(rf"^attention/grad_wk/{per_layer}"),
    }
    attention |= {f"entropy per head, layer {i}": chart(rf"^attention/entropy/layer_{i}/head_\d+$")
                  for i in range(n_layers)}
    losses = {
        "loss, nats per token": chart(r"^train/loss$", r"^val/loss$", r"^val/loss_causal_eval$"),
        "bits per byte (comparable across tokenizers)": chart(r"^train/bpb$", r"^val/bpb$"),
    }
    if longer_context:
        losses["bits per byte at twice the context (ref: the same text at the trained one)"] = \
            chart(r"^val/bpb_2x$", r"^val/bpb_2x_ref$")
    return {
        "1. losses": losses,
        "2. training": {
            "learning rate": chart(r"^train/lr$"),
            "gradient norm before clipping": chart(r"^grad_norm/total$"),
            "tokens per second": chart(r"^train/tokens_per_sec$"),
            "model FLOPs utilisation": chart(r"^train/mfu$"),
        },
        "3. attention": attention,
    }


def token_label(text: str) -> str:
    """A token as an axis label: whitespace made visible, long tokens cut."""
    text = text.replace("\n", "\u23ce").replace("\t", "\u21e5").replace(" ", "\u00b7")
    return text if len(text) <= 8 else text[:7] + "\u2026"


def attention_figure(weights: torch.Tensor, labels: list[str], title: str) -> Figure:
    """Attention weights (heads, T, T) as a grid of heatmaps, queries down, keys across, each
    axis labelled with the tokens (dark = strong)."""
    heads, T, _ = weights.shape
    cols = math.ceil(math.sqrt(heads))
    rows = math.ceil(heads / cols)
    size = max(3.0, 0.16 * T)  # room for one label per token
    fig, axes = plt.subplots(rows, cols, figsize=(size * cols, size * rows), squeeze=False)
    for h, ax in enumerate(axes.flat):
        if h >= heads:
            ax.axis("off")
            continue
        ax.imshow(weights[h].float().cpu().numpy(), cmap="Greys", vmin=0.0, vmax=1.0)
        ax.set_title(f"head {h}", fontsize=9)
        ax.set_xticks(range(T), labels, rotation=90, fontsize=6)
        ax.set_yticks(range(T), labels, fontsize=6)
        ax.set_xlabel("key", fontsize=8)
        ax.set_ylabel("query", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
