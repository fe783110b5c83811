"""What a training run prints while it runs: a bar over the steps on a terminal, plain lines
in a file or a CI log."""

from __future__ import annotations

import sys
import time
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ProgressBar, TQDMProgressBar

from tinygpt import metrics


class StepProgressBar(TQDMProgressBar):
    """One bar over the optimizer steps, `step k/max_steps`, for a step-based run (Lightning's
    own bar counts batches per epoch and reads `Epoch 4/-2` when only max_steps is set)."""

    def _by_step(self, trainer: L.Trainer) -> bool:
        return trainer.max_steps > 0

    def on_train_epoch_start(self, trainer: L.Trainer, *args: Any) -> None:
        if not self._by_step(trainer):
            return super().on_train_epoch_start(trainer, *args)
        bar = self.train_progress_bar
        if bar.total != trainer.max_steps:  # once: the bar spans the epochs
            bar.reset(total=trainer.max_steps)
            _show(bar, trainer.global_step)  # a resumed run starts where it stopped
            bar.set_description("step")

    def on_train_batch_end(self, trainer: L.Trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not self._by_step(trainer):
            return super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        bar, step = self.train_progress_bar, trainer.global_step
        if self.is_enabled and (step % self.refresh_rate == 0 or step == bar.total):
            _show(bar, step)
            bar.set_postfix(self.get_metrics(trainer, pl_module))

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict:
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)  # the run directory already names the run
        return metrics


class LineProgress(ProgressBar):
    """For a file or a CI log (no terminal): a line every `every` steps with the step, the train
    loss, tokens per second and the time left, and a line per validation."""

    def __init__(self, every: int):
        super().__init__()
        self.every = max(1, every)
        self._enabled = True
        self._t0, self._step0, self._tokens = 0.0, 0, 0

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def _say(self, trainer: L.Trainer, text: str) -> None:
        if self._enabled and trainer.is_global_zero:
            print(text, file=sys.stdout, flush=True)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._t0, self._step0, self._tokens = time.monotonic(), trainer.global_step, 0

    def on_train_batch_end(self, trainer: L.Trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._tokens += batch[1].numel() * trainer.world_size
        step, total = trainer.global_step, trainer.max_steps
        if step % self.every and step != total:
            return
        elapsed = time.monotonic() - self._t0
        done = max(1, step - self._step0)
        loss = trainer.callback_metrics.get(metrics.TRAIN_LOSS)
        parts = [f"step {step}/{total}" if total > 0 else f"step {step}",
                 f"train loss {float(loss):.3f}" if loss is not None else "",
                 f"{self._tokens / max(elapsed, 1e-9):,.0f} tokens/s"]
        if total > 0:
            parts.append(f"eta {_minutes(elapsed / done * (total - step))}")
        self._say(trainer, "  ".join(p for p in parts if p))

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        vals = {k: float(v) for k, v in trainer.callback_metrics.items()
                if k.startswith(metrics.VAL_PREFIX)}
        first = [k for k in (metrics.VAL_LOSS, metrics.VAL_BPB) if k in vals]
        text = "  ".join(f"{k} {vals[k]:.3f}" for k in first + sorted(set(vals) - set(first)))
        self._say(trainer, f"validation at step {trainer.global_step}: {text}")


def _show(bar: Any, n: int) -> None:
    """Move a tqdm bar to n and draw it (a bar counts increments; ours counts steps)."""
    if not bar.disable:
        bar.n = n
        bar.refresh()


def _minutes(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m}m{s:02d}s"


def on_terminal() -> bool:
    return sys.stdout.isatty()


def progress_callback(enabled: bool | None, every: int) -> list[L.Callback]:
    """The bar for a terminal, lines otherwise; none when trainer.enable_progress_bar=false."""
    if enabled is False:
        return []
    return [StepProgressBar() if on_terminal() else LineProgress(every)]
