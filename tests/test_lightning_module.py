import pickle

import pytest
import torch

from tinygpt.optim.optimizer import lr_lambda
from tinygpt.training.module import GPTLightningModule
from tinygpt.weights.checkpoint import load_checkpoint

MODEL = dict(vocab_size=30, context_length=8, emb_dim=16, n_heads=2, n_layers=2)
TOK = {"name": "char", "chars": "abcdefghijklmnopqrstuvwxyz .,\n"}


def test_schedule_warms_up_linearly_then_decays_to_the_floor():
    f = [lr_lambda(s, warmup_steps=10, total_steps=110, min_lr_ratio=0.1) for s in range(120)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert f[60] == pytest.approx(0.55)  # halfway through the cosine: mean of 1 and the floor
    assert f[110] == pytest.approx(0.1) and f[119] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(f[10:], f[11:], strict=False))


def test_weight_decay_only_on_matrices_not_biases_norms_or_positions():
    lit = GPTLightningModule(model=MODEL, tokenizer=TOK)

    class FakeTrainer:
        estimated_stepping_batches = 100
        precision = "32-true"

    lit._trainer = FakeTrainer()  # configure_optimizers reads the step count from it
    opt = lit.configure_optimizers()["optimizer"]
    decay, no_decay = opt.param_groups
    names = {id(p): n for n, p in lit.model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    assert decay["weight_decay"] > 0 and no_decay["weight_decay"] == 0
    assert "tok_emb.weight" in decayed and "blocks.0.attn.qkv.weight" in decayed
    assert not any(n.endswith("bias") or "ln" in n or n.startswith("pos_emb") for n in decayed)
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(lit.model.parameters()))


def save_ckpt(path, lit):
    torch.save({"hyper_parameters": dict(lit.hparams), "state_dict": lit.state_dict()}, path)


def test_load_checkpoint_rebuilds_model_and_tokenizer(tmp_path):
    lit = GPTLightningModule(model=MODEL, tokenizer=TOK)
    save_ckpt(tmp_path / "a.ckpt", lit)
    model, tok = load_checkpoint(str(tmp_path / "a.ckpt"))
    x = torch.tensor([tok.encode("hello")])
    torch.testing.assert_close(model(x), lit.model.eval()(x))


class Payload:
    def __reduce__(self):
        return (exec, ("open('PWNED', 'w').write('x')",))


def test_load_checkpoint_refuses_missing_truncated_and_code(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="does not exist"):
        load_checkpoint(str(tmp_path / "none.ckpt"))
    lit = GPTLightningModule(model=MODEL, tokenizer=TOK)
    save_ckpt(tmp_path / "a.ckpt", lit)
    data = (tmp_path / "a.ckpt").read_bytes()
    (tmp_path / "cut.ckpt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cannot read"):
        load_checkpoint(str(tmp_path / "cut.ckpt"))
    (tmp_path / "evil.ckpt").write_bytes(pickle.dumps({"state_dict": Payload()}))
    with pytest.raises(ValueError, match="cannot read"):
        load_checkpoint(str(tmp_path / "evil.ckpt"))
    assert not (tmp_path / "PWNED").exists()


def test_load_checkpoint_of_another_shape_is_refused(tmp_path):
    lit = GPTLightningModule(model=MODEL, tokenizer=TOK)
    ckpt = {"hyper_parameters": dict(lit.hparams) | {"model": MODEL | {"emb_dim": 32}},
            "state_dict": lit.state_dict()}
    torch.save(ckpt, tmp_path / "x.ckpt")
    with pytest.raises(ValueError, match="does not hold"):
        load_checkpoint(str(tmp_path / "x.ckpt"))


def test_val_bpb_is_nats_over_the_bytes_of_the_targets():
    import math

    import lightning as L
    import torch.nn.functional as F

    chars = "ab\u00e9\u65e5 ."  # 1-, 2- and 3-byte characters: bytes per token differ
    module = GPTLightningModule(MODEL | {"vocab_size": len(chars)},
                                {"name": "char", "chars": chars})
    torch.manual_seed(0)
    x, y = torch.randint(0, len(chars), (2, 4, 8)).unbind(0)
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_model_summary=False)
    loader = torch.utils.data.DataLoader([(x, y)], batch_size=None)
    metrics = trainer.validate(module, dataloaders=loader, verbose=False)[0]
    with torch.no_grad():
        nats = F.cross_entropy(module.model(x).flatten(0, 1), y.flatten(), reduction="sum")
    nbytes = sum(len(sorted(set(chars))[t].encode("utf-8")) for t in y.flatten().tolist())
    assert nbytes > y.numel()  # the multi-byte characters count
    assert metrics["val/bpb"] == pytest.approx(nats.item() / nbytes / math.log(2), rel=1e-5)
    assert metrics["val/loss"] == pytest.approx(nats.item() / y.numel(), rel=1e-5)
