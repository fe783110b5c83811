"""The `trainer` node of the schema: `lightning.Trainer`'s arguments that a config can set, with
Lightning's defaults, so any of them is a `trainer.<name>=...` override and a misspelt one fails
before Lightning loads. Written out by hand; `tests/test_trainer_config.py` holds it to the
installed Lightning's signature (names and defaults). `Any`: an argument Lightning takes in
several types (a string, a number, a list), which Lightning itself checks.

Values only: the Trainer is built from them as they are (`trainer_arguments`), never through
Hydra's `instantiate`, so no config names a Python object to build; `trainer.strategy` and
`trainer.profiler` take Lightning's names (ddp, fsdp_blocks, simple), and an object from Python
(`tinygpt.training.train.train(..., callbacks=...)`, or a Trainer of your own)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

# Trainer arguments a run supplies itself, as objects: not config values.
SUPPLIED = ("logger", "callbacks", "plugins", "default_root_dir")


@dataclass
class TrainerConfig:
    accelerator: Any = "auto"
    strategy: Any = "auto"
    devices: Any = "auto"
    num_nodes: int = 1
    precision: Any = None
    fast_dev_run: Any = False
    max_epochs: int | None = None
    min_epochs: int | None = None
    max_steps: int = -1
    min_steps: int | None = None
    max_time: Any = None
    limit_train_batches: Any = None
    limit_val_batches: Any = None
    limit_test_batches: Any = None
    limit_predict_batches: Any = None
    overfit_batches: Any = 0.0
    val_check_interval: Any = None
    check_val_every_n_epoch: int | None = 1
    num_sanity_val_steps: int | None = None
    log_every_n_steps: int | None = None
    enable_checkpointing: bool | None = None
    enable_progress_bar: bool | None = None
    enable_model_summary: bool | None = None
    accumulate_grad_batches: int = 1
    gradient_clip_val: Any = None
    gradient_clip_algorithm: str | None = None
    deterministic: Any = None
    benchmark: bool | None = None
    inference_mode: bool = True
    use_distributed_sampler: bool = True
    profiler: Any = None
    detect_anomaly: bool = False
    barebones: bool = False
    sync_batchnorm: bool = False
    reload_dataloaders_every_n_epochs: int = 0
    enable_autolog_hparams: bool = True
    model_registry: str | None = None


def trainer_arguments(t: TrainerConfig) -> dict[str, Any]:
    """The Trainer's keyword arguments these settings give."""
    return asdict(t)
