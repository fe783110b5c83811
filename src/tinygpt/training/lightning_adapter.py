"""The one place that leans on Lightning beyond its public hooks. Written against Lightning 2.6.6;
`tests/test_lightning_adapter.py` fails if a Lightning release changes any of it.

- A stop that skips validation (no public hook offers one).
- The precision strings Lightning accepts (a private type), so a bad one is answered before
  Lightning loads.
- Which training steps the logger writes (the logger connector's rule), so a step that will not
  be written does not log.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

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
