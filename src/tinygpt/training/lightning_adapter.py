"""The one place that leans on Lightning beyond its public hooks. Written against Lightning 2.6.6;
`tests/test_lightning_adapter.py` fails if a Lightning release changes any of it.

- A stop that skips validation (no public hook offers one).
- `lightning.Trainer`'s arguments, read from its source without importing Lightning: the import
  takes seconds, and a config mistake should be answered before it (the schema's trainer node).
- The precision strings Lightning accepts, for the same early answer.
- Which training steps the logger writes (the logger connector's rule), so a step that will not
  be written does not log.
"""

from __future__ import annotations

import ast
import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import lightning as L

# Every value `Trainer(precision=...)` takes (its _PRECISION_INPUT literals), besides our "auto".
PRECISIONS = ("64-true", "32-true", "16-true", "bf16-true", "16-mixed", "bf16-mixed",
              "transformer-engine", "transformer-engine-float16", "64", "32", "16", "bf16",
              64, 32, 16)


def stop_without_validation(trainer: L.Trainer) -> None:
    """End training after this step without validating. A stop otherwise validates first, which
    the final step wants and a signal or a NaN does not. Lightning offers `should_stop` alone;
    its fit loop validates only while `trainer.enable_validation` holds, which reads
    `limit_val_batches` each time it is asked."""
    trainer.should_stop = True
    trainer.limit_val_batches = 0


def logger_writes_this_step(trainer: L.Trainer) -> bool:
    """Whether the values a training step logs will be written: every `log_every_n_steps`, by
    the rule of Lightning's logger connector (not public), asked during the step."""
    return trainer._logger_connector.should_update_logs


@dataclass(frozen=True)
class TrainerArg:
    """One argument of `lightning.Trainer.__init__`: its name, annotation (as written) and
    default."""

    name: str
    annotation: str
    default: Any


@lru_cache(maxsize=1)
def trainer_args() -> tuple[TrainerArg, ...]:
    """`lightning.Trainer.__init__`'s arguments, parsed from Lightning's source (no import)."""
    spec = importlib.util.find_spec("lightning")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("lightning is not installed")
    source = Path(spec.submodule_search_locations[0]) / "pytorch" / "trainer" / "trainer.py"
    tree = ast.parse(source.read_text(encoding="utf-8"))
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Trainer")
    init = next(n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "__init__")
    a = init.args
    positional = a.posonlyargs + a.args
    defaults = [None] * (len(positional) - len(a.defaults)) + list(a.defaults)
    pairs = [*zip(positional, defaults, strict=True), *zip(a.kwonlyargs, a.kw_defaults,
                                                             strict=True)]
    return tuple(TrainerArg(arg.arg, ast.unparse(arg.annotation) if arg.annotation else "",
                            ast.literal_eval(default))
                 for arg, default in pairs if arg.arg != "self" and default is not None)
