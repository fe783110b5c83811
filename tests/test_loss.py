import pytest
import torch
import torch.nn.functional as F

from tinygpt.model.loss import linear_cross_entropy


@pytest.mark.parametrize("n,vocab", [(300, 50257), (7, 13)])
def test_matches_cross_entropy_of_full_logits_with_gradients(n, vocab):
    g = torch.Generator().manual_seed(0)
    h = torch.randn(n, 16, generator=g, requires_grad=True)
    w = (0.1 * torch.randn(vocab, 16, generator=g)).requires_grad_()
    y = torch.randint(0, vocab, (n,), generator=g)
    ref = F.cross_entropy(h @ w.T, y)
    ref_grads = torch.autograd.grad(2 * ref, (h, w))
    got = linear_cross_entropy(h, w, y)
    got_grads = torch.autograd.grad(2 * got, (h, w))  # the upstream gradient is honoured
    torch.testing.assert_close(got, ref)
    for a, b in zip(got_grads, ref_grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_bf16_autocast_stays_close_to_float32():
    g = torch.Generator().manual_seed(0)
    h, w = torch.randn(64, 32, generator=g), 0.1 * torch.randn(1000, 32, generator=g)
    y = torch.randint(0, 1000, (64,), generator=g)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = linear_cross_entropy(h, w, y)
    assert low.dtype == torch.float32
    assert low.item() == pytest.approx(F.cross_entropy(h @ w.T, y).item(), abs=0.02)


def test_no_gradients_needed_in_eval():
    h, w = torch.randn(4, 8), torch.randn(10, 8)
    loss = linear_cross_entropy(h, w, torch.tensor([1, 2, 3, 4]))
    assert not loss.requires_grad


@pytest.mark.parametrize("cap", [3.0, 30.0])
def test_softcap_matches_capped_logits_with_gradients(cap):
    g = torch.Generator().manual_seed(1)
    h = (3 * torch.randn(50, 16, generator=g)).requires_grad_()
    w = torch.randn(70, 16, generator=g).requires_grad_()
    y = torch.randint(0, 64, (50,), generator=g)
    logits = (h @ w.T)[:, :64]  # the last 6 rows are padding
    ref = F.cross_entropy(cap * torch.tanh(logits / cap), y)
    ref_grads = torch.autograd.grad(ref, (h, w))
    got = linear_cross_entropy(h, w, y, n_valid=64, softcap=cap)
    torch.testing.assert_close(got, ref)
    for a, b in zip(torch.autograd.grad(got, (h, w)), ref_grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    assert got.item() != pytest.approx(F.cross_entropy(logits, y).item(), abs=1e-3)  # it caps
