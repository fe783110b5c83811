"""A single run's settings are composed once (the command line's composition is the run's; Hydra's
app is not started), each check runs once, no error message is written twice, and the settings
reach the Trainer through few modules without wandering back and forth."""

import ast
import difflib
import sys
from collections import Counter
from pathlib import Path

import lightning as L
import pytest
from hydra._internal.hydra import Hydra

import tinygpt.cli.train as cli
from tinygpt.data.config import DataConfig
from tinygpt.training import config, datamodule, resume, settings

SRC = Path(__file__).resolve().parents[1] / "src" / "tinygpt"
# The checks a run makes, by their one home; each must run once per run.
CHECKS = {
    "settle": settings.settle, "check_values": settings.check_values,
    "DataConfig.validate": DataConfig.validate, "refuse_changes": resume.refuse_changes,
    "resume_source": resume.resume_source, "split_batch": datamodule.split_batch,
}
# Ours (the command line's, before torch loads) and Hydra's app's (its own, inside hydra.main: a
# sweep's and a run given Hydra's flags).
COMPOSITIONS = {config.compose_train: "ours", Hydra.run: "hydra"}
SETTINGS_TYPES = ("DictConfig", "Settings", "TrainConfig", "ModelConfig", "DataConfig",
                  "OptimConfig", "TrainerConfig", "SampleConfig")


class Trace:
    """Counts calls of the checks and compositions; and, until the Trainer is built, the project
    modules whose functions are handed the settings (or a part of them), in order."""

    def __init__(self):
        self.codes = {f.__code__: name for name, f in CHECKS.items()} | {
            f.__code__: f"composed by {who}" for f, who in COMPOSITIONS.items()}
        self.calls: Counter = Counter()
        self.stops: list[str] = []
        self.following = True

    def __call__(self, frame, event, arg):
        if event != "call":
            return
        code = frame.f_code
        if code in self.codes:
            self.calls[self.codes[code]] += 1
        if not self.following:  # from here on only counts (every frame's locals: a third slower)
            return
        module = frame.f_globals.get("__name__", "")
        if code.co_name == "__init__" and module == L.Trainer.__module__:
            self.following = False  # the settings have reached the Trainer
        # a function handed the settings, not a method (or the constructor) of the settings
        args = frame.f_locals
        handed = [v for k, v in args.items() if k != "self"]
        if module.startswith("tinygpt.") and any(
                type(v).__name__ in SETTINGS_TYPES for v in handed) and type(
                args.get("self")).__name__ not in SETTINGS_TYPES:
            self.stops.append(f"{module}.{code.co_name}")



def run_cli(monkeypatch, *args: str) -> Trace:
    """tinygpt-train in this process, traced; its exit code must be 0."""
    trace = Trace()

    def exit_now(code=0):
        raise SystemExit(code)

    monkeypatch.setattr(sys, "argv", ["tinygpt-train", *args])
    monkeypatch.setattr(cli, "exit_now", exit_now)
    sys.setprofile(trace)
    try:
        with pytest.raises(SystemExit) as stop:
            cli.main()
    finally:
        sys.setprofile(None)
    assert stop.value.code in (0, None)
    return trace


@pytest.fixture
def smoke_args(tmp_path, cache_dir, smoke):
    return [*smoke, "trainer.max_steps=4", "trainer.val_check_interval=4", "probes.every=0",
            f"data.cache_dir={cache_dir}", f"hydra.run.dir={tmp_path / 'run'}"]


def test_a_run_composes_once_and_checks_once(monkeypatch, smoke_args):
    trace = run_cli(monkeypatch, *smoke_args)
    assert trace.calls["composed by ours"] == 1 and trace.calls["composed by hydra"] == 0
    assert {name: trace.calls[name] for name in CHECKS} == {
        "settle": 1, "check_values": 1, "DataConfig.validate": 1, "refuse_changes": 0,
        "resume_source": 1, "split_batch": 1}


def test_a_resume_composes_once_and_checks_once(monkeypatch, smoke_args):
    run_cli(monkeypatch, *smoke_args)
    trace = run_cli(monkeypatch, *smoke_args, "resume=true", "trainer.max_steps=6")
    assert trace.calls["composed by ours"] == 1 and trace.calls["composed by hydra"] == 0
    assert {name: trace.calls[name] for name in CHECKS} == {
        "settle": 1, "check_values": 1, "DataConfig.validate": 1, "refuse_changes": 1,
        "resume_source": 1, "split_batch": 1}


def test_the_settings_reach_the_trainer_through_few_modules(monkeypatch, smoke_args):
    stops = run_cli(monkeypatch, *smoke_args).stops
    stops = [s.rsplit(".", 1)[0] for s in stops]
    visits = [m for i, m in enumerate(stops) if i == 0 or stops[i - 1] != m]
    returns = sum(1 for i, m in enumerate(visits) if m in visits[:i])
    assert len(set(visits)) <= 12 and returns <= 3, visits


def messages() -> list[tuple[str, str]]:
    """The literal text of every error a user can be shown: (where, text)."""
    out = []
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and node.args and getattr(
                    node.func, "id", getattr(node.func, "attr", "")) in ("UsageError",
                                                                         "exit_usage")):
                continue
            parts = [n.value for n in ast.walk(node.args[0])
                     if isinstance(n, ast.Constant) and isinstance(n.value, str)]
            text = " ".join(p.strip() for p in parts if p.strip())
            if len(text) > 20:  # a message, not a word handed on
                out.append((f"{path.relative_to(SRC)}:{node.lineno}", text))
    return out


def twins(found: list[tuple[str, str]]) -> list:
    """Pairs of messages that say nearly the same words."""
    return [(a, b) for i, a in enumerate(found) for b in found[i + 1:]
            if difflib.SequenceMatcher(None, a[1], b[1]).ratio() > 0.9]


def test_no_error_message_is_written_twice():
    found = messages()
    assert len(found) > 50  # the scan sees them
    assert not twins(found)
    # and the comparison catches a message said twice in other words
    said = "data.name=text needs a file (set data.path=/path/to/file.txt)"
    assert twins([("a", said), ("b", said.replace("a file", "one file"))])
