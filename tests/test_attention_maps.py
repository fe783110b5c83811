import io

import matplotlib.pyplot as plt
import numpy as np
import torch
from PIL import Image

from tinygpt.training.attention_maps import (
    HeatmapFrame,
    attention_figure,
    image_summary,
    token_label,
)


def rendered(weights: torch.Tensor, labels: list[str], title: str) -> np.ndarray:
    fig = attention_figure(weights, labels, title)
    fig.canvas.draw()
    pixels = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return pixels


def test_painted_frame_looks_like_the_figure_matplotlib_draws():
    torch.manual_seed(0)
    weights = torch.softmax(torch.randn(3, 12, 12) * 2, dim=-1)
    labels = [token_label(f"t{i}") for i in range(12)]
    frame = HeatmapFrame(3, labels, "layer 0")
    painted, drawn = frame.paint(weights), rendered(weights, labels, "layer 0")
    assert painted.shape == drawn.shape and painted.dtype == np.uint8
    for top, bottom, left, right in frame.boxes:
        # inside each heatmap, away from the cell edges' antialiasing, the same colours
        diff = np.abs(painted[top:bottom, left:right].astype(int)
                      - drawn[top:bottom, left:right].astype(int))
        assert np.median(diff) <= 2 and (diff <= 8).mean() > 0.9
    outside = np.ones(painted.shape[:2], dtype=bool)
    for top, bottom, left, right in frame.boxes:
        outside[top:bottom, left:right] = False
    assert (painted[outside] == frame.frame[outside]).all()  # labels and titles untouched


def test_each_cell_lands_where_its_query_and_key_are():
    T = 8
    weights = torch.zeros(2, T, T)
    weights[1] = torch.eye(T)  # head 1 attends to itself only
    frame = HeatmapFrame(2, [str(i) for i in range(T)], "x")
    image = frame.paint(weights)
    top, bottom, left, right = frame.boxes[1]
    cell_h, cell_w = (bottom - top) / T, (right - left) / T
    for q in range(T):
        for k in range(T):
            y, x = int(top + (q + 0.5) * cell_h), int(left + (k + 0.5) * cell_w)
            assert image[y, x].max() < 30 if q == k else image[y, x].min() > 225
    top, bottom, left, right = frame.boxes[0]
    assert image[top + 2:bottom - 2, left + 2:right - 2].min() > 225  # head 0: all zero, white


def test_image_summary_holds_the_pixels_as_png():
    pixels = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    value = image_summary("watch/attention/layer_0", pixels).value[0]
    assert value.tag == "watch/attention/layer_0"
    assert (value.image.height, value.image.width, value.image.colorspace) == (20, 30, 3)
    decoded = np.asarray(Image.open(io.BytesIO(value.image.encoded_image_string)))
    assert np.array_equal(decoded, pixels)
