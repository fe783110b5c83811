"""When a run saves its checkpoints (Lightning callbacks; the files themselves:
`tinygpt.weights.checkpoint`): written atomically, `last.ckpt` on a step schedule and at the
final step or a stop signal, the best by validation loss, each holding the run's settings; and
whether a checkpoint fits the model and tokenizer of the run that would continue it."""

from __future__ import annotations

import signal
import threading
from dataclasses import asdict
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from tinygpt.errors import StoppedAtOnce, UsageError
from tinygpt.metrics import VAL_LOSS
from tinygpt.model.gpt import GPTConfig
from tinygpt.run_dir import CHECKPOINTS, LAST, last_checkpoint
from tinygpt.training.lightning_adapter import stop_without_validation
from tinygpt.training.ranks import signal_on_any_rank
from tinygpt.weights.checkpoint import (
    RUN_SETTINGS,
    checkpoint_model_config,
    read_checkpoint,
    write_checkpoint,
)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, through `write_checkpoint`: a kill mid-write leaves the
    previous `last.ckpt` loadable, never a truncated one."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        write_checkpoint(checkpoint, path)


class FinalCheckpoint(L.Callback):
    """Writes `last.ckpt` where ModelCheckpoint's step schedule does not reach: the final step
    (when max_steps is not a multiple of its interval) and the step in which a SIGINT, SIGTERM
    or SIGUSR1 (a scheduler's preemption notice) arrived. Then a signal stops training; a
    second one interrupts at once (`StoppedAtOnce`), the last checkpoint written before it
    kept. Under several processes the ranks agree, at the end of each step, whether any of them
    got a signal, so all stop after the same step.

    At the end of that training step, so a resumed run repeats every later step exactly. A run
    that ends otherwise (trainer.max_time, an epoch count) gets its last.ckpt as training ends.
    A NaN stop writes nothing: the last good checkpoint stays.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.signum: int | None = None  # the signal that stopped training (agreed by all ranks)
        self._received: int | None = None  # written by the handler alone
        self._previous: dict[int, Any] = {}
        self._saved_at: int | None = None

    def _save(self, trainer: L.Trainer) -> None:
        if not trainer.fast_dev_run:  # Lightning's rule: a dev run saves nothing
            trainer.save_checkpoint(self.path, weights_only=False)
            self._saved_at = trainer.global_step

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1):
                self._previous[s] = signal.signal(s, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        if self._received is not None:
            raise StoppedAtOnce(signum)
        self._received = signum

    def on_train_batch_end(self, trainer, pl_module, outputs, batch: Any, batch_idx: int) -> None:
        # The handler may run at any bytecode, the all-reduce included: had it shared one
        # attribute with this assignment, a signal landing mid-reduce was overwritten and lost.
        self.signum = signal_on_any_rank(self._received, trainer)
        if self.signum is not None:
            stop_without_validation(trainer)
        elif not 0 < trainer.max_steps <= trainer.global_step:
            return
        else:  # the final step: stopping here makes Lightning validate the final weights
            trainer.should_stop = True
        self._save(trainer)

    def _restore_handlers(self) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous.clear()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore_handlers()
        if self._saved_at != trainer.global_step and not pl_module.stopped_on_nan:
            self._save(trainer)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule,
                     exception: BaseException) -> None:
        self._restore_handlers()  # a second signal, or a crash: the process's own come back


def checkpoint_callbacks(run_dir: Path, every_n_steps: int
                         ) -> tuple[FinalCheckpoint, ModelCheckpoint, list[L.Callback]]:
    """The final/signal checkpoint, the best by val loss, and with them `last.ckpt` every
    `every_n_steps` (0: only at the end), each replacing the one before."""
    final = FinalCheckpoint(last_checkpoint(run_dir))
    ckpt_dir = run_dir / CHECKPOINTS
    best = ModelCheckpoint(dirpath=ckpt_dir, filename="best-{step}", monitor=VAL_LOSS,
                           mode="min", save_top_k=1, auto_insert_metric_name=False)
    callbacks: list[L.Callback] = [best, final]
    if every_n_steps > 0:
        callbacks.append(ModelCheckpoint(dirpath=ckpt_dir, filename=Path(LAST).stem,
                                         save_top_k=1, every_n_train_steps=every_n_steps,
                                         enable_version_counter=False))
    return final, best, callbacks


class RunRecord(L.Callback):
    """Writes the run's settings into each checkpoint, so a resume from it, wherever the file
    has moved, knows what the run was (`tinygpt.training.resume.recorded_settings`)."""

    def __init__(self, record: dict[str, Any]):
        self.record = record

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        checkpoint[RUN_SETTINGS] = self.record


def check_checkpoint_fits(path: Path, cfg: GPTConfig, tokenizer: dict) -> None:
    """Refuse, before training starts, a checkpoint for another model or another tokenizer (a
    corpus that changed under the same settings trains another vocabulary)."""
    ckpt = read_checkpoint(path)
    theirs = checkpoint_model_config(ckpt, path)
    if theirs != cfg:
        ours = asdict(cfg)
        diff = ", ".join(f"{k}={v} (this run: {ours[k]})"
                         for k, v in asdict(theirs).items() if v != ours[k])
        raise UsageError(f"checkpoint {path} is for another model: {diff} "
                         "(use the same model.* and data settings, or start a new run)")
    if ckpt["hyper_parameters"].get("tokenizer") != tokenizer:
        raise UsageError(f"checkpoint {path} was trained with another tokenizer or vocabulary "
                         "(use the same data.tokenizer and corpus, or start a new run)")
