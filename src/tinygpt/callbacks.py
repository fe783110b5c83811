"""TensorBoard extras hung off the Trainer: throughput, text samples, attention maps and
attention diagnostics, checkpoints on a schedule or a signal."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.strategies import FSDPStrategy
from lightning.pytorch.utilities import rank_zero_only, rank_zero_warn

from tinygpt.diagnostics import attention_stats, qk_grad_norms, uniform_entropy
from tinygpt.generate import generate
from tinygpt.model import attention_overrides


class RunLogger(TensorBoardLogger):
    """TensorBoardLogger that keeps one event file per run.

    Lightning finalises its logger when fit (or validate) ends, which closes the event file;
    the training script still logs the final validation and the HPARAMS summary after that,
    and a closed writer would open a second file. Here finalize only flushes; `close()` ends
    the run.
    """

    def finalize(self, status: str) -> None:
        if self._experiment is not None:
            self.experiment.flush()

    def close(self) -> None:
        super().finalize("success")


class TokensPerSecond(L.Callback):
    """Logs `train/tokens_per_sec` over the training batches since the last log step.

    Intervals that contain a validation are dropped, so the figure is training speed alone.
    """

    def __init__(self) -> None:
        self._t0: float | None = None
        self._tokens = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch: Any, batch_idx: int) -> None:
        now = time.perf_counter()
        if self._t0 is None:  # the first batch includes start-up costs; start timing after it
            self._t0, self._tokens = now, 0
            return
        self._tokens += batch[1].numel() * trainer.world_size
        if (trainer.global_step % trainer.log_every_n_steps) == 0:
            pl_module.log("train/tokens_per_sec", self._tokens / (now - self._t0))
            self._t0, self._tokens = now, 0

    def on_validation_end(self, trainer, pl_module) -> None:
        self._t0 = None


def stopped_on_nan(pl_module: L.LightningModule) -> bool:
    """Training stopped on a NaN loss: a forward pass may give NaN weights and probabilities."""
    return getattr(pl_module, "nonfinite_step", None) is not None


class SampleText(L.Callback):
    """At each validation, logs a continuation of a fixed prompt under `samples/`."""

    def __init__(self, prompt: str, max_new_tokens: int = 64, temperature: float = 0.8,
                 top_k: int | None = 40, seed: int = 0):
        self.prompt, self.max_new_tokens = prompt, max_new_tokens
        self.temperature, self.top_k, self.seed = temperature, top_k, seed
        self.last: str | None = None

    @rank_zero_only
    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.logger is None or stopped_on_nan(pl_module):
            return
        tok = pl_module.tokenizer
        prompt_ids = tok.encode(self.prompt) or [tok.eot_token or 0]
        idx = torch.tensor([prompt_ids], device=pl_module.device)
        gen = torch.Generator(device=pl_module.device).manual_seed(self.seed)
        out = generate(pl_module.model, idx, self.max_new_tokens, self.temperature, self.top_k,
                       generator=gen)
        self.last = tok.decode(out[0].tolist())
        # Markdown would eat the text's newlines and indentation: show it as a code block.
        text = "    " + self.last.replace("\n", "\n    ")
        trainer.logger.experiment.add_text("samples/text", text, trainer.global_step)


def weights_image(weights: torch.Tensor, pixels: int = 4) -> torch.Tensor:
    """Attention weights (heads, T, T) -> one grey image (H, W), heads side by side."""
    heads, T, _ = weights.shape
    gap = torch.full((T, 1), 0.5)  # a grey line between heads
    tiles = []
    for h in range(heads):
        tiles += [1.0 - weights[h].float().cpu(), gap]  # dark = strong attention
    img = torch.cat(tiles[:-1], dim=1)
    return F.interpolate(img[None, None], scale_factor=pixels, mode="nearest")[0, 0]


class AttentionMaps(L.Callback):
    """At each validation, logs the first and last layer's attention weights for a fixed input."""

    def __init__(self, num_tokens: int = 32):
        self.num_tokens = num_tokens

    @rank_zero_only
    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.logger is None or stopped_on_nan(pl_module):
            return
        x = trainer.datamodule.val_set[0][0][: self.num_tokens][None].to(pl_module.device)
        model = pl_module.model
        was_training = model.training
        model.eval()
        with torch.no_grad(), attention_overrides(model, backend="manual"):
            _, weights = model(x, return_weights=True)
        model.train(was_training)
        layers = sorted({0, len(weights) - 1})
        for i in layers:
            trainer.logger.experiment.add_image(
                f"attention/layer_{i}", weights_image(weights[i][0]), trainer.global_step,
                dataformats="HW",
            )


