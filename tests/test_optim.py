"""tinygpt.optim.optimizer: the schedules, Muon beside AdamW as one optimizer, fused AdamW."""

import copy

import pytest
import torch

from tinygpt.model.gpt import GPT, GPTConfig
from tinygpt.optim.config import OptimConfig
from tinygpt.optim.muon import Muon, orthogonalise
from tinygpt.optim.optimizer import Combined, build_optimizer, hidden_matrices, lr_lambda

SHAPE = dict(vocab_size=40, context_length=8, emb_dim=16, n_heads=2, n_layers=2)


def test_wsd_holds_the_peak_then_falls_in_a_line_to_the_floor():
    f = [lr_lambda(s, 10, 110, 0.1, "wsd", decay_fraction=0.5) for s in range(120)]
    assert f[9] == pytest.approx(1.0) and f[55] == pytest.approx(1.0)  # stable until step 55
    assert f[82] == pytest.approx(1 - 0.9 * 27 / 55) and f[110] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(f[10:], f[11:], strict=False))


def step_on_batches(opt, model, n=3):
    g = torch.Generator().manual_seed(0)
    for _ in range(n):
        x = torch.randint(0, 40, (4, 8), generator=g)
        opt.zero_grad()
        model.loss(x, x.roll(-1, 1)).backward()
        opt.step()


def test_muon_takes_the_blocks_matrices_and_adamw_the_rest():
    model = GPT(GPTConfig(**SHAPE))
    opt, _ = build_optimizer(model, OptimConfig(algorithm="muon"), total_steps=10)
    muon, adamw = opt.optimizers
    assert isinstance(muon, Muon) and isinstance(adamw, torch.optim.AdamW)
    assert muon.param_groups[0]["ns_dtype"] == "float32"  # bf16 only where it is fast
    hidden = {id(p) for p in hidden_matrices(model)}
    assert {id(p) for p in muon.param_groups[0]["params"]} == hidden
    rest = {id(p) for g in adamw.param_groups for p in g["params"]}
    assert not rest & hidden and len(rest | hidden) == len(list(model.parameters()))
    assert id(model.tok_emb.weight) in rest  # the embedding (and tied head) stay with AdamW
    assert opt.param_groups[0]["lr"] == pytest.approx(0.02 * 0.01)  # warmup step 0: 1/100


def test_combined_steps_every_part_and_its_state_round_trips():
    model = GPT(GPTConfig(**SHAPE))
    opt, sched = build_optimizer(model, OptimConfig(algorithm="muon", warmup_steps=0), 10)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    step_on_batches(opt, model)
    sched.step()
    moved = [n for n, p in model.named_parameters() if not torch.equal(p, before[n])]
    assert "blocks.0.attn.qkv.weight" in moved and "tok_emb.weight" in moved
    twin = GPT(GPTConfig(**SHAPE))
    twin.load_state_dict(model.state_dict())
    opt2, _ = build_optimizer(twin, OptimConfig(algorithm="muon", warmup_steps=0), 10)
    opt2.load_state_dict(copy.deepcopy(opt.state_dict()))  # as a checkpoint holds it
    step_on_batches(opt, model, 1)
    step_on_batches(opt2, twin, 1)
    for a, b in zip(model.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(a, b)  # the same state gives the same next step


def test_combined_runs_lightnings_closure_once():
    model = GPT(GPTConfig(**SHAPE))
    opt, _ = build_optimizer(model, OptimConfig(algorithm="muon"), 10)
    calls = []
    x = torch.randint(0, 40, (2, 8))

    def closure():
        calls.append(1)
        opt.zero_grad()
        loss = model.loss(x, x)
        loss.backward()
        return loss

    assert isinstance(opt, Combined) and opt.step(closure) is not None and calls == [1]


def test_fused_adamw_takes_the_same_step_as_foreach():
    a, b = GPT(GPTConfig(**SHAPE)), GPT(GPTConfig(**SHAPE))
    b.load_state_dict(a.state_dict())
    fused, _ = build_optimizer(a, OptimConfig(), 10, fused=True)
    plain, _ = build_optimizer(b, OptimConfig(), 10)
    assert fused.defaults["fused"] and not plain.defaults["fused"]
    step_on_batches(fused, a)
    step_on_batches(plain, b)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("shape", [(24, 40), (40, 24)])
def test_our_muon_in_bf16_takes_torchs_muon_steps(shape):
    g = torch.Generator().manual_seed(0)
    start = torch.randn(*shape, generator=g)
    ours, theirs = torch.nn.Parameter(start.clone()), torch.nn.Parameter(start.clone())
    opt_ours = Muon([ours], lr=0.02, weight_decay=0.1, ns_dtype="bfloat16")
    opt_theirs = torch.optim.Muon([theirs], lr=0.02, weight_decay=0.1, momentum=0.95)
    for _ in range(3):
        grad = torch.randn(*shape, generator=g)
        ours.grad, theirs.grad = grad.clone(), grad.clone()
        opt_ours.step()
        opt_theirs.step()
    # the same algorithm; bf16 rounding differs between our batched matmuls and torch's addmm
    moved = (theirs - start).norm()
    assert moved > 0.01 and (ours - theirs).norm() < 0.05 * moved  # measured: 2-2.4%


def test_float32_iteration_orthogonalises_like_bf16_and_stays_float32():
    g = torch.randn(32, 96, generator=torch.Generator().manual_seed(1))
    x32, x16 = orthogonalise(g, 5, torch.float32), orthogonalise(g, 5, torch.bfloat16)
    assert x32.dtype == torch.float32
    torch.testing.assert_close(x32, x16.float(), atol=0.05, rtol=0.05)
    s = torch.linalg.svdvals(x32)
    assert 0.5 < s.min() and s.max() < 1.5  # the quintic's band around 1, not exact
