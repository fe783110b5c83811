"""GPT-2 interoperability, offline and without transformers: our loader and exporter are held to
files and outputs that transformers' own GPT2LMHeadModel wrote (tests/data/hf_gpt2, generate.py)."""

import contextlib
import io
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tokenizers import Tokenizer as HFTokenizer

from tinygpt.data.config import DataConfig
from tinygpt.errors import UsageError
from tinygpt.lab.report.events import scalars_by_step
from tinygpt.model.generate import generate
from tinygpt.model.gpt import GPT, AttentionConfig, GPTConfig
from tinygpt.training.config import compose_train
from tinygpt.training.datamodule import TextDataModule
from tinygpt.training.settings import settle
from tinygpt.training.train import train
from tinygpt.weights.checkpoint import export_hf, load_checkpoint, load_model
from tinygpt.weights.complete import complete
from tinygpt.weights.hf import load_hf_gpt2, save_hf_gpt2

HF = Path(__file__).resolve().parent / "data" / "hf_gpt2"
EXPECTED = load_file(HF / "expected.safetensors")  # transformers' logits and greedy tokens
MODELS = ("tied", "untied_gelu", "tied_bin")  # tied or not, gelu_new or gelu, safetensors or .bin


def gpt2_dir(path: Path) -> Path:
    """A small random GPT-2 with the real vocabulary (so GPT-2's tokens fit), as GPT-2 files."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=50257, context_length=64, emb_dim=32, n_heads=4, n_layers=2,
                          qkv_bias=True))
    save_hf_gpt2(model, path)
    return path


def max_logit_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


@pytest.mark.parametrize("name", MODELS)
def test_gpt2_files_give_transformers_logits(name):
    ours = load_hf_gpt2(HF / name).eval()
    assert ours.cfg.tie_weights == name.startswith("tied")
    with torch.no_grad():
        assert max_logit_diff(ours(EXPECTED["x"]), EXPECTED[f"logits.{name}"]) < 1e-5


@pytest.mark.parametrize("name", MODELS)
def test_greedy_generation_matches_transformers(name):
    prompt, want = EXPECTED["prompt"], EXPECTED[f"greedy.{name}"]
    got = generate(load_hf_gpt2(HF / name), prompt, want.shape[1] - prompt.shape[1],
                   temperature=0)
    assert torch.equal(got, want)


@pytest.mark.parametrize("name", ["tied", "untied_gelu"])
def test_export_writes_back_the_files_transformers_wrote(tmp_path, name):
    # Loading is held to transformers' outputs above; exporting what was loaded must give its
    # files back: the same tensor names, layouts and values, and the same config where we write it.
    save_hf_gpt2(load_hf_gpt2(HF / name), tmp_path)
    theirs, ours = load_file(HF / name / "model.safetensors"), load_file(
        tmp_path / "model.safetensors")
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)
    cfg_theirs, cfg_ours = (json.loads((d / "config.json").read_text())
                            for d in (HF / name, tmp_path))
    # n_ctx: the older name of n_positions, which transformers now ignores and does not write
    assert {k for k in cfg_ours if cfg_ours[k] != cfg_theirs.get(k)} == {"n_ctx"}


@pytest.mark.parametrize("tie,qkv_bias,activation,bias", [(True, True, "gelu", True),
                                                          (False, False, "gelu_exact", False)])
def test_a_trained_model_exports_and_loads_back_with_the_same_logits(tmp_path, tie, qkv_bias,
                                                                     activation, bias):
    torch.manual_seed(1)
    cfg = GPTConfig(vocab_size=50257, context_length=32, emb_dim=32, n_heads=2, n_layers=2,
                    qkv_bias=qkv_bias, tie_weights=tie, activation=activation, bias=bias)
    ours = GPT(cfg)
    opt = torch.optim.AdamW(ours.parameters(), lr=1e-2)  # a few steps away from the init
    x = torch.randint(0, 50257, (2, 32))
    for _ in range(3):
        loss = ours.loss(x[:, :-1], x[:, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
    save_hf_gpt2(ours.eval(), tmp_path)
    back = load_hf_gpt2(tmp_path).eval()  # the same GELU, and zero biases where it had none
    assert back.cfg.activation == activation and back.cfg.tie_weights == tie
    with torch.no_grad():
        assert max_logit_diff(back(x), ours(x)) < 1e-5


def test_export_refuses_what_gpt2_cannot_express(tmp_path):
    for att in (AttentionConfig(scale=False), AttentionConfig(causal=False)):
        model = GPT(GPTConfig(vocab_size=100, context_length=8, emb_dim=16, n_heads=2,
                              n_layers=1, attention=att))
        with pytest.raises(ValueError, match="always scales and masks"):
            save_hf_gpt2(model, tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_config_gpt2_cannot_represent_is_refused(tmp_path):
    cfg = json.loads((HF / "tied" / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps(cfg | {"activation_function": "relu"}))
    (tmp_path / "model.safetensors").symlink_to(HF / "tied" / "model.safetensors")
    with pytest.raises(ValueError, match="activation_function=relu"):
        load_hf_gpt2(tmp_path)


def test_training_from_gpt2_weights_starts_from_their_loss(tmp_path, train_run):
    hf = gpt2_dir(tmp_path / "hf")
    result, _ = train_run("data.tokenizer=gpt2", "model.drop_rate=0.0", "trainer.max_steps=3",
                          "trainer.val_check_interval=3", "trainer.log_every_n_steps=1",
                          "optim.lr=1e-4", f"model.init_from={hf}")
    model, _ = load_checkpoint(result.last_checkpoint)
    assert model.cfg.emb_dim == 32 and model.cfg.context_length == 64  # the file's shape
    first = scalars_by_step(result.run_dir, "train/loss")[0]
    # the loaded weights' own loss on the first batch, computed independently
    dm = TextDataModule(DataConfig(tokenizer="gpt2", batch_size=8, stride=None),
                        context_length=32, seed=1337)
    dm.load()
    x, y = next(iter(dm.train_dataloader()))
    with torch.no_grad():
        expected = load_hf_gpt2(hf).loss(x, y).item()
    assert first == pytest.approx(expected, rel=1e-4)


def test_init_from_reads_gpt2_tokens_unless_another_tokenizer_is_chosen(tmp_path, cache_dir,
                                                                       train_run):
    hf = gpt2_dir(tmp_path / "hf")
    # the README's fine-tuning command, shortened: no data.tokenizer given, GPT-2's is used
    cfg = compose_train(f"model.init_from={hf}", "model.context_length=32", "optim.lr=1e-4",
                        "trainer.max_steps=2", "trainer.val_check_interval=2",
                        "trainer.limit_val_batches=2", "trainer.enable_progress_bar=false",
                        "trainer.enable_model_summary=false", f"data.cache_dir={cache_dir}")
    assert cfg.data.tokenizer == "gpt2"
    with contextlib.redirect_stdout(io.StringIO()):
        result = train(settle(cfg, tmp_path / "run"), tmp_path / "run")
    assert result.steps == 2 and load_checkpoint(result.last_checkpoint)[1].name == "gpt2"
    # a tokenizer chosen explicitly (the smoke config sets char) is still refused
    with pytest.raises(UsageError, match="reads gpt2 tokens, not data.tokenizer=char"):
        train_run(f"model.init_from={hf}")


@pytest.mark.parametrize("tokenizer", ["bpe", "char"])
def test_a_lab_model_exports_with_its_tokenizer_and_trains_on_from_it(tmp_path, cache_dir,
                                                                      train_run, tokenizer):
    short = ["model.drop_rate=0.0", "trainer.max_steps=2", "trainer.val_check_interval=2",
             "sample.max_new_tokens=0"]
    first, _ = train_run(f"data.tokenizer={tokenizer}", "data.vocab_size=320", *short,
                         run_dir=tmp_path / "first")
    hf = export_hf(first.run_dir, tmp_path / "hf")
    assert sorted(p.name for p in hf.iterdir()) == [
        "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]
    model, tok = load_checkpoint(first.last_checkpoint)
    back, tok_back = load_model(hf)
    text = "def first(x):\n    return x[0]\n"
    ids = tok.encode(text)
    assert tok_back.name == tokenizer and tok_back.encode(text) == ids
    assert HFTokenizer.from_file(str(hf / "tokenizer.json")).encode(text).ids == ids
    x = torch.tensor([ids])
    with torch.no_grad():
        assert max_logit_diff(back(x), model(x)) < 1e-5
    # model.init_from=<it>: its tokenizer is the run's (data.tokenizer follows it), and training
    # starts from its weights' own loss
    cfg = compose_train(f"model.init_from={hf}")
    assert cfg.data.tokenizer == tokenizer
    second, _ = train_run(f"data.tokenizer={tokenizer}", *short, "trainer.log_every_n_steps=1",
                          f"model.init_from={hf}", run_dir=tmp_path / "second")
    assert load_checkpoint(second.last_checkpoint)[1].encode(text) == ids
    dm = TextDataModule(DataConfig(tokenizer=tokenizer, batch_size=8, stride=None,
                                   cache_dir=str(cache_dir)),
                        context_length=32, seed=1337, tokenizer=tok_back)
    dm.load()
    x, y = next(iter(dm.train_dataloader()))
    with torch.no_grad():
        expected = back.loss(x, y).item()
    assert scalars_by_step(second.run_dir, "train/loss")[0] == pytest.approx(expected, rel=1e-4)
    # another tokenizer than the folder's is refused
    other = "char" if tokenizer == "bpe" else "bpe"
    with pytest.raises(UsageError, match=f"reads {tokenizer} tokens, not data.tokenizer={other}"):
        train_run(f"data.tokenizer={other}", f"model.init_from={hf}", run_dir=tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_generate_reads_a_hf_directory(tmp_path):
    gpt2_dir(tmp_path)
    text = complete(str(tmp_path), "The for statement", max_new_tokens=5, temperature=0)
    assert text.startswith("The for statement") and len(text) > len("The for statement")


@pytest.mark.parametrize("kw,needle", [
    (dict(positions="rope"), "positions=rope"), (dict(positions="alibi"), "positions=alibi"),
    (dict(positions="none"), "positions=none"),
    (dict(attention=AttentionConfig(qk_norm="rms")), "qk_norm=rms"),
    (dict(attention=AttentionConfig(n_kv_heads=1)), "n_kv_heads=1"),
    (dict(attention=AttentionConfig(window=4)), "window=4"),
    (dict(attention=AttentionConfig(softcap=5.0, backend="manual")), "softcap=5.0"),
    (dict(attention=AttentionConfig(scale_type="learned_head")), "scale_type=learned_head"),
    (dict(activation="relu2"), "activation=relu2"), (dict(logit_softcap=15.0), "softcap=15.0"),
])
def test_export_refuses_attention_gpt2_has_not(tmp_path, kw, needle):
    model = GPT(GPTConfig(vocab_size=100, context_length=8, emb_dim=16, n_heads=2, n_layers=1,
                          **kw))
    with pytest.raises(UsageError, match=needle):
        save_hf_gpt2(model, tmp_path / "x")
    assert not (tmp_path / "x").exists()
    # grouped-query with one group per head is plain multi-head attention: it exports
    save_hf_gpt2(GPT(GPTConfig(vocab_size=100, context_length=8, emb_dim=16, n_heads=2,
                               n_layers=1, attention=AttentionConfig(n_kv_heads=2))),
                 tmp_path / "ok")


# --- a folder that cannot be read: one line, and no pickled code run -------------------------

class Payload:
    def __reduce__(self):
        import os

        return (os.makedirs, ("made_by_the_pickle",))


def test_a_pickled_bin_that_builds_an_object_is_refused_and_never_runs(tmp_path, monkeypatch):
    import pickle

    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "evil"
    folder.mkdir()
    (folder / "config.json").write_text((HF / "tied" / "config.json").read_text())
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps({"h.0.attn.bias": Payload()}))
    with pytest.raises(UsageError, match="as weights alone") as e:
        load_hf_gpt2(folder)
    assert str(e.value).endswith(")") and "\n" not in str(e.value)
    assert not (tmp_path / "made_by_the_pickle").exists()


@pytest.mark.parametrize("case", ["not json", "missing keys", "corrupt safetensors"])
def test_a_gpt2_folder_that_cannot_be_read_is_one_line(tmp_path, case):
    folder = tmp_path / "hf"
    folder.mkdir()
    config = (HF / "tied" / "config.json").read_text()
    weights = (HF / "tied" / "model.safetensors").read_bytes()
    if case == "not json":
        config = config[: len(config) // 2]
    elif case == "missing keys":
        config = json.dumps({k: v for k, v in json.loads(config).items() if k != "n_embd"})
    else:
        weights = weights[: len(weights) // 3]
    (folder / "config.json").write_text(config)
    (folder / "model.safetensors").write_bytes(weights)
    with pytest.raises(UsageError) as e:
        load_hf_gpt2(folder)
    needle = {"not json": "cannot read", "missing keys": "lacks GPT-2's n_embd",
              "corrupt safetensors": "cannot read"}[case]
    assert needle in str(e.value) and str(e.value).endswith(")"), str(e.value)


def test_export_to_a_file_is_refused_and_a_failed_write_leaves_no_folder(tmp_path, monkeypatch,
                                                                        smoke_run):
    from tinygpt.weights.checkpoint import export_hf

    a_file = tmp_path / "model"
    a_file.write_text("mine")
    with pytest.raises(UsageError, match="is a file"):
        export_hf(smoke_run, a_file)
    assert a_file.read_text() == "mine"
    model = GPT(GPTConfig(vocab_size=100, context_length=8, emb_dim=16, n_heads=2, n_layers=1))

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("safetensors.torch.save_file", broken)
    with pytest.raises(OSError):
        save_hf_gpt2(model, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no folder, no temporary


def test_export_into_a_folder_keeps_what_else_it_holds(tmp_path):
    (tmp_path / "README.md").write_text("mine")
    gpt2_dir(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md", "config.json",
                                                          "model.safetensors"]
