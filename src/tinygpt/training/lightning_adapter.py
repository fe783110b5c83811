"""The one place that leans on Lightning behaviour no public hook offers. Written against
Lightning 2.6.6; `tests/test_lightning_adapter.py` fails if a Lightning release changes it."""

from __future__ import annotations

import lightning as L


def stop_without_validation(trainer: L.Trainer) -> None:
    """End training after this step without validating. A stop otherwise validates first, which
    the final step wants and a signal or a NaN does not. Lightning offers `should_stop` alone;
    its fit loop validates only while `trainer.enable_validation` holds, which reads
    `limit_val_batches` each time it is asked."""
    trainer.should_stop = True
    trainer.limit_val_batches = 0
