import math

import pytest
import torch

from tinygpt.model.gpt import GPT, AttentionConfig, GPTConfig, attention_overrides
from tinygpt.probes.attention import attention_stats, qk_grad_norms, row_entropy, uniform_entropy


def gpt(**attention) -> GPT:
    cfg = GPTConfig(vocab_size=50, context_length=16, emb_dim=32, n_heads=4, n_layers=2,
                    attention=AttentionConfig(**attention))
    return GPT(cfg)


def test_entropy_of_a_uniform_causal_row_is_log_t_plus_1():
    T = 9
    w = torch.ones(T, T).tril()
    w = w / w.sum(-1, keepdim=True)  # row t: 1/(t+1) on keys 0..t
    expected = torch.log(torch.arange(1, T + 1, dtype=torch.float))
    torch.testing.assert_close(row_entropy(w), expected)
    assert uniform_entropy(T) == pytest.approx(expected.mean().item())
    assert uniform_entropy(T, causal=False) == pytest.approx(math.log(T))


def test_entropy_of_a_one_hot_row_is_zero():
    w = torch.eye(6)[[3, 0, 5]]
    assert torch.equal(row_entropy(w), torch.zeros(3))


def test_zero_queries_and_keys_give_uniform_attention_and_no_score_spread():
    model = gpt()
    for block in model.blocks:
        with torch.no_grad():
            block.attn.qkv.weight[:64].zero_()  # W_q and W_k: every score is 0
    x = torch.randint(0, 50, (3, 12))
    for st in attention_stats(model, x):
        torch.testing.assert_close(st.entropy, torch.full((4,), uniform_entropy(12)))
        mean_uniform_max = sum(1 / (t + 1) for t in range(12)) / 12
        torch.testing.assert_close(st.max_weight, torch.full((4,), mean_uniform_max))
        assert torch.all(st.score_std == 0)


def test_score_spread_without_scaling_is_sqrt_d_head_times_larger():
    scaled, unscaled = gpt(scale=True), gpt(scale=False)
    unscaled.load_state_dict(scaled.state_dict())
    x = torch.randint(0, 50, (2, 16))
    # Layer 0 only: its input is the same in both models (later layers' inputs are not).
    a, b = attention_stats(scaled, x)[0], attention_stats(unscaled, x)[0]
    torch.testing.assert_close(b.score_std / a.score_std, torch.full((4,), math.sqrt(8)))


def test_stats_leave_backend_mode_and_hooks_as_they_were():
    model = gpt().train()
    attention_stats(model, torch.randint(0, 50, (1, 8)))
    assert model.training
    assert all(b.attn.switches.backend == "sdpa" and not b.attn._forward_pre_hooks
               for b in model.blocks)


def test_qk_grad_norms_are_the_query_and_key_thirds_of_the_fused_weight():
    model = gpt()
    assert qk_grad_norms(model) is None
    x = torch.randint(0, 50, (2, 10))
    model.loss(x, x).backward()
    norms = qk_grad_norms(model)
    for block, (g_q, g_k) in zip(model.blocks, norms, strict=True):
        grad = block.attn.qkv.weight.grad
        assert g_q == pytest.approx(grad[:32].norm().item())
        assert g_k == pytest.approx(grad[32:64].norm().item())
    # The first third really is W_q: zeroing the keys (every score 0) leaves W_q no gradient.
    model.zero_grad()
    with torch.no_grad():
        for block in model.blocks:
            block.attn.qkv.weight[32:64].zero_()
    model.loss(x, x).backward()
    assert all(g_q == 0 for g_q, _ in qk_grad_norms(model))


def test_causal_override_changes_a_noncausal_models_loss_and_is_undone():
    x, y = torch.randint(0, 50, (2, 16)), torch.randint(0, 50, (2, 16))
    model = gpt(causal=False).eval()
    with attention_overrides(model, causal=True):
        masked = model.loss(x, y).item()
    assert masked != pytest.approx(model.loss(x, y).item(), abs=1e-6)
    assert all(not b.attn.switches.causal for b in model.blocks)