class AttentionDiagnostics(L.Callback):
    """Every `every_n_steps`, logs how each layer's attention behaves on a fixed validation
    batch, and the gradient that reaches its W_q and W_k (before clipping), all under
    `attention/`: entropy/layer_i (nats; entropy_uniform is its maximum) and
    entropy/layer_i/head_j, max_weight/layer_i (1.0 = saturated), score_std/layer_i (spread
    of the pre-softmax scores), grad_wq/layer_i, grad_wk/layer_i."""

    def __init__(self, every_n_steps: int = 50, num_sequences: int = 4):
        self.every_n_steps, self.num_sequences = every_n_steps, num_sequences
        self._idx: torch.Tensor | None = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.every_n_steps and isinstance(trainer.strategy, FSDPStrategy):
            # Sharded weights: a forward pass on one rank alone would wait for the others.
            rank_zero_warn("attention diagnostics are off under FSDP (diagnostics_every=0)")
            self.every_n_steps = 0

    @rank_zero_only
    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        step = trainer.global_step  # the weights these gradients belong to: `step` updates done
        if not self.every_n_steps or step % self.every_n_steps or trainer.logger is None:
            return
        metrics: dict[str, float] = {}
        for i, (g_q, g_k) in enumerate(qk_grad_norms(pl_module.model) or []):
            metrics |= {f"attention/grad_wq/layer_{i}": g_q, f"attention/grad_wk/layer_{i}": g_k}
        trainer.logger.log_metrics(metrics | self._attention_metrics(trainer, pl_module), step)

    @rank_zero_only
    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # The final weights too, so a run's last point describes the model it ends with.
        if self.every_n_steps and trainer.logger is not None:
            metrics = self._attention_metrics(trainer, pl_module)
            trainer.logger.log_metrics(metrics, step=trainer.global_step)

    def _attention_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict:
        if self._idx is None:
            val = trainer.datamodule.val_set
            self._idx = torch.stack([val[i][0] for i in range(min(self.num_sequences, len(val)))])
        model = pl_module.model
        with torch.autocast(pl_module.device.type, enabled=False):  # statistics in full precision
            stats = attention_stats(model, self._idx.to(pl_module.device))
        causal = model.blocks[0].attn.causal
        metrics = {"attention/entropy_uniform": uniform_entropy(self._idx.shape[1], causal)}
        for i, st in enumerate(stats):
            metrics |= {
                f"attention/entropy/layer_{i}": st.entropy.mean().item(),
                f"attention/max_weight/layer_{i}": st.max_weight.mean().item(),
                f"attention/score_std/layer_{i}": st.score_std.mean().item(),
            }
            metrics |= {f"attention/entropy/layer_{i}/head_{h}": e
                        for h, e in enumerate(st.entropy.tolist())}
        return metrics


class LastCheckpoint(L.Callback):
    """Writes `last.ckpt` every `every_n_steps`, at the final step, and on SIGINT/SIGTERM.

    Always at the end of a training step, so a resumed run continues exactly (a checkpoint
    taken after fit ends would shift the logged step numbers by one). On a signal the step
    finishes, `last.ckpt` is written and training stops; a second signal interrupts at once.
    """

    def __init__(self, path: str | Path, every_n_steps: int = 0):
        self.path, self.every_n_steps = Path(path), every_n_steps
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self._previous[s] = signal.signal(s, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum

    def on_train_batch_end(self, trainer, pl_module, outputs, batch: Any, batch_idx: int) -> None:
        step = trainer.global_step
        final = 0 < trainer.max_steps <= step
        periodic = self.every_n_steps > 0 and step % self.every_n_steps == 0
        if self.signum is not None:
            trainer.should_stop = True
        if final or periodic or self.signum is not None:
            trainer.save_checkpoint(self.path, weights_only=False)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous.clear()
