"""Attention maps a person can read: each head a heatmap with the tokens on both axes, and a
frame that repaints such a figure's heatmaps with new weights without drawing it again."""

from __future__ import annotations

import io
import math

import matplotlib
import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image
from tensorboard.compat.proto.summary_pb2 import Summary

CMAP = "Greys"  # dark = strong


def token_label(text: str) -> str:
    """A token as an axis label: whitespace made visible, long tokens cut."""
    text = text.replace("\n", "\u23ce").replace("\t", "\u21e5").replace(" ", "\u00b7")
    # other control characters (a random token can be any byte) as escapes no font lacks
    text = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)
    return text if len(text) <= 8 else text[:7] + "\u2026"


def attention_figure(weights: torch.Tensor, labels: list[str], title: str) -> Figure:
    """Attention weights (heads, T, T) as a grid of heatmaps, queries down, keys across, each
    axis labelled with the tokens (dark = strong)."""
    heads, T, _ = weights.shape
    cols = math.ceil(math.sqrt(heads))
    rows = math.ceil(heads / cols)
    size = max(3.0, 0.16 * T)  # room for one label per token
    # A Figure of its own (not pyplot's): drawn to pixels and files, never to a display, and it
    # leaves the backend of a notebook or a script that imports this module as it was.
    fig = Figure(figsize=(size * cols, size * rows))
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False)
    for h, ax in enumerate(axes.flat):
        if h >= heads:
            ax.axis("off")
            continue
        ax.imshow(weights[h].float().cpu().numpy(), cmap=CMAP, vmin=0.0, vmax=1.0)
        ax.set_title(f"head {h}", fontsize=9)
        ax.set_xticks(range(T), labels, rotation=90, fontsize=6)
        ax.set_yticks(range(T), labels, fontsize=6)
        ax.set_xlabel("key", fontsize=8)
        ax.set_ylabel("query", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


class HeatmapFrame:
    """`attention_figure` drawn once as pixels (H, W, 3), with where each head's heatmap lies.

    Drawing a labelled figure takes matplotlib about a second (its hundreds of tick labels), and
    a run logs one per layer at every validation; the labels are the same fixed tokens each time,
    so later maps paint only the heatmaps' pixels, in the colours imshow would give them."""

    def __init__(self, heads: int, labels: list[str], title: str = ""):
        T = len(labels)
        fig = attention_figure(torch.zeros(heads, T, T), labels, title)
        fig.canvas.draw()
        self.frame = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
        height = self.frame.shape[0]
        # each head's image fills its axes box (imshow's equal aspect fits the box to it);
        # display coordinates start at the bottom, pixel rows at the top
        self.boxes = []
        for ax in fig.axes[:heads]:
            box = ax.get_window_extent()
            self.boxes.append((height - round(box.y1), height - round(box.y0),
                               round(box.x0), round(box.x1)))
        # which query and key cell each pixel row and column shows: the one under its centre,
        # (i + 0.5) * T / n rounded down, as imshow upsamples
        self.cells = [np.ix_(centre_cells(bottom - top, T), centre_cells(right - left, T))
                      for top, bottom, left, right in self.boxes]
        colours = matplotlib.colormaps[CMAP](np.linspace(0.0, 1.0, 256))[:, :3]
        self.colours = (colours * 255).round().astype(np.uint8)

    def paint(self, weights: torch.Tensor) -> np.ndarray:
        """The frame with weights (heads, T, T) in its heatmaps: an (H, W, 3) uint8 image."""
        image = self.frame.copy()
        levels = (weights.detach().float().clamp(0.0, 1.0) * 255).round().to(torch.uint8)
        levels = levels.cpu().numpy()
        for h, (top, bottom, left, right) in enumerate(self.boxes):
            image[top:bottom, left:right] = self.colours[levels[h][self.cells[h]]]
        return image


def centre_cells(pixels: int, cells: int) -> np.ndarray:
    """For each of `pixels` pixels across `cells` cells, the cell under the pixel's centre."""
    return (2 * np.arange(pixels) + 1) * cells // (2 * pixels)


def image_summary(tag: str, pixels: np.ndarray) -> Summary:
    """An (H, W, 3) uint8 image as a TensorBoard image summary. SummaryWriter.add_image would
    take a uint8 image through float32 and back (0.1 s for a 1024 x 1024 map); PNG at zlib's
    fastest level is 17 ms and about 10% larger."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=1)
    height, width, channels = pixels.shape
    image = Summary.Image(height=height, width=width, colorspace=channels,
                          encoded_image_string=buffer.getvalue())
    return Summary(value=[Summary.Value(tag=tag, image=image)])
