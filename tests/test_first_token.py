"""First-token mass, the sink rate and residual-stream outliers against values known by hand."""

import torch

from tinygpt.model.gpt import GPT, AttentionConfig, GPTConfig
from tinygpt.probes.first_token import activation_outliers, first_token_mass, sink_rate

T = 10


def model(**att) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=30, context_length=T, emb_dim=16, n_heads=2, n_layers=2,
                         attention=AttentionConfig(**att))).eval()


def blind(m: GPT) -> GPT:
    """Queries of zero: every score is 0, so row t spreads 1/(t+1) over its keys."""
    for b in m.blocks:
        b.attn.qkv.weight.data[: 16].zero_()
    return m


def test_uniform_attention_puts_one_over_t_plus_one_on_the_first_token():
    idx = torch.randint(0, 30, (3, T))
    mass = first_token_mass(blind(model()), idx)
    expect = sum(1 / (t + 1) for t in range(1, T)) / (T - 1)
    torch.testing.assert_close(mass, torch.full((2, 2), expect), atol=1e-6, rtol=1e-6)


def test_a_zero_sink_takes_a_share_the_first_token_then_lacks():
    idx = torch.randint(0, 30, (3, T))
    plain = first_token_mass(blind(model()), idx)
    sunk = first_token_mass(blind(model(sink="zero")), idx)
    expect = sum(1 / (t + 2) for t in range(1, T)) / (T - 1)  # the sink is one more key
    torch.testing.assert_close(sunk, torch.full((2, 2), expect), atol=1e-6, rtol=1e-6)
    assert (sunk < plain).all()


def test_the_sink_rate_is_the_share_of_heads_above_the_threshold():
    assert sink_rate(torch.tensor([[0.1, 0.5], [0.31, 0.29]])) == 0.5
    assert sink_rate(torch.tensor([[0.9]]), threshold=0.95) == 0.0


def test_a_planted_massive_activation_shows_as_an_outlier():
    idx = torch.randint(0, 30, (2, T))
    m = model()
    before = activation_outliers(m, idx)
    m.blocks[1].mlp.proj.bias.data[3] = 500.0  # one channel of the last block, every token
    after = activation_outliers(m, idx)
    assert len(after) == 2
    assert after[0].ratio == before[0].ratio  # the first block is untouched
    assert after[1].ratio > 50 * before[1].ratio and after[1].kurtosis > 5
    assert 1.5 < before[1].kurtosis < 6  # a Gaussian's is 3


def test_sigmoid_rows_read_as_shares_so_uniform_weights_are_not_a_sink():
    from tinygpt.probes.attention import attention_weights

    m = blind(model(kind="sigmoid", backend="manual"))  # every weight sigmoid(-log T) = 1/(T+1)
    idx = torch.randint(0, 30, (2, T))
    _, weights = attention_weights(m, idx)
    torch.testing.assert_close(weights[0].sum(-1), torch.ones(2, 2, T))
    expect = sum(1 / (t + 1) for t in range(1, T)) / (T - 1)  # an even spread, as softmax's
    torch.testing.assert_close(first_token_mass(m, idx), torch.full((2, 2), expect), atol=1e-6,
                               rtol=1e-6)


def test_softpick_rows_are_read_as_they_are_so_a_head_that_gives_nothing_has_no_sink():
    from tinygpt.probes.attention import attention_weights

    m = blind(model(kind="softpick", backend="manual"))  # every score 0: every weight 0
    idx = torch.randint(0, 30, (2, T))
    _, weights = attention_weights(m, idx)
    assert all((w == 0).all() for w in weights)
    assert (first_token_mass(m, idx) == 0).all() and sink_rate(first_token_mass(m, idx)) == 0
