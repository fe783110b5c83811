"""The shell commands README.md and docs/ print, held to the code: every training command's
overrides compose and pass the run's checks (each value of a sweep), every other program takes the
options shown, and the README's cheap training commands run (two steps)."""

import contextlib
import dataclasses
import io
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from conftest import SEARCH_EXTRA
from tinygpt.training.precheck import compose, known_keys, parse, precheck, task
from tinygpt.training.settings import check_windows
from tinygpt.weights.config import ExportConfig, GenerateConfig

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# An indented line that starts a command: python scripts/x.py, a console script, or make.
START = re.compile(r"^ {4}(?:\.venv/bin/)?(python scripts/\w+\.py|tinygpt-[\w-]+|make)\b(.*)$")
HYDRA_PROGRAMS = {"generate": GenerateConfig, "export_hf": ExportConfig}
PROGRAMS = {"python scripts/train.py": "train", "tinygpt-train": "train",
            "tinygpt-prepare": "prepare", "python scripts/prepare.py": "prepare"}


def commands() -> list[tuple[str, str, list[str]]]:
    """(page:line, program, arguments) for each command the pages print; a line ending in a
    backslash goes on to the next, a # comment is dropped."""
    found = []
    for page in PAGES:
        lines = page.read_text().splitlines()
        for i, line in enumerate(lines):
            m = START.match(line)
            if not m or (i and lines[i - 1].rstrip().endswith("\\")):
                continue
            text, j = m.group(2), i
            while text.rstrip().endswith("\\") and j + 1 < len(lines):
                j += 1
                text = text.rstrip()[:-1] + " " + lines[j].strip()
            found.append((f"{page.relative_to(ROOT)}:{i + 1}", m.group(1),
                          shlex.split(text, comments=True)))
    return found


COMMANDS = commands()
# a search's commands need the search extra, which lives apart from the venv (Makefile)
SEARCH_PICKS = {"hydra/sweeper=optuna", "experiment=gate_lr_search"}
SEARCH = [c for c in COMMANDS if PROGRAMS.get(c[1]) == "train" and SEARCH_PICKS & set(c[2])]
TRAIN = [c for c in COMMANDS if PROGRAMS.get(c[1]) == "train" and c not in SEARCH]


def test_the_pages_print_commands_of_each_kind():
    programs = {program for _, program, _ in COMMANDS}
    assert len(TRAIN) >= 40 and {"make", "python scripts/report.py", "tinygpt-prepare"} <= programs


def placeholder(arg: str) -> bool:
    # the reader's own: a run, a path, GPT-2's downloaded folder
    return ("<" in arg or "/path/to/" in arg or arg.startswith("data.path=")
            or arg.endswith("=gpt2/") or arg == "ckpt_path=latest")


def one_job_each(args: list[str]) -> list[list[str]]:
    """Single runs that together give every value of each sweep in `args` once, the others at
    their first value."""
    args = [a for a in args if a != "-m"]
    parsed = parse(args)
    sweeps = {o.input_line: o for o in parsed if o.is_sweep_override()}
    base = [a if a not in sweeps else f"{sweeps[a].key_or_group}={next(sweeps[a].sweep_iterator())}"
            for a in args]
    jobs = [base]  # an experiment's own sweep: tests/test_config.py
    for o in sweeps.values():
        jobs += [[*base, f"{o.key_or_group}={v}"] for v in list(o.sweep_string_iterator())[1:]]
    return jobs


@pytest.mark.parametrize("where,program,args", TRAIN, ids=[c[0] for c in TRAIN])
def test_each_training_command_composes_and_passes_the_checks(where, program, args, tmp_path,
                                                              monkeypatch):
    monkeypatch.chdir(tmp_path)  # what a check creates or looks for, here
    if any(placeholder(a) for a in args):  # a path or run of the reader's own: its keys alone
        keys = set(known_keys())
        given = [a.split("=", 1)[0].lstrip("+~") for a in args if a != "-m"]
        assert all(k.split("@")[0] in keys or k.startswith("hydra.") for k in given), where
        return
    for job in one_job_each(args):
        precheck(job)  # raises a UsageError naming the mistake


