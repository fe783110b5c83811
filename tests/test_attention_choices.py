"""Today's attention choices, each against a plain reference computation: rotary positions,
ALiBi, QK-norm, grouped-query attention, sliding windows, the score scale, soft-capping."""

import math

import pytest
import torch
import torch.nn.functional as F

from tinygpt.errors import UsageError
from tinygpt.model.attention import MultiHeadAttention
from tinygpt.model.generate import generate
from tinygpt.model.gpt import GPT, AttentionConfig, GPTConfig
from tinygpt.model.positions import alibi_slopes, apply_rope, rope_angles
from tinygpt.probes.attention import with_weights

D, CTX, HEADS = 32, 12, 4


def mha(**kw) -> MultiHeadAttention:
    torch.manual_seed(0)
    return MultiHeadAttention(D, D, CTX, HEADS, **kw).eval()


def x_batch(T=CTX, seed=1) -> torch.Tensor:
    return torch.randn(2, T, D, generator=torch.Generator().manual_seed(seed))


def test_rope_is_a_rotation_of_each_pair_by_its_position():
    d, base = 8, 10000.0
    x = torch.randn(5, d)
    cos, sin = rope_angles(d, torch.arange(5), base)
    got = apply_rope(x, cos, sin)
    for p in range(5):
        for i in range(d // 2):
            theta = p * base ** (-2 * i / d)
            a, b = x[p, i], x[p, i + d // 2]
            rot = torch.tensor([[math.cos(theta), -math.sin(theta)],
                                [math.sin(theta), math.cos(theta)]])
            expect = rot @ torch.stack([a, b])
            torch.testing.assert_close(got[p, [i, i + d // 2]], expect, atol=1e-5, rtol=1e-5)


def test_rope_scores_depend_on_the_distance_only():
    m = mha(positions="rope", backend="manual")
    x = x_batch(T=4)
    q0, k0, _ = m.project(x, past=0)
    q9, k9, _ = m.project(x, past=9)  # the same tokens, nine positions later
    torch.testing.assert_close(m.scores(q0, k0), m.scores(q9, k9), atol=1e-4, rtol=1e-4)


def test_alibi_bias_is_minus_slope_times_distance():
    slopes = alibi_slopes(8)
    torch.testing.assert_close(slopes, torch.tensor([2.0 ** -(i + 1) for i in range(8)]))
    assert len(alibi_slopes(6)) == 6 and alibi_slopes(6)[0] == 2 ** -2  # non powers of two
    m = mha(positions="alibi", backend="manual")
    bias = m.mask(0, 5, 5)  # what both kernels add to the scores: -inf above the diagonal
    for h in range(HEADS):
        for i in range(5):
            for j in range(5):
                want = -alibi_slopes(HEADS)[h].item() * abs(i - j) if j <= i else -math.inf
                assert bias[h, i, j].item() == pytest.approx(want, abs=1e-5)


def test_gqa_equals_mha_whose_key_and_value_heads_are_copies():
    gqa = mha(n_kv_heads=2, backend="manual")
    full = mha(backend="manual")
    hd, groups = D // HEADS, HEADS // 2
    w = gqa.qkv.weight.data
    q, k, v = w[:D], w[D:D + 2 * hd], w[D + 2 * hd:]
    rep = [h // groups for h in range(HEADS)]  # query head h reads kv head h // groups
    k_full = torch.cat([k[r * hd:(r + 1) * hd] for r in rep])
    v_full = torch.cat([v[r * hd:(r + 1) * hd] for r in rep])
    full.qkv.weight.data = torch.cat([q, k_full, v_full])
    full.out_proj.load_state_dict(gqa.out_proj.state_dict())
    x = x_batch()
    torch.testing.assert_close(gqa(x), full(x), atol=1e-5, rtol=1e-5)
    assert mha(n_kv_heads=HEADS).qkv.weight.shape == mha().qkv.weight.shape  # MHA: the same


def test_a_window_wider_than_the_context_is_full_attention_and_a_narrow_one_hides_the_rest():
    x = x_batch()
    torch.testing.assert_close(mha(window=CTX + 5)(x), mha()(x), atol=1e-6, rtol=1e-6)
    _, [w] = with_weights(mha(window=3, backend="manual"), x)
    rows, cols = torch.meshgrid(torch.arange(CTX), torch.arange(CTX), indexing="ij")
    outside = (cols > rows) | (rows - cols >= 3)
    assert (w[..., outside] == 0).all() and (w[..., ~outside] > 0).all()


def test_softcap_bounds_every_score():
    m = mha(softcap=2.0, backend="manual")
    with torch.no_grad():
        m.qkv.weight.mul_(50)  # scores far beyond the cap
    q, k, _ = m.project(x_batch())
    s = m.scores(q, k)
    assert s.abs().max() <= 2.0 and s.abs().max() > 1.9


def test_qk_norm_gives_each_head_unit_rms_queries_and_keys():
    m = mha(qk_norm="rms", backend="manual")
    with torch.no_grad():
        m.qkv.weight.mul_(30)
    q, k, _ = m.project(x_batch())
    for t in (q, k):
        torch.testing.assert_close(t.pow(2).mean(-1).sqrt(), torch.ones(t.shape[:-1]),
                                   atol=1e-3, rtol=1e-3)


@pytest.mark.parametrize("kw,factor", [
    (dict(), 1 / math.sqrt(D // HEADS)),
    (dict(scale_type="fixed", scale_value=0.12), 0.12),
    (dict(scale_type="learned_layer"), 1 / math.sqrt(D // HEADS)),  # starts at 1/sqrt(d)
    (dict(scale_type="learned_head", scale_value=0.3), 1 / math.sqrt(D // HEADS)),  # ignored
    (dict(scale=False), 1.0),
])
def test_the_score_scale_multiplies_the_raw_dot_products(kw, factor):
    m = mha(backend="manual", **kw)
    q, k, _ = m.project(x_batch())
    torch.testing.assert_close(m.scores(q, k), (q @ k.transpose(-2, -1)) * factor)


def test_a_learned_scale_is_trained():
    for kind, shape in (("learned_layer", ()), ("learned_head", (HEADS,))):
        m = mha(scale_type=kind)
        assert m.learned_scale.shape == shape
        m(x_batch()).sum().backward()
        assert m.learned_scale.grad is not None and m.learned_scale.grad.abs().sum() > 0


CHOICES = [
    dict(positions="rope"), dict(positions="alibi"), dict(qk_norm="rms"),
    dict(qk_norm="layer"), dict(n_kv_heads=1), dict(n_kv_heads=2), dict(window=4),
    dict(scale_type="learned_head"), dict(scale_type="fixed", scale_value=0.12),
    dict(positions="rope", n_kv_heads=2, window=5, qk_norm="rms"),
]


@pytest.mark.parametrize("kw", CHOICES, ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()))
def test_sdpa_equals_manual_for_every_choice(kw):
    x = x_batch()
    torch.testing.assert_close(mha(**kw)(x), mha(backend="manual", **kw)(x), atol=1e-5,
                               rtol=1e-5)


def gpt(positions="learned", **att) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=40, context_length=16, emb_dim=32, n_heads=4, n_layers=2,
                         positions=positions, attention=AttentionConfig(**att))).eval()


MODELS = [dict(positions="rope"), dict(positions="alibi"), dict(positions="none"),
          dict(qk_norm="rms"), dict(n_kv_heads=1), dict(window=5),
          dict(scale_type="learned_layer"), dict(softcap=5.0, backend="manual"),
          dict(positions="alibi", backend="manual", window=6, n_kv_heads=2)]


@pytest.mark.parametrize("kw", MODELS, ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()))
def test_greedy_generation_with_and_without_the_kv_cache_is_identical(kw):
    m = gpt(**kw)
    idx = torch.randint(0, 40, (2, 5), generator=torch.Generator().manual_seed(3))
    a = generate(m, idx, 30, temperature=0, use_cache=True)  # 35 > 16: the context slides
    b = generate(m, idx, 30, temperature=0, use_cache=False)
    assert torch.equal(a, b)


def test_the_kv_cache_shrinks_with_fewer_kv_heads():
    assert gpt().cfg.kv_cache_bytes_per_token() == 2 * 2 * 4 * 8 * 4
    assert gpt(n_kv_heads=1).cfg.kv_cache_bytes_per_token() == 2 * 2 * 1 * 8 * 4
    m = gpt(n_kv_heads=1)
    cache = m.new_cache()
    m.next_logits(torch.zeros(1, 6, dtype=torch.long), cache)
    assert cache[0].k.shape == (1, 1, 6, 8)  # one kv head stored, not four


def test_positions_other_than_learned_run_past_the_training_length():
    long = torch.zeros(1, 32, dtype=torch.long)  # twice context_length
    for positions in ("rope", "alibi", "none"):
        assert gpt(positions).hidden(long).shape == (1, 32, 32)
    with pytest.raises(UsageError, match="longer than context_length"):
        gpt("learned").hidden(long)


@pytest.mark.parametrize("kw,match", [
    (dict(n_kv_heads=3), "n_kv_heads=3 must divide n_heads=4 .*1, 2, 4"),
    (dict(window=0), "window=0 must be at least 1"),
    (dict(softcap=5.0), "softcap needs the manual backend"),
    (dict(softcap=-1.0, backend="manual"), "softcap=-1.0 must be positive"),
    (dict(scale=False, scale_type="learned_head"), "needs scale=true"),
    (dict(scale_type="fixed"), "needs scale_value"),
    (dict(qk_norm="batch"), "qk_norm='batch' is unknown .*none, rms, layer"),
])
def test_bad_choices_say_what_to_change(kw, match):
    with pytest.raises(UsageError, match=match):
        GPTConfig(vocab_size=40, context_length=16, emb_dim=32, n_heads=4, n_layers=1,
                  attention=AttentionConfig(**kw)).validate()


def test_rope_needs_an_even_head_dimension():
    with pytest.raises(UsageError, match="d_head=9 is odd"):
        GPTConfig(vocab_size=40, emb_dim=36, n_heads=4, positions="rope").validate()


def test_alibi_works_with_both_backends():
    x = torch.randint(0, 40, (1, 10))
    torch.testing.assert_close(gpt("alibi")(x), gpt("alibi", backend="manual")(x), atol=1e-5,
                               rtol=1e-5)


def test_manual_reference_matches_a_plain_softmax_for_all_choices_at_once():
    m = mha(backend="manual", positions="alibi", n_kv_heads=2, window=4, qk_norm="rms",
            softcap=3.0, scale_type="learned_head")
    x = x_batch()
    q, k, v = m.project(x)
    s = m.scores(q, k) + m.mask(0, CTX, CTX)  # ALiBi's penalty, and -inf outside the window
    expect = F.softmax(s, -1) @ v.repeat_interleave(2, dim=1)
    out = m.out_proj(expect.transpose(1, 2).reshape(2, CTX, D))
    torch.testing.assert_close(m(x), out, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("overrides", [
    ["model.positions=rope", "model.attention.qk_norm=rms", "model.attention.n_kv_heads=1",
     "model.attention.window=8", "model.attention.scale_type=learned_head"],
    ["model.positions=alibi", "model.attention.backend=manual", "model.attention.softcap=20",
     "model.attention.scale_type=fixed", "model.attention.scale_value=0.12",
     "model.attention.qk_norm=layer", "model.attention.n_kv_heads=1"],
], ids=["rope-qknorm-mqa-window-learned", "alibi-manual-softcap-fixed-layernorm"])
def test_the_toggles_train_and_generate_with_and_without_the_cache(train_run, overrides):
    from tinygpt.lab.report.events import scalars_by_step
    from tinygpt.weights.complete import complete

    result, _ = train_run("model.n_heads=2", "trainer.max_steps=20",
                          "trainer.val_check_interval=10", *overrides)
    assert math.isfinite(result.val_bpb)
    for tag in ("val/bpb_2x", "val/bpb_2x_ref", "watch/attention/max_score/layer_0",
                "watch/attention/kv_cache_bytes_per_token",
                "watch/attention/generate_tokens_per_sec"):
        assert scalars_by_step(result.run_dir, tag), tag
    ckpt = str(result.last_checkpoint)
    cached, uncached = (complete(ckpt, "The for", max_new_tokens=40, temperature=0.0,
                                 use_cache=c, device="cpu") for c in (True, False))
    assert cached == uncached and len(cached) > len("The for")


def test_the_longer_context_reference_scores_the_same_tokens_at_the_trained_length():
    import numpy as np

    from tinygpt.data.windows import TokenWindows
    from tinygpt.probes.evaluate import longer_context, score_windows

    model = gpt("rope").eval()
    ids = np.random.default_rng(0).integers(0, 40, size=200)
    token_bytes = torch.ones(40, dtype=torch.long)
    long, ref = longer_context(model, ids, token_bytes, factor=2)
    # the long windows (32 tokens) cover 6 x 32 = 12 windows of the trained 16, side by side
    same = score_windows(model, TokenWindows(ids[: 6 * 32 + 1], 16, 16), token_bytes)
    assert ref.tokens == same.tokens == long.tokens == 192
    assert ref.nats_per_token == pytest.approx(same.nats_per_token, rel=1e-6)
    assert abs(long.nats_per_token - ref.nats_per_token) > 1e-4  # the context did change
