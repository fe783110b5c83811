"""The commands a run prints for its user to paste back: the same Python, the same way of starting
(scripts/*.py or the console scripts), every word quoted for a shell."""

from __future__ import annotations

import os
import re
import shlex
import sys
from pathlib import Path

# What Hydra's override parser takes unquoted (the folder names run_dir makes stay within it).
_HYDRA_PLAIN = re.compile(r"[A-Za-z0-9_.:+@%/-]+")


def as_typed(path: str | Path) -> str:
    """A path relative to the working directory where it lies below it, else absolute."""
    path = Path(path).absolute()
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)


def entry_point(name: str) -> list[str]:
    """How to start the entry point `name` (train, generate, report) the way this process was
    started: this Python with the checkout's scripts/<name>.py, else the console script."""
    argv0 = Path(sys.argv[0])
    if argv0.suffix == ".py" and argv0.parent.name == "scripts":
        return [as_typed(sys.executable), as_typed(argv0.parent / f"{name}.py")]
    return [f"tinygpt-{name.replace('_', '-')}"]


def tool(name: str) -> list[str]:
    """A program installed beside this Python (tensorboard), so it runs without an active venv."""
    beside = Path(sys.executable).parent / name
    return [as_typed(beside)] if beside.is_file() and os.access(beside, os.X_OK) else [name]


def override(key: str, value: str | Path) -> str:
    """`key=value` as Hydra reads it back: quoted for Hydra where the value holds more than plain
    characters (a space, `=`, `,`, a quote)."""
    text = str(value)
    if not _HYDRA_PLAIN.fullmatch(text):
        q = '"' if '"' not in text else "'"  # double quotes read best inside a shell's single
        # Hydra's rule: backslashes are literal except those before a quote (or the closing one)
        text = re.sub(rf"(\\*){q}", lambda m: m.group(1) * 2 + "\\" + q, text)
        text = q + re.sub(r"(\\+)$", lambda m: m.group(1) * 2, text) + q
    return f"{key}={text}"


def command(words: list[str]) -> str:
    """One line a shell runs as these words."""
    return shlex.join(words)