def test_each_search_command_composes_and_passes_the_checks(tmp_path):
    # in one process that sees the search extra (.venv/search); the sweeper draws the jobs, so
    # the command's own config is what is checked
    search = SEARCH_EXTRA
    assert SEARCH and (search / "hydra_plugins" / "hydra_optuna_sweeper").is_dir()
    script = ("import json, sys\nfrom tinygpt.training.precheck import precheck\n"
              "for args in json.loads(sys.argv[1]):\n    precheck(args)\n")
    p = subprocess.run([sys.executable, "-c", script, json.dumps([c[2] for c in SEARCH])],
                       cwd=tmp_path, capture_output=True, text=True, timeout=120,
                       env=os.environ | {"PYTHONPATH": str(search)})
    assert p.returncode == 0, (SEARCH, p.stderr[-2000:])


@pytest.mark.parametrize("where,program,args", [c for c in COMMANDS if c[1] != "make"
                                                and PROGRAMS.get(c[1]) != "train"],
                         ids=lambda v: v if isinstance(v, str) and ":" in v else "")
def test_each_other_command_takes_the_options_it_shows(where, program, args, tmp_path):
    name = program.removeprefix("python scripts/").removesuffix(".py").removeprefix("tinygpt-")
    if PROGRAMS.get(program) == "prepare" or name == "prepare":
        corpus = tmp_path / "book.txt"
        corpus.write_text("a line of text\n" * 50)
        args = [f"data.path={corpus}" if a.startswith("data.path=") else a for a in args]
        cfg = OmegaConf.to_object(task(compose(args, parse(args))))
        cfg.data.validate()
        check_windows(cfg.data, cfg.model.context_length)
        return
    if name in HYDRA_PROGRAMS:  # key=value of its own config
        keys = {f.name for f in dataclasses.fields(HYDRA_PROGRAMS[name])}
        assert all(a.split("=", 1)[0] in keys for a in args), (where, args)
        return
    help_text = program_help(name)
    flags = [a.split("=", 1)[0] for a in args if a.startswith("--")]
    assert all(re.search(rf"{re.escape(f)}\b", help_text) for f in flags), (where, flags)


def program_help(name: str) -> str:
    """What `tinygpt-<name> --help` prints, from its main() in this process."""
    main = __import__(f"tinygpt.cli.{name}", fromlist=["main"]).main  # one name at each layer
    out, argv = io.StringIO(), sys.argv
    sys.argv = [name, "--help"]
    try:
        with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
            main()
    finally:
        sys.argv = argv
    return out.getvalue()


def test_each_make_target_shown_is_in_the_makefile():
    targets = set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.M))
    shown = {args[0] for _, program, args in COMMANDS if program == "make" and args}
    assert shown and shown <= targets, shown - targets


README_RUNS = [c for c in TRAIN if c[0].startswith("README") and "-m" not in c[2]
               and not any(placeholder(a) or a.startswith("experiment=") for a in c[2])]


@pytest.mark.parametrize("where,program,args", README_RUNS, ids=[c[0] for c in README_RUNS])
def test_the_readmes_cheap_training_commands_run(where, program, args, train_run):
    result, _ = train_run(*args, "trainer.max_steps=2", "trainer.val_check_interval=2")
    assert result.steps == 2


def test_each_test_the_reliability_page_names_exists():
    # docs/reliability.md lists each promise beside the tests that hold it
    page = (ROOT / "docs" / "reliability.md").read_text()
    named = {n.split("[")[0] for n in re.findall(r"`(test_\w+(?:\[[^\]`]+\])?)`", page)}
    defined = {m for f in (ROOT / "tests").glob("test_*.py")
               for m in re.findall(r"^def (test_\w+)", f.read_text(), re.M)}
    assert len(named) > 40 and not named - defined, sorted(named - defined)
