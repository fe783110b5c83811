"""Lab IV's measurements of the induction circuit against hand-built cases: the copy windows, the
copy and rest losses, the induction and previous-token scores, and head ablation."""

import torch
import torch.nn.functional as F

from tinygpt.data.config import Synthetic
from tinygpt.data.windows import copied_chunks
from tinygpt.model.gpt import GPT, GPTConfig
from tinygpt.probes.circuit import (
    ablated,
    ablation_check,
    circuit_scores,
    copy_losses,
    copy_windows,
)

T = 24
TASK = Synthetic(kind="copies", share=1.0, prefix=6, shortest=2, longest=5)


def test_copied_chunks_follow_an_earlier_occurrence_at_no_fixed_distance():
    g = torch.Generator().manual_seed(0)
    distances = set()
    for _ in range(20):
        x, copied = copied_chunks(g, 1000, T, TASK)
        assert not copied[: TASK.prefix + 1].any() and copied.float().mean() > 0.4
        for t in torch.nonzero(copied).flatten().tolist():
            # the token before it occurred earlier, followed by this token
            earlier = [j for j in range(1, t) if x[j - 1] == x[t - 1] and x[j] == x[t]]
            assert earlier, t
            distances.add(t - earlier[-1])
    assert len(distances) > 5  # no fixed offset finds the copy


def test_copy_windows_are_a_fixed_probe():
    a, ca = copy_windows(50, T, TASK, n=5, seed=1)
    b, cb = copy_windows(50, T, TASK, n=5, seed=1)
    assert a.shape == ca.shape == (5, T) and torch.equal(a, b) and torch.equal(ca, cb)


def test_copy_losses_split_the_targets_into_copies_and_the_rest():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=30, context_length=T, emb_dim=16, n_heads=2, n_layers=1))
    windows, copied = copy_windows(30, T + 1, TASK, n=6)
    got = copy_losses(model, windows, copied)
    with torch.no_grad():
        ce = F.cross_entropy(model.eval()(windows[:, :-1]).transpose(1, 2), windows[:, 1:],
                             reduction="none")
    assert abs(got.copy - ce[copied[:, 1:]].mean().item()) < 1e-5
    assert abs(got.rest - ce[~copied[:, 1:]].mean().item()) < 1e-5


def one_head(tokens: torch.Tensor, key) -> torch.Tensor:
    """Weights (B, 1 head, T, T) with all of query t's mass on key(t, row of tokens)."""
    B, n = tokens.shape
    w = torch.zeros(B, 1, n, n)
    for b in range(B):
        for t in range(n):
            w[b, 0, t, key(t, tokens[b])] = 1.0
    return w


def induction_key(t: int, x: torch.Tensor) -> int:
    """The key after the latest earlier occurrence of token t (t itself if none)."""
    return next((j for j in range(t, 0, -1) if x[j - 1] == x[t]), t)


def test_an_induction_pattern_and_a_previous_token_pattern_each_score_one():
    windows, copied = copy_windows(1000, T + 1, TASK, n=4)
    x = windows[:, :-1]
    induction, previous = circuit_scores([one_head(x, induction_key)], windows, copied)
    assert induction.item() == 1.0 and previous.item() < 0.3
    induction, previous = circuit_scores([one_head(x, lambda t, _: max(0, t - 1))], windows,
                                         copied)
    assert previous.item() == 1.0 and induction.item() < 0.3
    uniform = torch.tril(torch.ones(T, T)) / torch.arange(1, T + 1)[:, None]
    induction, _ = circuit_scores([uniform.expand(4, 1, T, T)], windows, copied)
    assert 0.02 < induction.item() < 0.3  # about one key in t


def test_ablating_a_head_removes_its_output_and_only_its():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=30, context_length=T, emb_dim=16, n_heads=2, n_layers=2))
    x = torch.randint(0, 30, (2, T))
    attn, seen = model.blocks[0].attn, []

    def run() -> torch.Tensor:  # what reaches layer 0's output projection, seen after any hook
        hook = attn.out_proj.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
        with torch.no_grad():
            out = model.eval()(x)
        hook.remove()
        return out

    run()
    with ablated(model, 0, [1]):
        ablated_out = run()
    full, cut = seen
    assert torch.equal(cut[..., :8], full[..., :8]) and not cut[..., 8:].any()
    with torch.no_grad():
        assert not torch.equal(ablated_out, model(x))  # and the hook is gone again


def test_the_ablation_check_names_layer_0s_previous_token_head():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=30, context_length=T, emb_dim=18, n_heads=3, n_layers=2))
    windows, copied = copy_windows(30, T + 1, TASK, n=8)
    check = ablation_check(model, windows, copied)
    assert check.previous_head in range(3) and set(check.without_other) == (
        set(range(3)) - {check.previous_head})
    assert check.intact == copy_losses(model, windows, copied).copy


def test_in_a_trained_model_the_copying_goes_through_layer_0s_previous_token_head():
    # tests/data/copy_task_circuit.safetensors: the weights (float16) of `python scripts/train.py
    # experiment=copy_task seed=1`, 2,000 steps, where the circuit formed at step 1,129
    from pathlib import Path

    from safetensors.torch import load_file

    weights = load_file(Path(__file__).parent / "data" / "copy_task_circuit.safetensors")
    model = GPT(GPTConfig(vocab_size=320, context_length=64, emb_dim=128, n_heads=4,
                          n_layers=2, positions="rope"))
    loaded = model.load_state_dict({k: v.float() for k, v in weights.items()}, strict=False)
    assert loaded.missing_keys == ["head.weight"] and not loaded.unexpected_keys  # tied
    windows, copied = copy_windows(320, 65, Synthetic(kind="copies", share=0.5), n=32)
    check = ablation_check(model, windows, copied)
    assert check.intact < 1.0  # it copies: log(320) = 5.8 nats without copying
    assert check.without_previous > check.intact + 3  # and not without its previous-token head
    assert all(loss < check.without_previous for loss in check.without_other.values())
    assert min(check.without_other.values()) < check.intact + 0.5  # a head it does not need
