import itertools
import math

import pytest
import torch

from tinygpt.model.attention import CPU_BF16_SDPA_MIN_KEYS, MultiHeadAttention, sdpa
from tinygpt.model.forms import (
    CausalAttention,
    MultiHeadAttentionWrapper,
    SelfAttentionLinear,
    SelfAttentionParams,
    simple_self_attention,
)
from tinygpt.model.kv_cache import KVCache
from tinygpt.probes.attention import with_weights

D, CTX, HEADS = 16, 12, 4
COMBOS = list(itertools.product([True, False], [True, False]))  # (scale, causal)


def mha(**kw) -> MultiHeadAttention:
    torch.manual_seed(0)
    return MultiHeadAttention(D, D, CTX, HEADS, **kw).eval()


def x_batch(T=CTX, seed=1) -> torch.Tensor:
    return torch.randn(2, T, D, generator=torch.Generator().manual_seed(seed))


CAUSAL_VARIANTS = [
    dict(backend="sdpa"),
    dict(backend="manual", mask_impl="neg_inf"),
    dict(backend="manual", mask_impl="renorm"),
]


@pytest.mark.parametrize("kw", CAUSAL_VARIANTS)
def test_causal_output_ignores_the_future(kw):
    m, x = mha(causal=True, **kw), x_batch()
    t = 5
    y = x.clone()
    y[:, t + 1 :] = torch.randn_like(y[:, t + 1 :])
    a, b = m(x), m(y)
    torch.testing.assert_close(a[:, : t + 1], b[:, : t + 1], atol=1e-6, rtol=0)
    assert not torch.allclose(a[:, t + 1 :], b[:, t + 1 :])


@pytest.mark.parametrize("backend", ["sdpa", "manual"])
def test_non_causal_output_sees_the_future(backend):
    m, x = mha(causal=False, backend=backend), x_batch()
    y = x.clone()
    y[:, -1] += 1.0
    assert not torch.allclose(m(x)[:, 0], m(y)[:, 0])


def test_renorm_equals_neg_inf():
    x = x_batch()
    a, [wa] = with_weights(mha(backend="manual", mask_impl="neg_inf"), x)
    b, [wb] = with_weights(mha(backend="manual", mask_impl="renorm"), x)
    torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    torch.testing.assert_close(wa, wb, atol=1e-6, rtol=0)


@pytest.mark.parametrize("scale,causal", COMBOS)
def test_sdpa_equals_manual(scale, causal):
    x = x_batch()
    a = mha(scale=scale, causal=causal, backend="sdpa")(x)
    b = mha(scale=scale, causal=causal, backend="manual")(x)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


@pytest.mark.parametrize("backend", ["sdpa", "manual"])
def test_no_scale_equals_scale_with_query_times_sqrt_dhead(backend):
    x = x_batch()
    unscaled, scaled = mha(scale=False, backend=backend), mha(scale=True, backend=backend)
    with torch.no_grad():  # multiply W_q (the first third of the fused projection) by sqrt(d_head)
        scaled.qkv.weight[:D] *= math.sqrt(D // HEADS)
    torch.testing.assert_close(unscaled(x), scaled(x), atol=1e-5, rtol=0)
    assert not torch.allclose(unscaled(x), mha(scale=True, backend=backend)(x), atol=1e-4)


@pytest.mark.parametrize("mask_impl", ["neg_inf", "renorm"])
def test_weights_rows_sum_to_one_and_masked_entries_are_zero(mask_impl):
    _, [w] = with_weights(mha(backend="manual", mask_impl=mask_impl), x_batch())
    assert w.shape == (2, HEADS, CTX, CTX)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, HEADS, CTX))
    future = torch.ones(CTX, CTX, dtype=torch.bool).triu(1)
    assert (w[..., future] == 0).all()
    assert (w[..., ~future] > 0).all()


def test_dropout_acts_on_weights_in_training_only():
    for backend in ("sdpa", "manual"):
        m, x = mha(backend=backend, dropout=0.5), x_batch()
        torch.testing.assert_close(m(x), m(x))  # eval: deterministic
        m.train()
        torch.manual_seed(0)
        a = m(x)
        torch.manual_seed(1)
        assert not torch.allclose(a, m(x))


def test_kv_cache_matches_full_forward():
    for backend, mask_impl in [("sdpa", "neg_inf"), ("manual", "renorm")]:
        m, x = mha(backend=backend, mask_impl=mask_impl), x_batch()
        full = m(x)
        cache = KVCache()
        parts = [m(x[:, :5], cache), m(x[:, 5:8], cache)]
        parts += [m(x[:, t : t + 1], cache) for t in range(8, CTX)]
        torch.testing.assert_close(torch.cat(parts, 1), full, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "kw,match",
    [
        (dict(d_out=15), "divisible"),
        (dict(mask_impl="renorm", backend="sdpa"), "manual"),
        (dict(mask_impl="zeros"), "mask_impl"),
        (dict(backend="flash"), "backend"),
    ],
)
def test_bad_options_raise_value_error(kw, match):
    args = dict(d_in=D, d_out=D, context_length=CTX, num_heads=HEADS) | kw
    with pytest.raises(ValueError, match=match):
        MultiHeadAttention(**args)


