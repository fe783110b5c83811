import pytest
import torch

from tinygpt.model.generate import generate, sample_next
from tinygpt.model.gpt import GPT, AttentionConfig, GPTConfig


def model(ctx=16, **att) -> GPT:
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=40, context_length=ctx, emb_dim=32, n_heads=4, n_layers=2,
                    attention=AttentionConfig(**att))
    return GPT(cfg).eval()


@pytest.mark.parametrize("att", [dict(), dict(backend="manual", mask_impl="renorm")])
def test_greedy_with_and_without_cache_identical_past_context(att):
    m = model(**att)
    idx = torch.randint(0, 40, (2, 5))
    n = 30  # 5 + 30 > 16: the window slides
    a = generate(m, idx, n, temperature=0, use_cache=True)
    b = generate(m, idx, n, temperature=0, use_cache=False)
    assert a.shape == (2, 35)
    assert torch.equal(a, b)


def test_sliding_window_uses_the_last_context_tokens():
    m = model()
    idx = torch.randint(0, 40, (1, 20))  # longer than the context already
    out = generate(m, idx, 1, temperature=0)
    expected = m(idx[:, -16:])[:, -1].argmax(-1)
    assert out[0, -1] == expected[0]


def test_sampling_is_reproducible_with_a_generator():
    m = model()
    idx = torch.zeros(1, 1, dtype=torch.long)
    a = generate(m, idx, 10, top_k=5, generator=torch.Generator().manual_seed(3))
    b = generate(m, idx, 10, top_k=5, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_top_k_and_top_p_keep_only_the_likely_tokens():
    logits = torch.tensor([[4.0, 3.0, 0.0, -1.0, -2.0]])
    g = torch.Generator().manual_seed(0)
    ks = {sample_next(logits, top_k=2, generator=g).item() for _ in range(200)}
    assert ks == {0, 1}
    # p(0)=0.71, p(1)=0.26: top_p=0.5 keeps token 0 alone, 0.9 keeps {0, 1}
    assert {sample_next(logits, top_p=0.5, generator=g).item() for _ in range(100)} == {0}
    assert {sample_next(logits, top_p=0.9, generator=g).item() for _ in range(300)} == {0, 1}


def test_eos_stops_generation():
    m = model()
    idx = torch.zeros(1, 1, dtype=torch.long)
    first = generate(m, idx, 1, temperature=0)[0, -1].item()
    out = generate(m, idx, 10, temperature=0, eos_token=first)
    assert out.shape == (1, 2)


def test_non_causal_model_generates_without_cache():
    m = model(causal=False)
    idx = torch.randint(0, 40, (1, 4))
    assert torch.equal(generate(m, idx, 6, temperature=0),
                       generate(m, idx, 6, temperature=0, use_cache=False))


@pytest.mark.parametrize(
    "kw,match",
    [(dict(temperature=-1), "temperature"), (dict(top_k=0), "top_k"), (dict(top_p=0.0), "top_p"),
     (dict(top_p=1.5), "top_p")],
)
def test_bad_sampling_settings(kw, match):
    with pytest.raises(ValueError, match=match):
        generate(model(), torch.zeros(1, 1, dtype=torch.long), 1, **kw)
