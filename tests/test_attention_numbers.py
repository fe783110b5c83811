"""Attention's numbers held still: the default model's logits and every variant's, on both
backends where a variant runs on both, through the full forward and the KV cache, equal to what
the code computed before attention was restructured (tests/data/attention_reference.pt, written
by `python tests/test_attention_numbers.py` at commit 0ba68f1; never rewrite it to make this
pass)."""

from pathlib import Path

import pytest
import torch

from tinygpt.model.gpt import GPT, GPTConfig
from tinygpt.probes.attention import with_weights

REFERENCE = Path(__file__).parent / "data" / "attention_reference.pt"
SHAPE = dict(vocab_size=29, context_length=16, emb_dim=32, n_heads=4, n_layers=2)

# name -> (model settings, attention settings); each on both backends unless it needs manual.
MANUAL_ONLY = {"renorm", "softcap", "sigmoid", "sink_zero_renorm"}
VARIANTS: dict[str, tuple[dict, dict]] = {
    "default": ({}, {}),
    "no_scale": ({}, {"scale": False}),
    "no_causal": ({}, {"causal": False}),
    "renorm": ({}, {"mask_impl": "renorm"}),
    "fixed_scale": ({}, {"scale_type": "fixed", "scale_value": 0.12}),
    "learned_layer": ({}, {"scale_type": "learned_layer"}),
    "learned_head": ({}, {"scale_type": "learned_head"}),
    "qk_rms": ({}, {"qk_norm": "rms"}),
    "qk_layer": ({}, {"qk_norm": "layer"}),
    "mqa": ({}, {"n_kv_heads": 1}),
    "gqa": ({}, {"n_kv_heads": 2}),
    "window": ({}, {"window": 4}),
    "window_bidirectional": ({}, {"window": 3, "causal": False}),
    "softcap": ({}, {"softcap": 2.0}),
    "sink_zero": ({}, {"sink": "zero"}),
    "sink_zero_renorm": ({}, {"sink": "zero", "mask_impl": "renorm"}),
    "sink_learned": ({}, {"sink": "learned"}),
    "gate_head": ({}, {"gate": "head"}),
    "gate_elementwise": ({}, {"gate": "elementwise"}),
    "sigmoid": ({}, {"kind": "sigmoid"}),
    "differential": ({}, {"kind": "differential"}),
    "rope": ({"positions": "rope"}, {}),
    "alibi": ({"positions": "alibi"}, {}),
    "nope": ({"positions": "none"}, {}),
    "alibi_window_sink": ({"positions": "alibi"}, {"window": 5, "sink": "learned"}),
    "rope_gqa_qknorm": ({"positions": "rope"}, {"n_kv_heads": 2, "qk_norm": "rms"}),
    "rope_differential_gate_sink": ({"positions": "rope"}, {"kind": "differential",
                                                            "gate": "head", "sink": "learned"}),
    "learned_head_alibi": ({"positions": "alibi"}, {"scale_type": "learned_head"}),
    "no_bias_gelu_exact": ({"bias": False, "activation": "gelu_exact", "qkv_bias": True}, {}),
    "relu2_zero_init_softcap": ({"activation": "relu2", "zero_init": True,
                                 "logit_softcap": 3.0}, {}),
}
CASES = [(name, backend) for name in VARIANTS for backend in ("sdpa", "manual")
         if backend == "manual" or name not in MANUAL_ONLY]


def build(name: str, backend: str) -> GPT:
    """The variant's model with every parameter moved off its init (so learned scales, sink
    logits and gates matter), the same way each time."""
    model_kw, attention = VARIANTS[name]
    torch.manual_seed(0)
    model = GPT(GPTConfig(**SHAPE, **model_kw, attention={**attention, "backend": backend}))
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for _, p in sorted(model.named_parameters()):
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model.eval()


def outputs(name: str, backend: str) -> dict[str, torch.Tensor]:
    """Full-forward logits on a batch, and the logits of each step generated with the cache."""
    model = build(name, backend)
    idx = torch.randint(0, SHAPE["vocab_size"], (2, 10), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        full = model(idx)
        cache = model.new_cache()
        steps = [model.next_logits(idx[:, :5], cache)]
        steps += [model.next_logits(idx[:, t : t + 1], cache) for t in range(5, 10)]
        out = {"logits": full, "cached": torch.stack(steps, 1)}
        if backend == "manual":
            _, weights = with_weights(model, idx)
            out["weights"] = torch.stack(weights)[:, 0]  # the first sequence
    return {k: v.clone() for k, v in out.items()}  # a view would save its whole storage


@pytest.fixture(scope="module")
def reference() -> dict:
    return torch.load(REFERENCE, weights_only=True)


@pytest.mark.parametrize("name,backend", CASES, ids=[f"{n}-{b}" for n, b in CASES])
def test_every_variant_computes_what_it_did_before(reference, name, backend):
    expected = reference[f"{name}/{backend}"]
    got = outputs(name, backend)
    assert set(got) == set(expected)
    for key, value in expected.items():
        assert (got[key] - value).abs().max().item() <= 1e-6, key


def test_the_reference_covers_every_case(reference):
    assert set(reference) == {f"{n}/{b}" for n, b in CASES}


if __name__ == "__main__":
    torch.save({f"{n}/{b}": outputs(n, b) for n, b in CASES}, REFERENCE)
