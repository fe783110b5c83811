"""The package's shape, checked: the core grouped by concept, the Lightning + Hydra training wing
above it, the lab above that, entry points above them all; imports point one way between them,
and each module is one concept a reader can hold in their head."""

import ast
import importlib
import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
# What each part of the package may import of the project: the shared modules at the bottom, the
# model and the data beside each other, what uses them above, then training, the lab, the CLI.
SHARED = ("errors", "atomic", "run_dir", "metrics")
MAY_IMPORT = {
    "shared": {"shared"},
    "model": {"shared", "model"},
    "data": {"shared", "data"},
    "optim": {"shared", "optim"},
    "probes": {"shared", "model", "data", "probes"},
    "weights": {"shared", "model", "data", "weights"},
    "training": {"shared", "model", "data", "optim", "probes", "weights", "configs", "training"},
    "lab": {"shared", "model", "data", "optim", "probes", "weights", "configs", "training", "lab"},
    "cli": {"shared", "model", "data", "optim", "probes", "weights", "configs", "training", "lab",
            "cli"},
    "configs": {"configs"},
}
CORE = ("shared", "model", "data", "optim", "probes", "weights")  # plain PyTorch
WRAPPERS = {"lightning", "pytorch_lightning", "hydra", "omegaconf"}
MAX_LINES = 500  # one concept per module, whatever its length; this is only a ceiling


def part(path: Path) -> str:
    """The part of the package a module (or a module name) belongs to."""
    parts = path.relative_to(SRC / "tinygpt").with_suffix("").parts
    return "shared" if parts[0] in (*SHARED, "__init__") else parts[0]


def part_of(name: str) -> str | None:
    """The part a dotted module name of the project belongs to; None for anything else."""
    bits = name.split(".")
    if bits[0] != "tinygpt" or len(bits) == 1:
        return None
    return "shared" if bits[1] in SHARED else bits[1]


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


SOURCES = sorted((SRC / "tinygpt").rglob("*.py"))


def wrong_way(path: Path, here: str | None = None) -> list[str]:
    """The imports of a module (of the part `here`, by default where it lies) that point the
    wrong way."""
    here = here or part(path)
    bad = []
    for name in imported(path):
        there = part_of(name)
        if name.startswith(".") or (there and there not in MAY_IMPORT[here]) or (
                here in CORE and name.split(".")[0] in WRAPPERS):
            bad.append(name)
    return sorted(bad)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(SRC)))
def test_imports_point_one_way(path):
    assert not wrong_way(path), f"{part(path)} module imports {wrong_way(path)}"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(SRC)))
def test_no_module_is_over_the_ceiling(path):
    assert len(path.read_text().splitlines()) <= MAX_LINES


def test_the_folders_are_the_architecture():
    top = sorted(p.name for p in (SRC / "tinygpt").iterdir() if not p.name.startswith("_"))
    modules = [n for n in top if n.endswith(".py")]
    assert sorted(n.removesuffix(".py") for n in modules) == sorted(SHARED)
    assert {n for n in top if not n.endswith(".py")} == set(MAY_IMPORT) - {"shared"}


def test_the_rules_catch_a_wrong_way_import(tmp_path):
    # the checker itself: the model importing the data, the training wing, or Lightning
    for text in ("from tinygpt.data.tokenizer import get_tokenizer\n",
                 "from tinygpt.training.train import train\n", "import lightning as L\n"):
        probe = tmp_path / "probe.py"
        probe.write_text(text)
        assert wrong_way(probe, here="model"), text
    assert not wrong_way(SRC / "tinygpt" / "model" / "gpt.py")


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
    assert not resolves("tinygpt.tensorboard") and resolves("tinygpt.lab.report.stats")  # can fail


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


LAB_NAMES = re.compile(r"lab_?(3|4|iii|iv)(?![a-z0-9])|record_?\d", re.I)


def identifiers(path: Path) -> set[str]:
    """The names a module defines or uses: its functions, classes, arguments, variables and
    attributes."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, ast.Attribute):
            names.add(node.attr)
    return names


def test_names_say_what_not_when():
    # the docs keep "Lab IV" as a chapter's title; the code says "copy task"
    code = sorted(n for p in SOURCES for n in identifiers(p) if LAB_NAMES.search(n))
    configs = SRC / "tinygpt" / "configs"
    files = sorted(str(p.relative_to(configs)) for p in configs.rglob("*.yaml")
                   if LAB_NAMES.search(p.stem))
    comments = sorted(f"{p.relative_to(SRC)}:{i}" for p in [*SOURCES, *configs.rglob("*.yaml")]
                      for i, line in enumerate(p.read_text().splitlines(), 1)
                      if re.search(r"\blabs? (iii|iv|ii|i)\b|\blab[34]\b", line, re.I))
    assert not code and not files and not comments, (code, files, comments)
    assert LAB_NAMES.search("lab4_switches") and LAB_NAMES.search("record2")  # can fail


def test_no_experiment_picks_hydras_mode():
    # experiment=X is one run; a sweep is -m (its params in hydra.sweeper.params)
    configs = SRC / "tinygpt" / "configs"
    picking = sorted(p.name for p in configs.rglob("*.yaml")
                     if re.search(r"^\s+mode:", p.read_text(), re.M))
    assert not picking, picking


def test_each_entry_point_has_one_name_at_every_layer():
    # scripts/<name>.py -> tinygpt.cli.<name> -> the console script tinygpt-<name>
    import tomllib

    scripts = tomllib.loads((SRC.parent / "pyproject.toml").read_text())["project"]["scripts"]
    for script in sorted((SRC.parent / "scripts").glob("*.py")):
        name = script.stem
        assert f"from tinygpt.cli.{name} import main" in script.read_text(), script.name
        assert scripts[f"tinygpt-{name.replace('_', '-')}"] == f"tinygpt.cli.{name}:main"
    assert len(scripts) == len(list((SRC.parent / "scripts").glob("*.py")))


def test_the_librarys_map_is_the_tree():
    # docs/library.md lists every module of each folder, and nothing the tree does not hold
    page = (SRC.parent / "docs" / "library.md").read_text().split("## Where things are", 1)[1]
    rows = re.findall(r"^\| `(\w+)/` \| ([^|]+) \|", page, flags=re.M)
    assert rows, "the map's rows"
    for folder, cell in rows:
        listed = set(re.findall(r"`(\w+)/?`", cell))
        here = SRC / "tinygpt" / folder
        if folder in ("cli", "configs"):
            continue  # named by rule, not one by one
        modules = {p.stem for p in here.glob("*.py") if p.stem != "__init__"}
        modules |= {p.name for p in here.iterdir() if p.is_dir() and not p.name.startswith("_")}
        assert listed == modules, (folder, sorted(listed ^ modules))
    shared = set(re.findall(r"`(\w+)`", page.split("| (top) |", 1)[1].split("|", 1)[0]))
    assert shared == set(SHARED)
