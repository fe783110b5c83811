"""Every input a user can get wrong ends in one line `error: <what> (<how to fix>)`, a non-zero
exit and no traceback, through the real entry points; nothing the user had is touched."""

import pytest
import torch

from conftest import TINY, run_script


def assert_one_error_line(p, needle: str) -> str:
    assert p.returncode != 0, p.stdout[-1000:]
    assert "Traceback" not in p.stderr, p.stderr[-3000:]
    errors = [line for line in p.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, p.stderr[-3000:]
    line = errors[0]
    assert needle in line, line
    assert "(" in line and line.rstrip().endswith(")"), f"no how-to-fix part: {line}"
    return line


def corpus(tmp_path, content: bytes | None) -> str:
    f = tmp_path / "corpus.txt"
    if content is not None:
        f.write_bytes(content)
    return str(f)


LATIN1 = "caf\u00e9".encode("latin-1")
SHORT = b"a short text. " * 5

TRAIN_CASES = {
    "corpus path missing": (
        lambda t: ["data=text", f"data.path={corpus(t, None)}"], "no text file"),
    "data=text without a path": (lambda t: ["data=text"], "needs a file"),
    "empty corpus": (lambda t: ["data=text", f"data.path={corpus(t, b'  ')}"], "empty"),
    "corpus not UTF-8": (lambda t: ["data=text", f"data.path={corpus(t, LATIN1)}"], "UTF-8"),
    "corpus too short": (
        lambda t: ["data=text", f"data.path={corpus(t, SHORT)}"], "too short"),
    "val fraction 0": (lambda t: ["data.val_fraction=0"], "val_fraction"),
    "val fraction above 1": (lambda t: ["data.val_fraction=1.5"], "val_fraction"),
    "emb_dim not divisible by n_heads": (lambda t: ["model.n_heads=3"], "divisible"),
    "renorm with sdpa": (lambda t: ["model.attention.mask_impl=renorm"], "manual backend"),
    "unknown tokenizer": (lambda t: ["data.tokenizer=bert"], "unknown data.tokenizer"),
    "unknown corpus": (lambda t: ["data.name=wikipedia"], "unknown corpus"),
    "unknown non-finite policy": (lambda t: ["on_nonfinite=maybe"], "on_nonfinite"),
    "checkpoint missing": (lambda t: [f"ckpt_path={t / 'none.ckpt'}"], "does not exist"),
    "nothing to resume": (lambda t: ["resume=true"], "no last.ckpt"),
}


@pytest.mark.parametrize("case", TRAIN_CASES)
def test_train_bad_input(case, tmp_path, monkeypatch):
    args, needle = TRAIN_CASES[case]
    run_dir = tmp_path / "run"
    p = run_script("train.py", *TINY, *args(tmp_path), f"data.cache_dir={tmp_path / 'cache'}",
                   f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert_one_error_line(p, needle)
    assert not (run_dir / "checkpoints").exists()


def test_train_truncated_or_foreign_checkpoint(tiny_run, tmp_path):
    good = tiny_run / "checkpoints" / "last.ckpt"
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(good.read_bytes()[:5000])
    common = [*TINY, f"data.cache_dir={tmp_path}", f"hydra.run.dir={tmp_path / 'run'}"]
    assert_one_error_line(run_script("train.py", *common, f"ckpt_path={cut}"), "cannot read")
    line = assert_one_error_line(
        run_script("train.py", *common, "model.emb_dim=64", f"ckpt_path={good}"), "another model")
    assert "emb_dim=32 (this run: 64)" in line


def test_run_directory_with_a_run_is_never_clobbered(tiny_run):
    before = {p: p.stat().st_mtime_ns for p in tiny_run.rglob("*") if p.is_file()}
    p = run_script("train.py", *TINY, f"hydra.run.dir={tiny_run}")
    assert_one_error_line(p, "already holds a training run")
    after = {p: p.stat().st_mtime_ns for p in tiny_run.rglob("*") if p.is_file()}
    assert after == before


GENERATE_CASES = {
    "empty prompt": (["prompt="], "prompt is empty"),
    "prompt longer than the context": (["prompt=" + "a" * 40], "longer than the model's context"),
    "prompt outside a char vocabulary": (["prompt='\u00e6\u00f8\u00e5'"], "not in the vocabulary"),
    "negative temperature": (["temperature=-1"], "temperature"),
    "top_k out of range": (["top_k=0"], "top_k"),
    "top_p out of range": (["top_p=1.5"], "top_p"),
    "max_new_tokens zero": (["max_new_tokens=0"], "max_new_tokens"),
}


@pytest.mark.parametrize("case", GENERATE_CASES)
def test_generate_bad_input(case, tiny_run):
    args, needle = GENERATE_CASES[case]
    p = run_script("generate.py", f"ckpt={tiny_run / 'checkpoints' / 'last.ckpt'}", *args)
    assert_one_error_line(p, needle)


def test_generate_missing_truncated_or_foreign_checkpoint(tiny_run, tmp_path):
    assert_one_error_line(run_script("generate.py", f"ckpt={tmp_path / 'x.ckpt'}"),
                          "does not exist")
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes((tiny_run / "checkpoints" / "last.ckpt").read_bytes()[:5000])
    assert_one_error_line(run_script("generate.py", f"ckpt={cut}"), "cannot read")
    other = tmp_path / "weights.ckpt"
    torch.save({"weights": torch.zeros(3)}, other)
    assert_one_error_line(run_script("generate.py", f"ckpt={other}"), "does not hold")
