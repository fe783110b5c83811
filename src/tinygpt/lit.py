"""The LightningModule: training and validation steps, optimizer, schedule, logging."""

from __future__ import annotations

import math
import random
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import grad_norm, rank_zero_warn
from torch import Tensor
from torchmetrics import MeanMetric

from tinygpt.model import GPT, GPTConfig, attention_overrides
from tinygpt.tokenizer import Tokenizer, tokenizer_from_state


def lr_lambda(step: int, warmup_steps: int, total_steps: int, min_lr_ratio: float) -> float:
    """Linear warmup to 1, then cosine decay to min_lr_ratio at total_steps (factor of lr)."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


class LitGPT(L.LightningModule):
    """Trains a `GPT` with next-token cross-entropy. Plain dict arguments keep checkpoints
    self-contained: `LitGPT.load_from_checkpoint(path)` rebuilds model and tokenizer."""

    def __init__(
        self,
        model: dict[str, Any],
        tokenizer: dict[str, Any],
        lr: float = 1e-3,
        weight_decay: float = 0.1,
        betas: tuple[float, float] = (0.9, 0.95),
        warmup_steps: int = 100,
        min_lr_ratio: float = 0.1,
        grad_norm_every: int = 50,
        on_nonfinite: str = "stop",
        compile: bool = False,
        causal_eval: bool | None = None,
    ):
        super().__init__()
        if on_nonfinite not in ("stop", "skip"):
            raise ValueError(f"on_nonfinite={on_nonfinite!r} is unknown (use stop or skip)")
        self.save_hyperparameters()
        self.model = GPT(GPTConfig(**model))
        self.val_loss = MeanMetric()
        # A model trained without the mask, scored with it: how much of its loss came from
        # seeing the future (`val/loss_causal_eval`). None: only for non-causal models.
        if causal_eval is None:
            causal_eval = not self.model.cfg.attention.causal
        self.causal_eval = causal_eval
        self.val_loss_causal = MeanMetric()
        self.nonfinite_step: int | None = None  # set when a NaN/inf loss stopped training
        self.skipped_batches = 0  # batches dropped for a NaN/inf loss (on_nonfinite=skip)
        self._compile_checked = not compile

    @property
    def tokenizer(self) -> Tokenizer:
        if not hasattr(self, "_tokenizer"):
            self._tokenizer = tokenizer_from_state(self.hparams.tokenizer)
        return self._tokenizer

    def forward(self, idx: Tensor) -> Tensor:
        return self.model(idx)

    def configure_model(self) -> None:
        if self.hparams.compile and not self._compile_checked:
            # The trunk only: the sliced cross-entropy's Python loop gains nothing from a graph.
            self._eager_hidden = self.model.hidden
            self.model.hidden = torch.compile(self.model.hidden)

    def _loss(self, batch: tuple[Tensor, Tensor]) -> Tensor:
        if self._compile_checked:
            return self.model.loss(*batch)
        self._compile_checked = True  # compiling happens on this first call, or fails here
        try:
            return self.model.loss(*batch)
        except Exception as e:  # no C++ compiler, unsupported platform, ...
            reason = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
            rank_zero_warn(f"compile=true but torch.compile failed ({reason}); running eager")
            self.model.hidden = self._eager_hidden
            return self.model.loss(*batch)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor | None:
        loss = self._loss(batch)
        # One scalar read per step: the only way to keep a NaN from reaching the weights.
        if not torch.isfinite(loss):
            if self.hparams.on_nonfinite == "stop":
                self.nonfinite_step = self.global_step
                self.trainer.should_stop = True
            else:
                self.skipped_batches += 1
                rank_zero_warn(f"loss is {loss.item()} at step {self.global_step}: batch skipped")
            return None  # Lightning skips backward and the optimizer step for this batch
        self.log("train/loss", loss, prog_bar=True, sync_dist=True)  # the mean over all ranks
        if self.skipped_batches:
            self.log("train/skipped_batches", float(self.skipped_batches))
        self.log("train/lr", self.optimizers().param_groups[0]["lr"])
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self.val_loss.update(self._loss(batch), weight=batch[1].numel())
        if self.causal_eval:
            with attention_overrides(self.model, causal=True):
                self.val_loss_causal.update(self._loss(batch), weight=batch[1].numel())

    def on_validation_epoch_end(self) -> None:
        loss = self.val_loss.compute()  # token-weighted mean, reduced across ranks
        self.val_loss.reset()
        # sync_dist only quiets Lightning: MeanMetric.compute() already reduced across ranks.
        self.log("val/loss", loss, prog_bar=True, sync_dist=True)
        self.log("val/ppl", torch.exp(loss), sync_dist=True)
        if self.causal_eval:
            self.log("val/loss_causal_eval", self.val_loss_causal.compute(), sync_dist=True)
            self.val_loss_causal.reset()

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
        if gradient_clip_algorithm not in (None, "norm"):
            return super().configure_gradient_clipping(
                optimizer, gradient_clip_val, gradient_clip_algorithm)
        if gradient_clip_val:
            total = torch.nn.utils.clip_grad_norm_(self.model.parameters(), gradient_clip_val)
        else:
            grads = [p.grad for p in self.model.parameters() if p.grad is not None]
            total = torch.nn.utils.get_total_norm(grads)
        self.log("grad_norm/total", total)  # before clipping: the norm the clip acted on

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        every = self.hparams.grad_norm_every
        if every and (self.global_step + 1) % every == 0:
            norms = grad_norm(self.model, norm_type=2)
            norms.pop("grad_2.0_norm_total", None)
            self.log_dict({k.replace("grad_2.0_norm/", "grad_norm/"): v for k, v in norms.items()})

    def configure_optimizers(self) -> dict:
        hp = self.hparams
        # Decay the matrices of Linear layers and the token embedding (tied to the head); leave
        # biases, LayerNorm gains/shifts and the position table alone: shrinking those towards
        # zero has no regularising use and only fights the signal they carry.
        decay, no_decay = [], []
        for name, p in self.model.named_parameters():
            is_matrix = p.dim() >= 2 and not name.startswith("pos_emb")
            (decay if is_matrix else no_decay).append(p)
        groups = [
            {"params": decay, "weight_decay": hp.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]
        # foreach: a few batched kernels per step. (fused=True would be one, but Lightning refuses
        # gradient clipping with a fused optimizer under mixed precision.)
        opt = torch.optim.AdamW(groups, lr=hp.lr, betas=tuple(hp.betas), foreach=True)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: lr_lambda(s, hp.warmup_steps, total, hp.min_lr_ratio)
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

