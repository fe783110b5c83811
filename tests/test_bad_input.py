"""Every input a user can get wrong is a UsageError that says what to fix; the entry points
turn it into one line `error: <what> (<how to fix>)`, exit code 2 and no traceback; nothing the
user had is touched."""

import importlib.util
import subprocess
import sys

import pytest
import torch

from tinygpt.errors import UsageError
from tinygpt.weights.checkpoint import RUN_SETTINGS
from tinygpt.weights.complete import complete


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
    "checkpoint missing": (lambda t: [f"ckpt_path={t / 'none.ckpt'}"], "does not exist"),
    "nothing to resume": (lambda t: ["resume=true"], "no last.ckpt"),
    "batch not divisible by accumulation": (
        lambda t: ["data.batch_size=7", "trainer.accumulate_grad_batches=2"], "multiple of"),
    "sigmoid attention with sdpa": (lambda t: ["model.attention.kind=sigmoid"], "backend=manual"),
    "differential with an odd head count": (
        lambda t: ["model.attention.kind=differential", "model.n_heads=1"], "is odd"),
    "a sink with sigmoid": (lambda t: ["model.attention.kind=sigmoid", "model.attention.sink=zero",
                                       "model.attention.backend=manual"], "set sink=none"),
    "bos without an end-of-text token": (lambda t: ["data.bos=true"], "has none"),
    "synthetic share above 1": (lambda t: ["data.synthetic.kind=repeats",
                                           "data.synthetic.share=1.5"], "between 0 and 1"),
    "repeat segment longer than half the context": (
        lambda t: ["data.synthetic.kind=repeats", "data.synthetic.length=20"], "half"),
}


def assert_says_how_to_fix(e: pytest.ExceptionInfo, needle: str) -> None:
    text = str(e.value)
    assert needle in text, text
    assert "(" in text and text.rstrip().endswith(")"), f"no how-to-fix part: {text}"
    assert "\n" not in text


@pytest.mark.parametrize("case", TRAIN_CASES)
def test_train_bad_input(case, tmp_path, train_run, monkeypatch):
    monkeypatch.chdir(tmp_path)  # resume=true looks under ./outputs too
    args, needle = TRAIN_CASES[case]
    with pytest.raises(UsageError) as e:
        train_run(*args(tmp_path))
    assert_says_how_to_fix(e, needle)
    assert not (tmp_path / "run" / "checkpoints").exists()


