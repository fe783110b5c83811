"""Lab III's attention variants against direct formulas: the zero and learned sinks, the output
gate, sigmoid attention, differential attention and softpick; both backends, the KV cache,
training."""

import math

import pytest
import torch
import torch.nn.functional as F

from tinygpt.errors import UsageError
from tinygpt.model.attention import MultiHeadAttention, visible
from tinygpt.model.generate import generate
from tinygpt.model.gpt import GPT, AttentionConfig, GPTConfig
from tinygpt.model.variants import DIFF_LAMBDA_INIT, SOFTPICK_EPS, softpick
from tinygpt.probes.attention import with_weights
from tinygpt.weights.hf import config_to_hf

D, CTX, HEADS = 32, 12, 4


def mha(**kw) -> MultiHeadAttention:
    torch.manual_seed(0)
    m = MultiHeadAttention(D, D, CTX, HEADS, **kw).eval()
    if m.sink_logit is not None:  # trained sinks are not all zero: test with ones that are not
        m.sink_logit.data = torch.tensor([-1.0, 0.5, 2.0, 0.0])
    return m


def x_batch(T=CTX, seed=1) -> torch.Tensor:
    return torch.randn(2, T, D, generator=torch.Generator().manual_seed(seed))


def masked_scores(m: MultiHeadAttention, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    q, k, v = m.project(x)
    return m.scores(q, k).masked_fill(~visible(m.switches, 0, CTX, CTX), -torch.inf), v


def heads_out(m: MultiHeadAttention, per_head: torch.Tensor) -> torch.Tensor:
    return m.out_proj(per_head.transpose(1, 2).reshape(2, CTX, D))


@pytest.mark.parametrize("mask_impl", ["neg_inf", "renorm"])
def test_the_zero_sink_is_a_softmax_over_a_zero_column_then_dropped(mask_impl):
    m = mha(sink="zero", backend="manual", mask_impl=mask_impl)
    x = x_batch()
    s, v = masked_scores(m, x)
    expect = F.softmax(torch.cat([torch.zeros(*s.shape[:3], 1), s], -1), -1)[..., 1:]
    out, [w] = with_weights(m, x)
    torch.testing.assert_close(w, expect, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(out, heads_out(m, expect @ v), atol=1e-6, rtol=1e-6)
    assert (w.sum(-1) < 1).all()  # the sink took some of every row


def test_the_learned_sink_takes_each_heads_own_logit():
    m = mha(sink="learned", backend="manual")
    x = x_batch()
    s, _ = masked_scores(m, x)
    logits = m.sink_logit.detach().view(1, HEADS, 1, 1).expand(2, HEADS, CTX, 1)
    expect = F.softmax(torch.cat([s, logits], -1), -1)[..., :-1]
    torch.testing.assert_close(with_weights(m, x)[1][0], expect, atol=1e-6, rtol=1e-6)


def test_a_gate_of_ones_is_no_gate_and_a_head_gate_scales_each_head():
    gated, plain = mha(gate="elementwise"), mha()
    plain.load_state_dict({k: v for k, v in gated.state_dict().items()
                           if not k.startswith("gate.")})
    gated.gate.proj.weight.data.zero_()
    gated.gate.proj.bias.data.fill_(50.0)  # sigmoid(50) is 1.0 in float32
    x = x_batch()
    torch.testing.assert_close(gated(x), plain(x), atol=0, rtol=0)

    head = mha(gate="head", backend="manual")
    head.gate.proj.weight.data.zero_()
    head.gate.proj.bias.data = torch.tensor([0.0, 50.0, -50.0, 1.0])
    q, k, v = head.project(x)
    hidden = ~visible(head.switches, 0, CTX, CTX)
    per_head = F.softmax(head.scores(q, k).masked_fill(hidden, -torch.inf), -1) @ v
    factor = torch.sigmoid(head.gate.proj.bias.data).view(1, HEADS, 1, 1)
    torch.testing.assert_close(head(x), heads_out(head, per_head * factor), atol=1e-6,
                               rtol=1e-6)


def test_sigmoid_attention_is_sigmoid_of_the_score_minus_log_n():
    m = mha(kind="sigmoid", backend="manual")
    x = x_batch()
    q, k, v = m.project(x)
    raw = q @ k.transpose(-2, -1) / math.sqrt(D // HEADS) - math.log(CTX)
    expect = torch.sigmoid(raw) * visible(m.switches, 0, CTX, CTX)
    out, [w] = with_weights(m, x)
    torch.testing.assert_close(w, expect, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(out, heads_out(m, expect @ v), atol=1e-6, rtol=1e-6)


def softpick_reference(scores: torch.Tensor) -> torch.Tensor:
    """The paper's formula as written, in float64: relu(e^s - 1) / (sum |e^s - 1| + eps), the
    sum over the keys that are not -inf."""
    e = torch.exp(scores.double()) - 1
    mass = torch.where(scores.isneginf(), 0.0, e.abs()).sum(-1, keepdim=True)
    return F.relu(e) / (mass + SOFTPICK_EPS)


def test_softpick_is_its_formula_even_where_the_formula_overflows_float32():
    g = torch.Generator().manual_seed(0)
    scores = 3 * torch.randn(4, 6, 9, generator=g)
    scores[0, :, 5:] = -torch.inf  # hidden keys take no part
    scores[1, 0] = torch.linspace(-5, -0.1, 9)  # every score below 0: the row gives nothing
    scores[1, 1] = torch.linspace(-120, -100, 9)  # scaled by its own max, e^100 would overflow
    scores[2, 0] = torch.tensor([95.0, 90.0, 0.0, -3.0, 60.0, 1.0, -torch.inf, 2.0, 89.0])
    w = softpick(scores)
    assert torch.isinf(torch.exp(scores[2, 0, :1])).all()  # e^95 overflows float32
    torch.testing.assert_close(w.double(), softpick_reference(scores), atol=1e-6, rtol=1e-5)
    assert (w[0, :, 5:] == 0).all() and (w[1, :2] == 0).all()
    assert (w >= 0).all() and (w.sum(-1) <= 1 + 1e-6).all()
    # below 1 wherever a visible score is negative: what it gives to nothing
    assert (w[3].sum(-1) < 0.999).all()


def test_softpick_gradients_are_finite_with_hidden_keys_and_flow_only_to_visible_ones():
    scores = torch.randn(2, 5, 5)
    scores[1, 3] -= 110  # a row far below 0: e^110 would overflow, and its gradient be NaN
    scores = scores.masked_fill(torch.ones(5, 5).triu(1).bool(), -torch.inf).requires_grad_(True)
    (softpick(scores) * torch.randn(2, 5, 5)).sum().backward()
    assert torch.isfinite(scores.grad).all()
    assert (scores.grad[:, torch.ones(5, 5).triu(1).bool()] == 0).all()


def test_softpick_attention_is_softpick_of_the_masked_scores():
    m = mha(kind="softpick", backend="manual")
    x = x_batch()
    scores, v = masked_scores(m, x)
    expect = softpick_reference(scores).float()
    out, [w] = with_weights(m, x)
    torch.testing.assert_close(w, expect, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(out, heads_out(m, expect @ v), atol=1e-6, rtol=1e-5)


def test_differential_attention_with_lambda_zero_is_one_softmax_map_normed():
    m = mha(kind="differential", backend="manual")
    d = m.diff
    d.q1.data.zero_(), d.k1.data.zero_(), d.q2.data.zero_(), d.k2.data.zero_()
    d.q2.data[0], d.k2.data[0] = 1.0, math.log(1 + DIFF_LAMBDA_INIT)  # exp(.) - exp(.) = -0.8
    assert abs(d.value().item()) < 1e-6
    x = x_batch()
    q, k, v = m.project(x)
    s = (q[:, 0::2] @ k[:, 0::2].transpose(-2, -1)) / math.sqrt(D // HEADS)
    w = F.softmax(s.masked_fill(~visible(m.switches, 0, CTX, CTX), -torch.inf), -1)
    # pair i's value: heads 2i and 2i+1 side by side
    pair_v = torch.cat([v[:, 0::2], v[:, 1::2]], dim=-1)
    expect = d.norm(w @ pair_v) * (1 - DIFF_LAMBDA_INIT)
    out, [weights] = with_weights(m, x)
    torch.testing.assert_close(weights, w, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(out, heads_out(m, expect), atol=1e-5, rtol=1e-5)


VARIANTS = [dict(sink="zero"), dict(sink="learned"), dict(gate="head"), dict(gate="elementwise"),
            dict(kind="differential"), dict(sink="learned", positions="alibi", window=5),
            dict(kind="differential", sink="zero", gate="head", n_kv_heads=4)]


@pytest.mark.parametrize("kw", VARIANTS, ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()))
def test_sdpa_equals_manual_for_every_variant(kw):
    x = x_batch()
    torch.testing.assert_close(mha(**kw)(x), mha(backend="manual", **kw)(x), atol=1e-5,
                               rtol=1e-5)


def gpt(**att) -> GPT:
    torch.manual_seed(0)
    positions = att.pop("positions", "learned")
    return GPT(GPTConfig(vocab_size=40, context_length=16, emb_dim=32, n_heads=4, n_layers=2,
                         positions=positions, attention=AttentionConfig(**att))).eval()


@pytest.mark.parametrize("kw", [*VARIANTS, dict(kind="sigmoid", backend="manual"),
                                dict(kind="softpick", backend="manual", positions="rope"),
                                dict(kind="differential", backend="manual", positions="rope")],
                         ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()))
def test_greedy_generation_with_and_without_the_kv_cache_is_identical(kw):
    m = gpt(**kw)
    for p in m.parameters():  # untrained gates and sinks sit at symmetric points: move them
        p.data.add_(0.05 * torch.randn_like(p))
    idx = torch.randint(0, 40, (2, 5), generator=torch.Generator().manual_seed(3))
    a = generate(m, idx, 30, temperature=0, use_cache=True)  # 35 > 16: the context slides
    b = generate(m, idx, 30, temperature=0, use_cache=False)
    assert torch.equal(a, b)


@pytest.mark.parametrize("kw,match", [
    (dict(kind="sigmoid"), "kind=sigmoid needs the manual backend"),
    (dict(kind="sigmoid", backend="manual", sink="zero"), "sink=zero takes a softmax row"),
    (dict(kind="sigmoid", backend="manual", mask_impl="renorm"), "set mask_impl=neg_inf"),
    (dict(kind="softpick"), "kind=softpick needs the manual backend"),
    (dict(kind="softpick", backend="manual", sink="learned"), "sink=learned takes a softmax"),
    (dict(kind="softpick", backend="manual", mask_impl="renorm"), "softpick rows are not norm"),
    (dict(kind="differential", n_kv_heads=2), "set n_kv_heads=null"),
    (dict(sink="sinkhole"), "sink='sinkhole' is unknown .*none, zero, learned"),
    (dict(gate="always"), "gate='always' is unknown .*none, head, elementwise"),
    (dict(kind="linear"), "kind='linear' is unknown .*softmax, sigmoid, differential, softpick"),
])
def test_bad_variants_say_what_to_change(kw, match):
    with pytest.raises(UsageError, match=match):
        GPTConfig(vocab_size=40, context_length=16, emb_dim=32, n_heads=4, n_layers=1,
                  attention=AttentionConfig(**kw)).validate()


def test_differential_needs_an_even_number_of_heads():
    with pytest.raises(UsageError, match="n_heads=3 is odd"):
        GPTConfig(vocab_size=40, emb_dim=48, n_heads=3,
                  attention=AttentionConfig(kind="differential")).validate()


@pytest.mark.parametrize("kw", [dict(sink="zero"), dict(gate="head"), dict(kind="differential")])
def test_export_to_gpt2_refuses_what_gpt2_cannot_hold(kw):
    with pytest.raises(UsageError, match=f"{next(iter(kw))}={next(iter(kw.values()))}"):
        config_to_hf(gpt(**kw).cfg)


@pytest.mark.parametrize("overrides", [
    ["model.attention.sink=learned", "model.attention.gate=elementwise",
     "model.attention.kind=differential"],
    ["model.attention.kind=sigmoid", "model.attention.backend=manual",
     "model.attention.gate=head"],
], ids=["learned-sink-gate-differential", "sigmoid-head-gate"])
def test_the_variants_train_and_generate_with_and_without_the_cache(train_run, overrides):
    from tinygpt.weights.checkpoint import load_checkpoint
    from tinygpt.weights.complete import complete

    result, _ = train_run("trainer.max_steps=20", "trainer.val_check_interval=10", *overrides)
    assert math.isfinite(result.val_bpb)
    model, _ = load_checkpoint(str(result.last_checkpoint))
    assert model.cfg.attention.gate in ("elementwise", "head")
    ckpt = str(result.last_checkpoint)
    cached, uncached = (complete(ckpt, "The for", max_new_tokens=40, temperature=0.0,
                                 use_cache=c, device="cpu") for c in (True, False))
    assert cached == uncached and len(cached) > len("The for")
