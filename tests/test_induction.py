"""Induction and previous-token scores: exact on hand-built attention patterns, and the
in-context loss drop read from the model's own losses."""

import torch
import torch.nn.functional as F

from tinygpt.model.gpt import GPT, GPTConfig
from tinygpt.probes.induction import head_scores, induction_scores, repeated_tokens

L = 6


def pattern(offset: int) -> torch.Tensor:
    """(1, 1, 2L, 2L) weights: each query t puts all its mass on key t - offset (or on 0)."""
    w = torch.zeros(1, 1, 2 * L, 2 * L)
    for t in range(2 * L):
        w[0, 0, t, max(0, t - offset)] = 1.0
    return w


def test_a_head_that_copies_from_the_previous_occurrence_scores_one():
    induction, previous = head_scores([pattern(L - 1)], L)  # key t - L + 1: after the first copy
    assert induction.item() == 1.0 and previous.item() < 0.1


def test_a_previous_token_head_scores_one_on_previous_and_zero_on_induction():
    induction, previous = head_scores([pattern(1), pattern(L - 1)], L)
    assert previous[0].item() == 1.0 and induction[0].item() == 0.0
    assert induction[1].item() == 1.0  # one row per layer


def test_uniform_attention_scores_the_mean_of_one_over_the_keys_seen():
    w = torch.tril(torch.ones(2 * L, 2 * L))
    w = (w / w.sum(-1, keepdim=True))[None, None]
    induction, _ = head_scores([w], L)
    expect = sum(1 / (t + 1) for t in range(L, 2 * L)) / L
    assert abs(induction.item() - expect) < 1e-6


def test_repeated_tokens_are_a_segment_and_its_copy():
    idx = repeated_tokens(50, L, batch=3, seed=1)
    assert idx.shape == (3, 2 * L) and torch.equal(idx[:, :L], idx[:, L:])
    assert not torch.equal(idx[0], idx[1])  # each row its own segment


def test_the_in_context_drop_is_the_first_copys_loss_minus_the_copys():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=30, context_length=2 * L, emb_dim=16, n_heads=2, n_layers=2))
    idx = repeated_tokens(30, L, batch=4)
    s = induction_scores(model, idx)
    with torch.no_grad():
        logits = model.eval()(idx)
    ce = F.cross_entropy(logits[:, :-1].transpose(1, 2), idx[:, 1:], reduction="none")
    assert abs(s.first_loss - ce[:, : L - 1].mean().item()) < 1e-5
    assert abs(s.second_loss - ce[:, L:].mean().item()) < 1e-5
    assert s.in_context_drop == s.first_loss - s.second_loss
    assert s.induction.shape == (2, 2) and s.previous.shape == (2, 2)


def test_a_start_token_shifts_every_query_and_key_by_one():
    idx = repeated_tokens(50, L, batch=2, seed=1, bos=49)
    assert idx.shape == (2, 1 + 2 * L) and (idx[:, 0] == 49).all()
    w = torch.zeros(1, 1, 2 * L + 1, 2 * L + 1)
    for t in range(2 * L + 1):
        w[0, 0, t, max(0, t - L + 1)] = 1.0
    induction, _ = head_scores([w], L, start=1)
    assert induction.item() == 1.0
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=50, context_length=2 * L + 1, emb_dim=16, n_heads=2,
                          n_layers=1))
    s = induction_scores(model, idx)
    with torch.no_grad():
        logits = model.eval()(idx)
    ce = F.cross_entropy(logits[:, :-1].transpose(1, 2), idx[:, 1:], reduction="none")
    assert abs(s.second_loss - ce[:, 1 + L:].mean().item()) < 1e-5
    assert abs(s.first_loss - ce[:, 1:L].mean().item()) < 1e-5
