"""The LightningModule that trains a GPT: steps, optimizer, schedule, what it logs."""

from __future__ import annotations

import random
from typing import Any

import lightning as L
import torch
from lightning.fabric.utilities.throughput import measure_flops
from lightning.pytorch.utilities import grad_norm, rank_zero_warn
from torch import Tensor

from tinygpt import metrics
from tinygpt.data.tokenizer import tokenizer_from_state
from tinygpt.errors import UsageError, parse_choice
from tinygpt.metrics import bits_per_byte
from tinygpt.model.gpt import GPT, GPTConfig, attention_overrides
from tinygpt.optim.config import OptimConfig
from tinygpt.optim.optimizer import build_optimizer
from tinygpt.training.config import NonFinite
from tinygpt.training.lightning_adapter import logger_writes_this_step, stop_without_validation
from tinygpt.training.ranks import all_ranks_agree


class GPTLightningModule(L.LightningModule):
    """Trains a `GPT` with next-token cross-entropy.

    Its hyperparameters are plain values (the model's config, the tokenizer's state, the optimizer
    settings), so a checkpoint alone rebuilds model and tokenizer (`tinygpt.weights.checkpoint`).
    `grad_norm_every`: per-parameter gradient norms every N steps (0: never). `causal_eval`: also
    score validation with the causal mask on (None: only for models trained without it).
    """

    def __init__(
        self,
        model: GPTConfig | dict[str, Any],
        tokenizer: dict[str, Any],
        optim: OptimConfig | dict[str, Any] | None = None,
        grad_norm_every: int = 0,
        on_nonfinite: NonFinite | str = NonFinite.stop,
        compile: bool = False,
        causal_eval: bool | None = None,
    ):
        super().__init__()
        model = model if isinstance(model, GPTConfig) else GPTConfig(**model)
        optim = optim if isinstance(optim, OptimConfig) else OptimConfig(**(optim or {}))
        on_nonfinite = parse_choice(NonFinite, on_nonfinite, "on_nonfinite")
        self.save_hyperparameters({
            "model": model.to_dict(), "tokenizer": tokenizer, "optim": optim.to_dict(),
            "grad_norm_every": grad_norm_every, "on_nonfinite": on_nonfinite.value,
            "compile": compile, "causal_eval": causal_eval,
        })
        self.model = GPT(model)
        self.optim = optim
        # A model trained without the mask, scored with it: how much of its loss came from
        # seeing the future (`val/loss_causal_eval`).
        self.causal_eval = not model.attention.causal if causal_eval is None else causal_eval
        # What a validation sums over its batches (then over the ranks): the loss times the
        # tokens, the tokens, the bytes of text they stand for (bits per byte: the summed loss
        # over those bytes), and the causal-eval loss times the tokens.
        self.register_buffer("val_sums", torch.zeros(4, dtype=torch.float64), persistent=False)
        self.tokenizer = tokenizer_from_state(tokenizer)
        self.register_buffer("token_bytes", torch.tensor(self.tokenizer.token_bytes()),
                             persistent=False)
        self.nonfinite_step: int | None = None  # set when a NaN/inf loss stopped training
        self.nonfinite_what = "loss"  # or the gradient (of a finite loss)
        self.skipped_batches = 0  # batches dropped for a NaN/inf loss (on_nonfinite=skip)
        self.drop_gradients = False  # this batch's gradients are dropped (see _no_update)
        # compile=true: the model's trunk (all but the head) torch.compile'd in configure_model;
        # compiling happens at its first call, which may fail (then the run goes on eager).
        self.compiled_trunk = None
        self.compile_checked = not compile
        self.flops_per_batch: int | None = None  # one training step's, counted in setup()
        # One sequence: the model summary runs it to count FLOPs.
        self.example_input_array = torch.zeros(1, model.context_length, dtype=torch.long)

    @property
    def stopped_on_nan(self) -> bool:
        """Training stopped on a NaN loss: a forward pass may give NaN weights and probabilities."""
        return self.nonfinite_step is not None

    def forward(self, idx: Tensor) -> Tensor:
        return self.model(idx)

    def setup(self, stage: str) -> None:
        # FLOPs of one training step on this device's batch, counted on a weightless copy
        # (meta device): ThroughputMonitor turns them into train/mfu.
        batch = getattr(self.trainer.datamodule, "per_device_batch", 1)  # 1: no datamodule
        T = self.model.cfg.context_length
        with torch.device("meta"):
            meta = GPT(self.model.cfg)
            x = torch.zeros(batch, T, dtype=torch.long)
        self.flops_per_batch = measure_flops(meta, lambda: meta.loss(x, x), lambda loss: loss)

    def configure_model(self) -> None:
        if not self.compile_checked and self.compiled_trunk is None:
            # The trunk only: the sliced cross-entropy's Python loop gains nothing from a graph.
            self.compiled_trunk = torch.compile(self.model.hidden)

    def _loss(self, batch: tuple[Tensor, Tensor]) -> Tensor:
        x, y = batch
        if self.compiled_trunk is None:
            return self.model.loss(x, y)
        if self.compile_checked:
            return self.model.head_loss(self.compiled_trunk(x), y)
        self.compile_checked = True
        try:
            hidden = self.compiled_trunk(x)
        except Exception as e:  # no C++ compiler, unsupported platform, ...
            reason = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
            rank_zero_warn(f"compile=true but torch.compile failed ({reason}); running eager")
            self.compiled_trunk = None
            return self.model.loss(x, y)
        return self.model.head_loss(hidden, y)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor | None:
        loss = self._loss(batch)
        # One scalar read per step: the only way to keep a NaN from reaching the weights. Every
        # rank must take the same branch (a rank that skips backward while the others wait in
        # the gradient all-reduce hangs them all), so they agree first.
        if not all_ranks_agree(bool(torch.isfinite(loss)), self.trainer):
            self._not_finite("loss")
            return self._no_update()
        if not self.logs_this_step():
            return loss
        self.log(metrics.TRAIN_LOSS, loss, prog_bar=True, sync_dist=True)  # mean over all ranks
        y = batch[1]
        self.log(metrics.TRAIN_BPB, bits_per_byte(loss * y.numel(), self.token_bytes[y].sum()),
                 sync_dist=True)
        # The rate this step uses: AdamW's groups differ in weight decay only, so one number
        # (the last group is AdamW's with optim=muon too).
        self.log(metrics.TRAIN_LR, self.optimizers().param_groups[-1]["lr"])
        if self.skipped_batches:
            self.log(metrics.SKIPPED_BATCHES, float(self.skipped_batches))
        return loss

    def logs_this_step(self) -> bool:
        """Whether the logger writes this step's values: every trainer.log_every_n_steps, and the
        last step (the run's final train loss). Lightning would drop the others, after about a
        millisecond of bookkeeping per value, which is a few percent of a small model's step."""
        t = self.trainer
        return (logger_writes_this_step(t) or t.fast_dev_run
                or 0 < t.max_steps <= self.global_step + 1)

    def _not_finite(self, what: str) -> None:
        """A NaN or inf `what` (the loss, or the gradient of a finite loss) at this step: stop
        here (on_nonfinite=stop: the weights before it stay, and the last good checkpoint), or
        count the batch as skipped; this step updates nothing either way."""
        if self.hparams.on_nonfinite == NonFinite.stop:
            self.nonfinite_step, self.nonfinite_what = self.global_step, what
            stop_without_validation(self.trainer)
        else:
            self.skipped_batches += 1
            rank_zero_warn(f"{what} is not finite on some rank at step {self.global_step}: "
                           "batch skipped")

    def _no_update(self) -> Tensor:
        """A loss whose backward changes nothing: zero gradients for every parameter (so each
        rank takes part in DDP's all-reduce, where returning None would leave the others
        waiting), which on_after_backward then drops, so the optimizer leaves the weights,
        its moments and weight decay alone."""
        self.drop_gradients = True
        return sum((p * 0.0).sum() for p in self.model.parameters())

    def on_after_backward(self) -> None:
        if self.drop_gradients:
            for p in self.model.parameters():
                p.grad = None
            self.drop_gradients = False

    def on_validation_epoch_start(self) -> None:
        self.val_sums.zero_()

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        y = batch[1]
        tokens, loss = y.numel(), self._loss(batch)
        causal = 0.0
        if self.causal_eval:
            with attention_overrides(self.model, causal=True):
                causal = self._loss(batch).double() * tokens
        self.val_sums += torch.stack([loss.double() * tokens, loss.new_tensor(tokens).double(),
                                      self.token_bytes[y].sum().double(),
                                      torch.as_tensor(causal, device=loss.device).double()])

    def on_validation_epoch_end(self) -> None:
        # Summed over every rank's share of the windows: the token-weighted mean is exact.
        nats, tokens, nbytes, causal = self.trainer.strategy.reduce(
            self.val_sums.clone(), reduce_op="sum").float()
        # sync_dist only quiets Lightning: the values are the same on every rank already
        self.log(metrics.VAL_LOSS, nats / tokens, prog_bar=True, sync_dist=True)
        self.log(metrics.VAL_PPL, torch.exp(nats / tokens), sync_dist=True)
        self.log(metrics.VAL_BPB, bits_per_byte(nats, nbytes), prog_bar=True, sync_dist=True)
        if self.causal_eval:
            self.log(metrics.VAL_LOSS_CAUSAL, causal / tokens, sync_dist=True)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Dropout draws from these; restoring them makes a resumed run repeat the same masks.
        checkpoint["rng"] = {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "python": random.getstate(),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        rng = checkpoint.get("rng")
        if rng is None:
            return
        torch.set_rng_state(rng["torch"])
        if rng["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        random.setstate(rng["python"])

    def configure_gradient_clipping(
        self, optimizer: torch.optim.Optimizer, gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        # Clipping computes the total gradient norm anyway: log that one instead of a second.
        if all(p.grad is None for p in self.model.parameters()):
            return  # a skipped batch (see _no_update): nothing to clip or log
        params = [p for p in self.model.parameters() if p.grad is not None]
        total = torch.nn.utils.get_total_norm([p.grad for p in params])
        # A finite loss can still give an inf gradient (an overflow in the backward pass): such
        # a step must not reach the weights either. Every rank holds the same all-reduced norm.
        # (float16's loss scaler expects overflows: it skips those steps and scales down.)
        scaler = getattr(self.trainer.precision_plugin, "scaler", None)
        if scaler is None and not all_ranks_agree(bool(torch.isfinite(total)), self.trainer):
            self._not_finite("gradient")
            for p in params:
                p.grad = None  # the optimizer then leaves every weight and moment as it was
            return
        if gradient_clip_algorithm not in (None, "norm"):
            super().configure_gradient_clipping(
                optimizer, gradient_clip_val, gradient_clip_algorithm)
        elif gradient_clip_val:
            torch.nn.utils.clip_grads_with_norm_(params, gradient_clip_val, total)
        if self.logs_this_step():  # before clipping: the norm the clip acted on
            self.log(metrics.TRAIN_GRAD_NORM, total)

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        every = self.hparams.grad_norm_every
        if every and (self.global_step + 1) % every == 0:
            norms = grad_norm(self.model, norm_type=2)
            norms.pop("grad_2.0_norm_total", None)
            self.log_dict({k.replace("grad_2.0_norm", metrics.GRAD_NORM): v
                           for k, v in norms.items()})

    def configure_optimizers(self) -> dict:
        total = max(1, int(self.trainer.estimated_stepping_batches))
        # float16's loss scaler leaves a fused optimizer to unscale its own gradients, inside its
        # step: a clip before it would see them scaled. bf16 has no scaler.
        scaled = str(self.trainer.precision).startswith("16")
        fused = self.optim.fused if self.optim.fused is not None else not scaled
        if fused and scaled:
            raise UsageError(f"optim.fused=true cannot clip gradients under "
                             f"{self.trainer.precision} (set optim.fused=null, or "
                             "trainer.precision=32-true or bf16-mixed)")
        # bf16-mixed is picked where bf16 matmuls are fast: Muon's iteration may use them too
        opt, sched = build_optimizer(self.model, self.optim, total, fused=fused,
                                     fast_bf16=str(self.trainer.precision).startswith("bf16"))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