def test_only_the_manual_kernel_shows_its_weights():
    # the fused kernel never forms them: nothing passes its hook point
    out, weights = with_weights(mha(backend="sdpa"), x_batch())
    assert weights == [] and out.shape == (2, CTX, D)
    assert len(with_weights(mha(backend="manual"), x_batch())[1]) == 1


# --- the seed's progression -----------------------------------------------------------------


def test_simple_self_attention_rows_are_convex_mixes():
    x = torch.rand(6, 3)
    out = simple_self_attention(x)
    w = torch.softmax(x @ x.T, dim=-1)
    torch.testing.assert_close(out, w @ x)


def test_parameter_and_linear_forms_agree_once_weights_copied():
    torch.manual_seed(0)
    p, lin = SelfAttentionParams(3, 2), SelfAttentionLinear(3, 2)
    with torch.no_grad():
        p.W_query.copy_(lin.W_query.weight.T)
        p.W_key.copy_(lin.W_key.weight.T)
        p.W_value.copy_(lin.W_value.weight.T)
    x = torch.rand(6, 3)
    torch.testing.assert_close(p(x), lin(x))


def test_causal_attention_equals_one_head_module():
    torch.manual_seed(0)
    single = CausalAttention(D, D, CTX).eval()
    m = MultiHeadAttention(D, D, CTX, num_heads=1).eval()
    with torch.no_grad():
        m.qkv.weight.copy_(
            torch.cat([single.W_query.weight, single.W_key.weight, single.W_value.weight])
        )
        m.out_proj.weight.copy_(torch.eye(D))
        m.out_proj.bias.zero_()
    x = x_batch()
    torch.testing.assert_close(single(x), m(x), atol=1e-6, rtol=0)


def test_wrapper_equals_multi_head_attention_once_weights_copied():
    torch.manual_seed(0)
    wrapper = MultiHeadAttentionWrapper(D, D, CTX, HEADS, qkv_bias=True).eval()
    m = MultiHeadAttention(D, D, CTX, HEADS, qkv_bias=True).eval()
    heads = wrapper.heads
    with torch.no_grad():
        for j, name in enumerate(["W_query", "W_key", "W_value"]):
            rows = slice(j * D, (j + 1) * D)  # each third of the fused projection, head by head
            m.qkv.weight[rows] = torch.cat([getattr(h, name).weight for h in heads])
            m.qkv.bias[rows] = torch.cat([getattr(h, name).bias for h in heads])
        m.out_proj.weight.copy_(torch.eye(D))  # the wrapper only concatenates
        m.out_proj.bias.zero_()
    x = x_batch()
    torch.testing.assert_close(wrapper(x), m(x), atol=1e-6, rtol=0)


def test_short_cpu_bf16_training_attention_runs_its_kernel_in_float32():
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 4, 64, 32).bfloat16().requires_grad_() for _ in range(3))
    with torch.autocast("cpu", dtype=torch.bfloat16):  # as a bf16-mixed training step runs it
        out = sdpa(q, k, v, is_causal=True)
    assert out.dtype == torch.bfloat16
    f32 = torch.nn.functional.scaled_dot_product_attention(
        q.float(), k.float(), v.float(), is_causal=True)
    torch.testing.assert_close(out, f32.bfloat16(), rtol=0, atol=0)  # the float32 kernel's
    out.float().sum().backward()
    assert q.grad.dtype == torch.bfloat16 and q.grad.abs().sum() > 0
    with torch.no_grad():  # inference, and long sequences, keep the bf16 kernel
        bf16 = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        assert torch.equal(sdpa(q, k, v, is_causal=True), bf16)
    n = CPU_BF16_SDPA_MIN_KEYS
    q, k, v = (torch.randn(1, 1, n, 8).bfloat16() for _ in range(3))
    torch.testing.assert_close(
        sdpa(q, k, v, is_causal=True),
        torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True),
        rtol=0, atol=0)


# --- the shape of the module ------------------------------------------------------------------

def test_the_default_path_reads_top_to_bottom():
    # as plain as nanoGPT's: few branches, and forward reaches the fused kernel in two steps
    import ast
    import inspect
    import sys

    import tinygpt.model.attention as attention
    from tinygpt.model.gpt import GPT, Block

    tree = ast.parse(inspect.getsource(MultiHeadAttention))
    branches = sum(isinstance(n, ast.If | ast.IfExp) for n in ast.walk(tree))
    assert branches <= 25, branches  # 49 before the lab's switches became steps of their own
    stack = []

    def kernel(*args, **kwargs):
        frame, names = sys._getframe(1), []
        while frame is not None:
            if frame.f_code.co_filename == attention.__file__:
                names.append(frame.f_code.co_name)
            frame = frame.f_back
        stack.append(names[::-1])
        return real(*args, **kwargs)

    real = torch.nn.functional.scaled_dot_product_attention
    torch.nn.functional.scaled_dot_product_attention = kernel
    try:
        mha()(x_batch())
    finally:
        torch.nn.functional.scaled_dot_product_attention = real
    assert stack == [["forward", "fused", "sdpa"]]
    for f in (MultiHeadAttention.forward, Block.forward, GPT.forward, GPT.hidden):
        assert "return_weights" not in inspect.signature(f).parameters  # the hook point instead
    params = {p for _, f in inspect.getmembers(MultiHeadAttention, inspect.isfunction)
              for p in inspect.signature(f).parameters}
    assert "heads" not in params  # no variant threads a parameter through the others
