import pytest
import torch
import torch.nn.functional as F

from tinygpt.model.gpt import GPT, AttentionConfig, GPTConfig, attention_overrides
from tinygpt.probes.attention import with_weights


def tiny_cfg(**kw) -> GPTConfig:
    base = dict(vocab_size=50, context_length=16, emb_dim=32, n_heads=4, n_layers=2)
    return GPTConfig(**(base | kw))


def test_gpt2_124m_parameter_count_matches_published_figure():
    with torch.device("meta"):  # no memory, no init cost: only shapes
        model = GPT(GPTConfig(qkv_bias=True, tie_weights=True, pad_vocab_multiple=1))
    assert model.num_params() == 124_439_808


def test_untied_head_adds_its_own_matrix():
    tied, untied = GPT(tiny_cfg()), GPT(tiny_cfg(tie_weights=False))
    assert untied.num_params() - tied.num_params() == tied.cfg.padded_vocab_size * 32


def test_logits_shape():
    model = GPT(tiny_cfg())
    assert model(torch.randint(0, 50, (3, 10))).shape == (3, 10, 50)


def test_residual_projections_get_smaller_init():
    torch.manual_seed(0)
    model = GPT(tiny_cfg(emb_dim=128, n_layers=8))
    std_resid = model.blocks[0].attn.out_proj.weight.std().item()
    std_other = model.blocks[0].mlp.fc.weight.std().item()
    assert std_other == pytest.approx(0.02, rel=0.05)
    assert std_resid == pytest.approx(0.02 / 4, rel=0.05)


@pytest.mark.parametrize(
    "att",
    [
        AttentionConfig(),
        AttentionConfig(backend="manual"),
        AttentionConfig(backend="manual", mask_impl="renorm"),
    ],
)
def test_causal_model_logits_ignore_later_tokens(att):
    torch.manual_seed(0)
    model = GPT(tiny_cfg(attention=att)).eval()
    x = torch.randint(0, 50, (2, 16))
    y = x.clone()
    y[:, 8:] = (y[:, 8:] + 1) % 50
    torch.testing.assert_close(model(x)[:, :8], model(y)[:, :8], atol=1e-6, rtol=0)


def test_non_causal_model_logits_see_later_tokens():
    model = GPT(tiny_cfg(attention=AttentionConfig(causal=False))).eval()
    x = torch.randint(0, 50, (2, 16))
    y = x.clone()
    y[:, -1] = (y[:, -1] + 1) % 50
    assert not torch.allclose(model(x)[:, 0], model(y)[:, 0])


def test_gradients_reach_every_parameter_and_loss_goes_down():
    torch.manual_seed(0)
    model = GPT(tiny_cfg(tie_weights=False))
    x = torch.randint(0, 50, (4, 16))
    y = torch.roll(x, -1, dims=1)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for step in range(40):
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        opt.zero_grad()
        loss.backward()
        if step == 0:
            missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
            assert missing == []
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_manual_attention_returns_weights_and_restores_backend():
    model = GPT(tiny_cfg()).eval()
    x = torch.randint(0, 50, (1, 16))
    with attention_overrides(model, backend="manual"):
        logits, weights = with_weights(model, x)
    assert len(weights) == 2 and weights[0].shape == (1, 4, 16, 16)
    torch.testing.assert_close(logits, model(x), atol=1e-5, rtol=0)
    assert all(b.attn.switches.backend == "sdpa" for b in model.blocks)


@pytest.mark.parametrize(
    "kw,match",
    [
        (dict(emb_dim=30), "divisible"),
        (dict(attention=AttentionConfig(mask_impl="renorm")), "manual"),
        (dict(n_layers=0), "n_layers"),
        (dict(drop_rate=1.5), "drop_rate"),
        (dict(logit_softcap=0.0), "logit_softcap"),
        (dict(activation="relu3"), "model.activation"),
    ],
)
def test_bad_config_raises_value_error(kw, match):
    with pytest.raises(ValueError, match=match):
        GPT(tiny_cfg(**kw))


def test_too_long_input_raises():
    with pytest.raises(ValueError, match="context_length"):
        GPT(tiny_cfg())(torch.zeros(1, 17, dtype=torch.long))


def test_relu2_mlp_squares_the_positive_part():
    mlp = GPT(tiny_cfg(activation="relu2")).blocks[0].mlp
    x = torch.tensor([-2.0, -0.5, 0.0, 0.5, 3.0])
    torch.testing.assert_close(mlp.act(x), torch.tensor([0.0, 0.0, 0.0, 0.25, 9.0]))
    assert isinstance(GPT(tiny_cfg()).blocks[0].mlp.act, torch.nn.GELU)  # the default: GPT-2's


def test_gelu_exact_is_the_erf_form_and_gelu_the_tanh_form():
    x = torch.linspace(-4, 4, 101)
    exact = GPT(tiny_cfg(activation="gelu_exact")).blocks[0].mlp.act
    torch.testing.assert_close(exact(x), x * 0.5 * (1 + torch.erf(x / 2**0.5)))
    tanh = GPT(tiny_cfg()).blocks[0].mlp.act
    c = (2 / torch.pi) ** 0.5
    torch.testing.assert_close(tanh(x), 0.5 * x * (1 + torch.tanh(c * (x + 0.044715 * x**3))))
    assert (exact(x) - tanh(x)).abs().max() > 1e-4  # two different functions


def test_bias_false_leaves_no_bias_but_the_qkv_projections():
    names = [n for n, _ in GPT(tiny_cfg(bias=False, qkv_bias=True)).named_parameters()]
    assert [n for n in names if "bias" in n] == ["blocks.0.attn.qkv.bias", "blocks.1.attn.qkv.bias"]
    with_biases = [n for n, _ in GPT(tiny_cfg()).named_parameters() if n.endswith("bias")]
    assert {"ln_f.bias", "blocks.0.ln1.bias", "blocks.0.mlp.fc.bias",
            "blocks.0.attn.out_proj.bias"} <= set(with_biases)


def test_zero_init_makes_each_block_start_as_the_identity():
    model = GPT(tiny_cfg(zero_init=True))
    block, x = model.blocks[0], torch.randn(2, 5, 32)
    assert not block.attn.out_proj.weight.any() and not block.mlp.proj.weight.any()
    torch.testing.assert_close(block(x), x)  # biases start at zero too
    assert GPT(tiny_cfg()).blocks[0].mlp.proj.weight.any()


def test_logit_softcap_bounds_every_logit_and_agrees_with_the_loss():
    torch.manual_seed(0)
    model = GPT(tiny_cfg(logit_softcap=0.5))
    with torch.no_grad():
        model.head.weight.mul_(200)  # logits far beyond the cap
    x = torch.randint(0, 50, (2, 8))
    logits = model(x)
    assert logits.abs().max() <= 0.5 and logits.abs().max() > 0.45
    assert model.next_logits(x).abs().max() <= 0.5
    ref = F.cross_entropy(logits.flatten(0, 1), x.roll(-1, 1).flatten())
    torch.testing.assert_close(model.loss(x, x.roll(-1, 1)), ref)
