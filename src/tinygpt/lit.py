"""The LightningModule: training and validation steps, optimizer, schedule, logging."""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import grad_norm
from torch import Tensor
from torchmetrics import MeanMetric

from tinygpt.model import GPT, GPTConfig
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
    ):
        super().__init__()
        self.save_hyperparameters()
        self.model = GPT(GPTConfig(**model))
        self.val_loss = MeanMetric()

    @property
    def tokenizer(self) -> Tokenizer:
        if not hasattr(self, "_tokenizer"):
            self._tokenizer = tokenizer_from_state(self.hparams.tokenizer)
        return self._tokenizer

    def forward(self, idx: Tensor) -> Tensor:
        return self.model(idx)

    def _loss(self, batch: tuple[Tensor, Tensor]) -> Tensor:
        return self.model.loss(*batch)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        loss = self._loss(batch)
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/lr", self.optimizers().param_groups[0]["lr"])
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self.val_loss.update(self._loss(batch), weight=batch[1].numel())

    def on_validation_epoch_end(self) -> None:
        loss = self.val_loss.compute()  # token-weighted mean, reduced across ranks
        self.val_loss.reset()
        self.log("val/loss", loss, prog_bar=True)
        self.log("val/ppl", torch.exp(loss))

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        # Gradients here are unscaled and not yet clipped: the norm the clipping acts on.
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        self.log("grad_norm/total", torch.nn.utils.get_total_norm(grads))
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
        fused = self.device.type == "cuda"
        opt = torch.optim.AdamW(groups, lr=hp.lr, betas=tuple(hp.betas), fused=fused or None,
                                foreach=None if fused else True)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: lr_lambda(s, hp.warmup_steps, total, hp.min_lr_ratio)
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def load_checkpoint(path: str, map_location: str | torch.device = "cpu") -> tuple[GPT, Tokenizer]:
    """Rebuild the model and tokenizer from a training checkpoint, without running pickled code."""
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise ValueError(f"checkpoint {path} does not exist (check the path)") from None
    except Exception as e:  # truncated file, not a checkpoint, or code hidden in a pickle
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"cannot read checkpoint {path}: {first} (pass a .ckpt that "
                         "scripts/train.py wrote)") from None
    try:
        hp = ckpt["hyper_parameters"]
        model = GPT(GPTConfig(**hp["model"]))
        state = {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items()
                 if k.startswith("model.")}
        model.load_state_dict(state)
    except (KeyError, TypeError, RuntimeError) as e:
        first = str(e).splitlines()[0]
        raise ValueError(f"checkpoint {path} does not hold a tinygpt model: {first} "
                         "(pass a .ckpt that scripts/train.py wrote)") from None
    return model.to(map_location).eval(), tokenizer_from_state(hp["tokenizer"])
