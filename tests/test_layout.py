"""The package's shape, checked: three wings whose imports point one way (lab -> training ->
core), entry points above them all, and no module too long to hold in one's head."""

import ast
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
