"""Simulated int8: values on the grid, weights given back exactly, and a loss that moves."""

import numpy as np
import torch

from tinygpt.data.windows import TokenWindows
from tinygpt.model.gpt import GPT, GPTConfig
from tinygpt.probes.quantize import fake_int8, int8_sensitivity, int8_simulated


def test_fake_int8_rounds_to_255_levels_of_the_largest_value():
    t = torch.randn(1000)
    q = fake_int8(t)
    step = t.abs().max() / 127
    assert len(torch.unique(q)) <= 255
    assert (q - t).abs().max() <= step / 2 + 1e-6
    torch.testing.assert_close(q / step, (q / step).round(), atol=1e-4, rtol=0)
    assert q.abs().max() == t.abs().max()


def small_model() -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=50, context_length=8, emb_dim=32, n_heads=2, n_layers=2))


def test_int8_changes_the_logits_and_gives_every_weight_back():
    m = small_model().eval()
    # a few large weights make int8's step coarse, as trained outliers do
    m.blocks[0].mlp.fc.weight.data[0, 0] = 3.0
    before = {k: v.clone() for k, v in m.state_dict().items()}
    idx = torch.randint(0, 50, (2, 8))
    with torch.no_grad():
        exact = m(idx)
        with int8_simulated(m):
            rounded = m(idx)
            assert not torch.equal(m.head.weight, before["head.weight"])  # quantised inside
        again = m(idx)
    assert (rounded - exact).abs().max() > 1e-4
    torch.testing.assert_close(again, exact, atol=0, rtol=0)
    for k, v in m.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_the_sensitivity_scores_the_same_windows_both_ways():
    m = small_model()
    ids = np.random.default_rng(0).integers(0, 50, 200)
    exact, rounded = int8_sensitivity(m, TokenWindows(ids, 8, 8), torch.ones(50))
    assert exact.tokens == rounded.tokens == 24 * 8
    assert exact.bpb != rounded.bpb
