"""Callbacks hung off the Trainer: throughput and MFU, text samples, attention maps and
attention diagnostics, the checkpoint of the final step or a signal."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import LearningRateMonitor, ThroughputMonitor
from lightning.pytorch.strategies import FSDPStrategy
from lightning.pytorch.trainer.states import RunningStage
from lightning.pytorch.utilities import rank_zero_only, rank_zero_warn

from tinygpt.diagnostics import attention_stats, qk_grad_norms, uniform_entropy
from tinygpt.evaluate import longer_context
from tinygpt.generate import SampleConfig, generate
from tinygpt.model import attention_overrides, evaluating
from tinygpt.precision import matmul_gflops
from tinygpt.tensorboard import attention_figure, custom_scalars_layout, token_label


class LearningRate(LearningRateMonitor):
    """Lightning's LearningRateMonitor, logging one `train/lr` while every parameter group has
    the same rate (ours differ only in weight decay), instead of `train/lr/<group>` per group."""

    def _extract_stats(self, trainer: L.Trainer, interval: str) -> dict[str, float]:
        stats = super()._extract_stats(trainer, interval)
        groups = {k: v for k, v in stats.items() if k.startswith("train/lr/")}
        if groups and len(set(groups.values())) == 1:
            stats = {k: v for k, v in stats.items() if k not in groups}
            stats["train/lr"] = next(iter(groups.values()))
        return stats


class Throughput(ThroughputMonitor):
    """Lightning's ThroughputMonitor with tokens as its items, logged as `train/tokens_per_sec`
    (all devices) and `train/mfu` (the module's `flops_per_batch` per second over the peak).

    The peak: `peak_tflops` if given, else Lightning's table for GPUs, else (CPUs, which the
    table lacks) a measured dense matmul rate in the training dtype.
    """

    def __init__(self, window: int, peak_tflops: float | None = None):
        super().__init__(batch_size_fn=lambda b: b[1].shape[0], length_fn=lambda b: b[1].numel(),
                         window_size=max(2, window))
        self.peak_tflops = peak_tflops

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        peak = self.peak_tflops * 1e12 if self.peak_tflops else self.available_flops
        if peak is None and trainer.strategy.root_device.type == "cpu":
            dtype = torch.bfloat16 if trainer.precision.startswith("bf16") else torch.float32
            peak = matmul_gflops(dtype, 1024, 1024, 1024, budget_s=0.2) * 1e9
        self.available_flops = peak
        for t in self._throughputs.values():
            t.available_flops = peak

    def _compute(self, trainer: L.Trainer, iter_num: int | None = None) -> None:
        # Only training, and only the two numbers a reader wants, under the project's names.
        if trainer.state.stage != RunningStage.TRAINING:
            return
        if not trainer._logger_connector.should_update_logs:
            return
        m = self._throughputs[RunningStage.TRAINING].compute()
        out = {}
        if "device/items_per_sec" in m:
            out["train/tokens_per_sec"] = m["device/items_per_sec"] * trainer.world_size
        if "device/mfu" in m:
            out["train/mfu"] = m["device/mfu"]
        for logger in trainer.loggers:
            logger.log_metrics(out, step=trainer.global_step)




def stopped_on_nan(pl_module: L.LightningModule) -> bool:
    """Training stopped on a NaN loss: a forward pass may give NaN weights and probabilities."""
    return getattr(pl_module, "nonfinite_step", None) is not None


class SampleText(L.Callback):
    """At each validation, logs a continuation of a fixed prompt under `samples/`."""

    def __init__(self, cfg: SampleConfig, seed: int = 0):
        self.cfg, self.seed = cfg, seed
        self.last: str | None = None

    @rank_zero_only
    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.logger is None or stopped_on_nan(pl_module):
            return
        tok, c = pl_module.tokenizer, self.cfg
        prompt_ids = tok.encode(c.prompt) or [tok.eot_token or 0]
        idx = torch.tensor([prompt_ids], device=pl_module.device)
        gen = torch.Generator(device=pl_module.device).manual_seed(self.seed)
        out = generate(pl_module.model, idx, c.max_new_tokens, c.temperature, c.top_k,
                       generator=gen)
        self.last = tok.decode(out[0].tolist())
        # Markdown would eat the text's newlines and indentation: show it as a code block.
        text = "    " + self.last.replace("\n", "\n    ")
        trainer.logger.experiment.add_text("samples/text", text, trainer.global_step)


class AttentionMaps(L.Callback):
    """At each validation, logs the first and last layer's attention weights for a fixed input
    as labelled heatmaps, one per head (`attention/layer_<i>`)."""

    def __init__(self, num_tokens: int = 32):
        self.num_tokens = num_tokens

    @rank_zero_only
    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.logger is None or stopped_on_nan(pl_module):
            return
        x = trainer.datamodule.val_set[0][0][: self.num_tokens][None].to(pl_module.device)
        model = pl_module.model
        with evaluating(model), torch.no_grad(), attention_overrides(model, backend="manual"):
            _, weights = model(x, return_weights=True)
        tok = pl_module.tokenizer
        labels = [token_label(tok.decode([t])) for t in x[0].tolist()]
        for i in sorted({0, len(weights) - 1}):
            fig = attention_figure(weights[i][0], labels,
                                   f"layer {i} at step {trainer.global_step}")
            trainer.logger.experiment.add_figure(f"attention/layer_{i}", fig,
                                                 trainer.global_step, close=True)


class LongContextEval(L.Callback):
    """At each validation, for positions that are not a learned table (rope, alibi, none): the
    validation text in windows `factor` times the training context (`val/loss_2x`, `val/bpb_2x`)
    and the same tokens in windows of the training context (`val/bpb_2x_ref`). Does the model
    use the longer context, or break?"""

    def __init__(self, factor: int = 2):
        self.factor = factor

    @rank_zero_only
    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        model = pl_module.model
        if (trainer.sanity_checking or trainer.logger is None or stopped_on_nan(pl_module)
                or not model.reaches_beyond_context or isinstance(trainer.strategy, FSDPStrategy)):
            return
        with torch.autocast(pl_module.device.type, enabled=False):
            scores = longer_context(model, trainer.datamodule.val_ids,
                                    pl_module.token_bytes.cpu(), self.factor)
        if scores is None:
            return
        long, ref = scores
        trainer.logger.log_metrics({f"val/loss_{self.factor}x": long.nats_per_token,
                                    f"val/bpb_{self.factor}x": long.bpb,
                                    f"val/bpb_{self.factor}x_ref": ref.bpb},
                                   step=trainer.global_step)


class TensorBoardLayout(L.Callback):
    """Writes the Custom Scalars layout (`tinygpt.tensorboard`) once, when training starts."""

    @rank_zero_only
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        writer = getattr(trainer.logger, "experiment", None)
        if hasattr(writer, "add_custom_scalars"):  # not under fast_dev_run's dummy logger
            model = pl_module.model
            writer.add_custom_scalars(custom_scalars_layout(
                len(model.blocks), longer_context=model.reaches_beyond_context))


def generation_speed(model: torch.nn.Module, new_tokens: int = 64, batch: int = 4) -> float:
    """Tokens per second of greedy generation with the KV cache, from a one-token prompt."""
    idx = torch.zeros(batch, 1, dtype=torch.long, device=next(model.parameters()).device)
    with torch.autocast(idx.device.type, enabled=False):
        start = time.perf_counter()
        generate(model, idx, new_tokens, temperature=0)
        return batch * new_tokens / (time.perf_counter() - start)


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
        if trainer.is_global_zero and trainer.logger is not None:  # a constant of the shape
            cfg = pl_module.model.cfg
            trainer.logger.log_metrics(
                {"attention/kv_cache_bytes_per_token": cfg.kv_cache_bytes_per_token()}, step=0)

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
        # The final weights too, so a run's last point describes the model it ends with; and
        # how fast they generate with their KV cache (what fewer kv heads should buy).
        if self.every_n_steps and trainer.logger is not None and not stopped_on_nan(pl_module):
            metrics = self._attention_metrics(trainer, pl_module)
            metrics["attention/generate_tokens_per_sec"] = generation_speed(pl_module.model)
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
                f"attention/max_score/layer_{i}": st.max_score,
            }
            metrics |= {f"attention/entropy/layer_{i}/head_{h}": e
                        for h, e in enumerate(st.entropy.tolist())}
        return metrics


def signal_on_any_rank(signum: int | None, trainer: L.Trainer) -> int | None:
    """The signal some rank received (the largest number, if several), under a multi-process
    strategy; this rank's own otherwise."""
    if trainer.world_size == 1 or not torch.distributed.is_initialized():
        return signum
    flag = torch.tensor([signum or 0], device=trainer.strategy.root_device)
    torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
    return int(flag.item()) or None


def stop_without_validation(trainer: L.Trainer) -> None:
    """End training after this step. (A stop otherwise validates first, which is what the final
    step wants and a signal or a NaN does not.)"""
    trainer.should_stop = True
    trainer.limit_val_batches = 0


class FinalCheckpoint(L.Callback):
    """Writes `last.ckpt` where ModelCheckpoint's step schedule does not reach: the final step
    (when max_steps is not a multiple of its interval) and the step in which a SIGINT, SIGTERM
    or SIGUSR1 (a scheduler's preemption notice) arrived. Then a signal stops training; a
    second one interrupts at once. Under several processes the ranks agree, at the end of each
    step, whether any of them got a signal, so all stop after the same step.

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
            raise KeyboardInterrupt
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

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous.clear()
        if self._saved_at != trainer.global_step and not stopped_on_nan(pl_module):
            self._save(trainer)