def assert_one_error_line(p, needle: str) -> str:
    assert p.returncode == 2, p.stdout[-1000:] + p.stderr[-2000:]
    assert "Traceback" not in p.stderr, p.stderr[-3000:]
    errors = [line for line in p.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, p.stderr[-3000:]
    assert needle in errors[0], errors[0]
    return errors[0]


def test_entry_points_print_one_error_line_and_exit_2(tmp_path, run_script, smoke, smoke_run):
    # The mapping from UsageError to the user's one line, once per entry point.
    p = run_script("train.py", *smoke, "data=text", f"data.path={tmp_path / 'none.txt'}",
                   f"data.cache_dir={tmp_path}", f"hydra.run.dir={tmp_path / 'run'}")
    assert_one_error_line(p, "no text file")
    p = run_script("generate.py", f"ckpt={smoke_run / 'checkpoints' / 'last.ckpt'}", "top_k=0")
    assert_one_error_line(p, "top_k")
    (tmp_path / "hf").write_text("mine")
    p = run_script("export_hf.py", f"ckpt={smoke_run / 'checkpoints' / 'last.ckpt'}",
                   f"out={tmp_path / 'hf'}")
    assert_one_error_line(p, "is a file")
    assert (tmp_path / "hf").read_text() == "mine"


def one_error_line(code: int, err: str, needle: str) -> str:
    assert code == 2, err[-2000:]
    assert "Traceback" not in err, err[-3000:]
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and needle in errors[0], err[-3000:]
    return errors[0]


def test_lab_entry_points_print_one_error_line_and_exit_2(tmp_path, cli_main):
    # the lab's argparse entry points share the same path to the error line and exit code
    one_error_line(*cli_main("report", str(tmp_path / "nowhere")), "is not a folder")
    one_error_line(*cli_main("report", str(tmp_path)), "no TensorBoard event files")
    if importlib.util.find_spec("llms_from_scratch") is None:
        one_error_line(*cli_main("bench_peers", "--steps", "1", "--out",
                                 str(tmp_path / "p.json")), "the peer is not installed")
        assert not (tmp_path / "p.json").exists()


def test_train_truncated_or_foreign_checkpoint(smoke_run, tmp_path, train_run):
    good = smoke_run / "checkpoints" / "last.ckpt"
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(good.read_bytes()[:5000])
    with pytest.raises(UsageError, match="cannot read"):
        train_run(f"ckpt_path={cut}")
    with pytest.raises(UsageError, match="would change the run's own settings") as e:
        train_run("model.emb_dim=64", f"ckpt_path={good}")
    assert "model.emb_dim=32 -> 64" in str(e.value)
    # a checkpoint that does not record its run's settings is still held to the model it holds
    bare = tmp_path / "bare.ckpt"
    ckpt = torch.load(good, weights_only=False)
    del ckpt[RUN_SETTINGS]
    torch.save(ckpt, bare)
    with pytest.raises(UsageError, match="another model") as e:
        train_run("model.emb_dim=64", f"ckpt_path={bare}")
    assert "emb_dim=32 (this run: 64)" in str(e.value)


def test_run_directory_with_a_run_is_never_clobbered(smoke_run, run_script, smoke):
    before = {p: p.stat().st_mtime_ns for p in smoke_run.rglob("*") if p.is_file()}
    p = run_script("train.py", *smoke, f"hydra.run.dir={smoke_run}")
    assert_one_error_line(p, "already holds a training run")
    after = {p: p.stat().st_mtime_ns for p in smoke_run.rglob("*") if p.is_file()}
    assert after == before


GENERATE_CASES = {
    "empty prompt": (dict(prompt=""), "prompt is empty"),
    "prompt longer than the context": (dict(prompt="a" * 40), "longer than the model's context"),
    "prompt outside a char vocabulary": (dict(prompt="\u00e6\u00f8"), "not in the vocabulary"),
    "negative temperature": (dict(temperature=-1), "temperature"),
    "top_k out of range": (dict(top_k=0), "top_k"),
    "top_p out of range": (dict(top_p=1.5), "top_p"),
    "max_new_tokens zero": (dict(max_new_tokens=0), "max_new_tokens"),
}


@pytest.mark.parametrize("case", GENERATE_CASES)
def test_generate_bad_input(case, smoke_run):
    kw, needle = GENERATE_CASES[case]
    args = dict(prompt="The", max_new_tokens=5) | kw
    with pytest.raises(UsageError) as e:
        complete(str(smoke_run / "checkpoints" / "last.ckpt"), **args)
    assert_says_how_to_fix(e, needle)


def test_generate_missing_truncated_or_foreign_checkpoint(smoke_run, tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        complete(str(tmp_path / "x.ckpt"), "The", 5)
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes((smoke_run / "checkpoints" / "last.ckpt").read_bytes()[:5000])
    with pytest.raises(UsageError, match="cannot read"):
        complete(str(cut), "The", 5)
    other = tmp_path / "weights.ckpt"
    torch.save({"weights": torch.zeros(3)}, other)
    with pytest.raises(UsageError, match="does not hold"):
        complete(str(other), "The", 5)


# Mistakes answered by the entry point before Hydra makes a run folder (and before torch loads).
CLI_CASES = {
    "negative learning rate": (["optim.lr=-1"], "optim.lr=-1.0 must be positive"),
    "negative step count": (["trainer.max_steps=-5"], "trainer.max_steps=-5"),
    "unknown precision": (["trainer.precision=bf32"], "trainer.precision='bf32' is unknown"),
    "empty batch": (["data.batch_size=0"], "data.batch_size=0 must be at least 1"),
    "misspelt key": (["model.atention.scale=false"], "did you mean model.attention.scale?"),
    "unknown experiment": (["experiment=smokee"], "experiment=smokee is unknown (use one of"),
    "wrong type": (["model.n_layers=many"], "model.n_layers=many"),
    "unknown option": (["model.attention.mask_impl=renrom"], "expected one of [neg_inf, renorm]"),
    "resume without a run": (["resume=true"], "no last.ckpt to resume"),
    "unknown sink": (["model.attention.sink=sinkhole"], "expected one of [none, zero, learned]"),
    "a pickle to rerun": (["--experimental-rerun", "config.pickle"], "unpickles a file"),
    "a sweep without -m": (["seed=1,2"], "add -m to run one job per value"),
}


@pytest.mark.parametrize("case", CLI_CASES)
def test_cli_mistakes_get_one_line_and_no_folder(case, tmp_path, run_script):
    args, needle = CLI_CASES[case]
    p = run_script("train.py", *args, f"data.cache_dir={tmp_path / 'cache'}", cwd=tmp_path)
    assert_one_error_line(p, needle)
    assert not (tmp_path / "outputs").exists() and not (tmp_path / "cache").exists()


def test_cli_mistakes_are_answered_before_torch_or_lightning_load():
    # what keeps a config mistake under two seconds: the check never imports them
    code = ("import sys\nfrom tinygpt.errors import UsageError\n"
            "from tinygpt.training.precheck import precheck\n"
            "try:\n    precheck(['optim.lr=-1'])\nexcept UsageError:\n    pass\n"
            "print(sorted(m for m in ('torch', 'lightning') if m in sys.modules))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert p.stdout.strip() == "[]"


def test_a_run_refused_after_it_made_its_folder_leaves_none(tmp_path, train_cli, monkeypatch):
    # a corpus too short is only known once it is tokenised, inside the run
    monkeypatch.chdir(tmp_path)
    short = tmp_path / "short.txt"
    short.write_text("a short text. " * 5)
    code, err = train_cli("experiment=smoke", "data=text", f"data.path={short}",
                          f"data.cache_dir={tmp_path / 'cache'}")
    one_error_line(code, err, "too short")
    assert not (tmp_path / "outputs").exists()


def test_generate_and_export_ask_for_what_they_need(tmp_path, run_script, smoke_run):
    p = run_script("generate.py", "prompt=hi", cwd=tmp_path)
    assert_one_error_line(p, "ckpt must be given")
    p = run_script("export_hf.py", f"ckpt={smoke_run}", cwd=tmp_path)
    assert_one_error_line(p, "out must be given")
    p = run_script("generate.py", f"ckpt={smoke_run}", "prompt=The", "max_new_tokens=4",
                   cwd=tmp_path)  # a run folder is a checkpoint too: its last.ckpt
    assert p.returncode == 0 and p.stdout.startswith("The"), p.stderr[-2000:]


def test_a_prompt_the_tokenizer_cannot_read_falls_back_to_the_corpus(tmp_path, train_run):
    lower = tmp_path / "lower.txt"
    lower.write_text("the quick brown fox jumps over the lazy dog.\n" * 200)
    result, printed = train_run("data=text", f"data.path={lower}", "data.tokenizer=char",
                                "trainer.max_steps=4", "trainer.val_check_interval=4")
    assert "sample.prompt='The for statement' cannot be read" in printed
    assert "character 'T' is not in the vocabulary" in printed
    assert result.steps == 4  # it trained, instead of stopping after training


# --- a refused run takes back only what it made ----------------------------------------------

def files_in(folder) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_a_refused_run_leaves_every_file_that_was_in_its_folder(tmp_path, train_cli, smoke):
    mine = tmp_path / "mine"  # the user's own folder, named as the run's
    (mine / "data").mkdir(parents=True)
    (mine / "notes.log").write_text("my notes")
    (mine / "data" / "keep.txt").write_text("mine too")
    before = files_in(mine)
    short = tmp_path / "short.txt"
    short.write_text("a short text. " * 5)
    cache = tmp_path / "cache"
    code, err = train_cli(*smoke, "data=text", f"data.path={short}", f"data.cache_dir={cache}",
                          f"hydra.run.dir={mine}")
    assert code == 2 and "too short" in err
    assert files_in(mine) == before  # not one file more or less; .hydra/ taken back
    assert sorted(p.name for p in mine.iterdir()) == ["data", "notes.log"]
    assert not [p for p in cache.rglob("*") if p.is_file()]  # nothing cached either


def test_a_refused_run_removes_the_folders_it_made_and_no_other(tmp_path, train_cli, smoke,
                                                               monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "outputs" / "other").mkdir(parents=True)  # was there: stays
    short = tmp_path / "short.txt"
    short.write_text("a short text. " * 5)
    code, err = train_cli(*smoke, "data=text", f"data.path={short}",
                          f"data.cache_dir={tmp_path / 'cache'}", "hydra.run.dir=outputs/a/b/c")
    assert code == 2 and "too short" in err
    assert sorted(p.name for p in (tmp_path / "outputs").iterdir()) == ["other"]


def test_a_resume_refused_inside_the_run_restores_its_record(tmp_path, train_cli, smoke,
                                                            cache_dir):
    text = tmp_path / "text.txt"
    text.write_text("the quick brown fox jumps over the lazy dog. " * 60)
    run = tmp_path / "run"
    code, err = train_cli(*smoke, "data=text", f"data.path={text}", "trainer.max_steps=4",
                          f"data.cache_dir={cache_dir}", f"hydra.run.dir={run}")
    assert code == 0, err[-2000:]
    before = files_in(run)
    text.write_text("The Quick Brown Fox! " * 200)  # another alphabet: another tokenizer
    code, err = train_cli(f"hydra.run.dir={run}", "resume=true", "trainer.max_steps=8")
    assert code == 2 and "is for another model: vocab_size=" in err  # found inside the run
    assert files_in(run) == before  # the record as it was; no event file added


# --- every bad input: one line, exit 2, nothing written --------------------------------------

def test_an_unreadable_corpus_is_one_line(tmp_path, train_run, monkeypatch):
    import builtins

    text = tmp_path / "locked.txt"
    text.write_text("some text " * 100)
    real = builtins.open

    def no_read(path, *a, **k):  # what a file without read permission gives (root reads all)
        if str(path) == str(text):
            raise PermissionError(13, "Permission denied", str(path))
        return real(path, *a, **k)

    monkeypatch.setattr(builtins, "open", no_read)
    with pytest.raises(UsageError) as e:
        train_run("data=text", f"data.path={text}")
    assert_says_how_to_fix(e, f"cannot read {text}: Permission denied")


@pytest.mark.parametrize("how", ["data.cache_dir", "TINYGPT_CACHE"])
def test_a_cache_folder_that_is_a_file_is_refused_up_front(tmp_path, run_script, how):
    blocker = tmp_path / "cache"
    blocker.write_text("a file, not a folder")
    args, env = ([f"data.cache_dir={blocker / 'sub'}"], {}) if how == "data.cache_dir" else (
        [], {"TINYGPT_CACHE": str(blocker)})
    p = run_script("train.py", "experiment=smoke", *args, cwd=tmp_path, env=env)
    line = assert_one_error_line(p, "is a file")
    assert f"set {how} to a folder" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache"]  # no run folder either


def test_a_cache_folder_one_may_not_write_is_refused(tmp_path, train_run, monkeypatch):
    import os

    locked = tmp_path / "locked"
    locked.mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p) == str(locked) else
                        real(p, mode))  # what a read-only folder answers (root writes all)
    with pytest.raises(UsageError) as e:
        train_run(f"data.cache_dir={locked}")
    assert_says_how_to_fix(e, f"cannot write the cache folder {locked}")


def test_a_checkpoint_path_that_is_a_folder_says_what_to_give(smoke_run, train_run):
    with pytest.raises(UsageError) as e:
        train_run(f"ckpt_path={smoke_run}")
    assert_says_how_to_fix(e, "is a folder")
    assert f"ckpt_path={smoke_run / 'checkpoints' / 'last.ckpt'}" in str(e.value)


def test_a_checkpoint_without_a_tokenizer_is_not_ours(smoke_run, tmp_path):
    ckpt = torch.load(smoke_run / "checkpoints" / "last.ckpt", weights_only=False)
    del ckpt["hyper_parameters"]["tokenizer"]
    bare = tmp_path / "bare.ckpt"
    torch.save(ckpt, bare)
    with pytest.raises(UsageError) as e:
        complete(str(bare), "The", 5)
    assert_says_how_to_fix(e, "does not hold a tinygpt model: no tokenizer")


@pytest.mark.parametrize("device,needle", [("cuda:7", "has no such device"),
                                           ("toaster", "is not a device")])
def test_generate_checks_its_device(smoke_run, device, needle):
    with pytest.raises(UsageError) as e:
        complete(str(smoke_run), "The", 5, device=device)
    assert_says_how_to_fix(e, needle)


def test_report_out_that_is_a_file_and_a_malformed_record(tmp_path, run_script, smoke_run):
    out = tmp_path / "out"
    out.write_text("a file")
    p = run_script("report.py", str(smoke_run), "--out", str(out))
    assert_one_error_line(p, "is a file")
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(smoke_run, copy)
    (copy / ".hydra").mkdir(exist_ok=True)
    (copy / ".hydra" / "overrides.yaml").write_text("- a: [\n")
    p = run_script("report.py", str(copy), "--out", str(tmp_path / "report"))
    assert_one_error_line(p, "cannot read")
    assert not (tmp_path / "report").exists()


def test_heads_text_that_is_not_utf8(tmp_path, run_script, smoke_run):
    text = tmp_path / "latin1.txt"
    text.write_bytes(LATIN1 * 10)
    p = run_script("heads.py", str(smoke_run), "--text", str(text), "--out",
                   str(tmp_path / "heads"))
    assert_one_error_line(p, "is not UTF-8 text")
    assert not (tmp_path / "heads").exists()
