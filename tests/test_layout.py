"""The package's shape, checked: three wings whose imports point one way (lab -> training ->
core), entry points above them all, and no module too long to hold in one's head."""

import ast
import importlib
import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
WINGS = ("cli", "lab", "training")  # everything else under tinygpt/ is the core
# What each part may not import (first part of the module path, or the project's own wings).
FORBIDDEN = {
    "core": {"lightning", "pytorch_lightning", "hydra", "omegaconf", "tinygpt.training",
             "tinygpt.lab", "tinygpt.cli", "scripts"},
    "training": {"tinygpt.lab", "tinygpt.cli", "scripts"},
    "lab": {"tinygpt.cli", "scripts"},
    "cli": {"scripts"},
}
MAX_LINES = 300


def wing(path: Path) -> str:
    parts = path.relative_to(SRC / "tinygpt").parts
    return parts[0] if len(parts) > 1 and parts[0] in WINGS else "core"


def imported(path: Path) -> set[str]:
    """Every module a file imports, at its top or inside a function."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add("." * node.level + (node.module or ""))  # relative: refused below
    return names


def breaks(name: str, rule: str) -> bool:
    return name == rule or name.startswith(rule + ".")


SOURCES = sorted((SRC / "tinygpt").rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(SRC)))
def test_imports_point_one_way(path):
    names = imported(path)
    assert not [n for n in names if n.startswith(".")], "relative imports hide the direction"
    bad = sorted(n for n in names for rule in FORBIDDEN[wing(path)] if breaks(n, rule))
    assert not bad, f"{wing(path)} module imports {bad}"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(SRC)))
def test_no_module_is_over_300_lines(path):
    assert len(path.read_text().splitlines()) <= MAX_LINES


def test_the_rules_catch_a_wrong_way_import(tmp_path):
    # the checker itself: a core module importing the training wing, and one importing Lightning
    core = SRC / "tinygpt" / "model.py"
    for text in ("from tinygpt.training.train import train\n", "import lightning as L\n"):
        f = tmp_path / "probe.py"
        f.write_text(text)
        assert any(breaks(n, r) for n in imported(f) for r in FORBIDDEN[wing(core)])


def test_scripts_are_thin_entry_points():
    for script in sorted((SRC.parent / "scripts").glob("*.py")):
        code = [ln for ln in script.read_text().splitlines() if ln.strip()]
        assert len(code) <= 6 and any("from tinygpt.cli." in ln for ln in code), script.name


def names_mentioned(text: str) -> set[str]:
    return set(re.findall(r"\btinygpt(?:\.[A-Za-z_][A-Za-z0-9_]*)+", text))


def resolves(name: str) -> bool:
    """Whether a dotted name is a module of the package, or an attribute of one."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


def test_every_module_the_code_names_exists():
    # docstrings and comments name modules (`tinygpt.training.tensorboard_layout`): none stale
    files = [*SOURCES, SRC.parent / "pyproject.toml"]
    stale = sorted({(p.name, n) for p in files for n in names_mentioned(p.read_text())
                    if not resolves(n.rstrip("."))})
    assert not stale, stale
    assert not resolves("tinygpt.tensorboard") and resolves("tinygpt.lab.stats")  # can fail


def private_uses(path: Path) -> list[str]:
    """Private names (`_x`, not dunders) a module reaches into on another object than self/cls,
    or imports from torch and Lightning."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if (isinstance(node, ast.Attribute) and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))):
            found.append(f"{ast.unparse(node)} (line {node.lineno})")
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in (
                "torch", "lightning", "lightning_fabric") and (
                any(a.name.startswith("_") for a in node.names) or "._" in node.module):
            found.append(f"from {node.module} import ... (line {node.lineno})")
    return found


# The standard library's, each kept for what it buys (cli/finish.py says what, measured).
STDLIB_PRIVATE = {"os._exit", "atexit._run_exitfuncs"}


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(SRC)))
def test_no_private_torch_or_lightning_name_outside_the_adapter(path):
    if path.name == "lightning_adapter.py":
        return
    uses = [u for u in private_uses(path) if u.split(" ")[0] not in STDLIB_PRIVATE]
    assert not uses, uses


def test_the_private_name_check_can_fail(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("trainer._logger_connector.should_update_logs\n"
                     "from torch._dynamo import reset\n")
    assert len(private_uses(probe)) == 2
