"""The optimizer's settings: AdamW, or Muon for the blocks' matrices, and the learning-rate
schedule. Plain dataclasses with their defaults and their own checks, no torch."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import Enum

from tinygpt.errors import UsageError, parse_choice


class Algorithm(str, Enum):
    """The optimizer."""

    adamw = "adamw"  # AdamW for every parameter
    muon = "muon"  # Muon for the blocks' matrices, AdamW for embeddings, head, gains and biases


class Schedule(str, Enum):
    """How the learning rate moves after warmup."""

    cosine = "cosine"  # cosine decay to lr * min_lr_ratio at the last step
    wsd = "wsd"  # warmup-stable-decay: flat at lr, then linear to lr * min_lr_ratio


@dataclass
class OptimConfig:
    """AdamW (or Muon for the hidden matrices) with linear warmup, then cosine decay to
    lr * min_lr_ratio (or warmup-stable-decay: flat, then a linear fall over decay_fraction)."""

    algorithm: Algorithm = Algorithm.adamw
    lr: float = 1e-3
    weight_decay: float = 0.1
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1
    schedule: Schedule = Schedule.cosine
    decay_fraction: float = 0.3  # schedule=wsd: the last share of the steps that decays
    # One kernel for the whole AdamW step (null: where the precision allows it, all but 16-mixed,
    # whose loss scaler would leave the gradients scaled when they are clipped)
    fused: bool | None = None
    muon_lr: float = 0.02  # algorithm=muon: the hidden matrices' peak learning rate
    muon_momentum: float = 0.95
    muon_ns_steps: int = 5  # Newton-Schulz iterations per update (fewer: cheaper, rougher)

    def __post_init__(self) -> None:
        # Strings (a checkpoint's hparams, a library call) become enums, once, here.
        self.algorithm = parse_choice(Algorithm, self.algorithm, "optim.algorithm")
        self.schedule = parse_choice(Schedule, self.schedule, "optim.schedule")

    def validate(self) -> None:
        """A UsageError for the first value no optimizer can run with."""
        positive = {"lr": (self.lr, "1e-3"), "muon_lr": (self.muon_lr, "0.02")}
        for key, (value, example) in positive.items():
            if not value > 0:
                raise UsageError(f"optim.{key}={value} must be positive (e.g. {example})")
        if self.weight_decay < 0:
            raise UsageError(f"optim.weight_decay={self.weight_decay} must be at least 0 (0 "
                             "turns it off)")
        if self.warmup_steps < 0:
            raise UsageError(f"optim.warmup_steps={self.warmup_steps} must be at least 0 (0: "
                             "no warmup)")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise UsageError(f"optim.betas={list(self.betas)} must be two numbers in [0, 1) "
                             "(e.g. [0.9, 0.95])")
        if not 0 <= self.min_lr_ratio <= 1:
            raise UsageError(f"optim.min_lr_ratio={self.min_lr_ratio} must be in [0, 1] "
                             "(e.g. 0.1)")
        if not 0.0 < self.decay_fraction <= 1.0:
            raise UsageError(f"optim.decay_fraction={self.decay_fraction} must be in (0, 1] "
                             "(e.g. 0.3)")
        if not 0.0 <= self.muon_momentum < 1.0:
            raise UsageError(f"optim.muon_momentum={self.muon_momentum} must be in [0, 1) "
                             "(e.g. 0.95)")
        if self.muon_ns_steps < 1:
            raise UsageError(f"optim.muon_ns_steps={self.muon_ns_steps} must be at least 1 "
                             "(e.g. 5)")

    def to_dict(self) -> dict:
        """Plain Python values (choices as strings): what a checkpoint stores."""
        return {k: getattr(v, "value", v) for k, v in asdict(self).items()}
