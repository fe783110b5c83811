"""Structured configs for Hydra: a misspelt key or a wrong type fails before any work starts.

The YAML files under configs/ fill these in; `register_configs()` puts the schema in Hydra's
ConfigStore as `train_schema`, which configs/train.yaml lists first in its defaults.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from tinygpt.model import AttentionConfig


@dataclass
class ModelConfig:
    """GPTConfig as the user sets it; vocab_size comes from the tokenizer."""

    context_length: int = 128
    emb_dim: int = 128
    n_heads: int = 4
    n_layers: int = 4
    drop_rate: float = 0.1
    qkv_bias: bool = False
    tie_weights: bool = True
    pad_vocab_multiple: int = 64  # embedding/head rows rounded up (never sampled)
    attention: AttentionConfig = field(default_factory=AttentionConfig)
    # A local Hugging Face GPT-2 directory to start from; its config.json sets the shape.
    init_from: str | None = None


@dataclass
class DataConfig:
    name: str = "python_docs"  # python_docs | text | tinyshakespeare | the_verdict
    path: str | None = None  # for name=text: a file, a folder of .txt files, or a glob
    url: str | None = None  # for a download preset: a mirror instead of the default address
    tokenizer: str = "gpt2"  # gpt2 | char
    batch_size: int = 16  # sequences per optimizer step over all devices (split across them)
    val_fraction: float = 0.1
    stride: int | None = 64  # tokens between training windows' starts (None: context_length)
    num_workers: int = 0
    cache_dir: str = "data/cache"


@dataclass
class OptimConfig:
    lr: float = 1e-3
    weight_decay: float = 0.1
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1


@dataclass
class TrainerConfig:
    """Arguments of lightning.Trainer; `precision: auto` picks bf16-mixed where it is fast."""

    _target_: str = "lightning.Trainer"
    accelerator: str = "auto"
    devices: Any = "auto"
    num_nodes: int = 1
    strategy: Any = "auto"  # "ddp", or a strategy object's config (configs/trainer/fsdp.yaml)
    precision: str = "auto"
    max_steps: int = 600
    max_epochs: int = -1
    val_check_interval: Any = 200
    check_val_every_n_epoch: int | None = None
    limit_val_batches: Any = None
    num_sanity_val_steps: int = 0
    log_every_n_steps: int = 10
    gradient_clip_val: float | None = 1.0
    accumulate_grad_batches: int = 1
    enable_progress_bar: bool = True
    enable_model_summary: bool = True
    deterministic: bool = False
    # The data module's sampler already gives each rank its share and resumes mid-epoch.
    use_distributed_sampler: bool = False


@dataclass
class SampleConfig:
    prompt: str = "The for statement"
    max_new_tokens: int = 64
    temperature: float = 0.8
    top_k: int | None = 40


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    seed: int = 1337
    ckpt_path: str | None = None  # resume from this checkpoint; "last": the newest one
    resume: bool = False  # same as ckpt_path=last
    save_every_n_steps: int = 100  # write checkpoints/last.ckpt this often (0: only at the end)
    on_nonfinite: str = "stop"  # a NaN/inf loss: "stop" (keep the last good checkpoint) | "skip"
    grad_norm_every: int = 50  # per-layer gradient norms every N steps (0: never)
    diagnostics_every: int = 50  # attention entropy, saturation, W_q/W_k grads (0: never)
    causal_eval: bool | None = None  # also score val with the mask on (None: if causal=false)
    attention_map_tokens: int = 32
    compile: bool = False  # torch.compile the transformer blocks (falls back to eager if it fails)


@dataclass
class GenerateConfig:
    ckpt: str = "???"
    prompt: str = "The for statement"
    max_new_tokens: int = 200
    temperature: float = 0.8
    top_k: int | None = 40
    top_p: float | None = None
    seed: int = 0
    use_cache: bool = True
    device: str = "auto"


@dataclass
class ExportConfig:
    ckpt: str = "???"
    out: str = "???"
    overwrite: bool = False


def register_configs() -> None:
    """Put the schemas in Hydra's ConfigStore (idempotent)."""
    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainConfig)
    cs.store(name="generate_schema", node=GenerateConfig)
    cs.store(name="export_schema", node=ExportConfig)
    OmegaConf.register_new_resolver("folder_name", folder_name, replace=True)


def folder_name(text: str) -> str:
    """A sweep job's folder name from its overrides: a path in a value (data.path=../a/b.txt)
    would otherwise make nested folders, one run spread over several levels."""
    return re.sub(r"[/\\]+", "_", text)


def holds_run(path: Path) -> bool:
    """Whether a directory already holds a training run's checkpoints or TensorBoard events."""
    return (path / "checkpoints").is_dir() or any(path.glob("events.out.tfevents.*"))


class RunDirGuard(Callback):
    """Refuses to start a new run in a directory that holds another one (never clobber).

    Hydra calls this before it writes anything into the run directory; resuming
    (`ckpt_path=...` or `resume=true`) is allowed to continue a run in place.
    """

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check([Path(config.hydra.run.dir)], config)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep = Path(config.hydra.sweep.dir)
        self._check([sweep, *(p for p in sweep.glob("*") if p.is_dir())], config)

    @staticmethod
    def _check(dirs: list[Path], config: DictConfig) -> None:
        if config.get("resume") or config.get("ckpt_path"):
            return
        for d in dirs:
            if holds_run(d):
                print(f"error: {d} already holds a training run (resume it with resume=true, "
                      "or leave hydra.run.dir / hydra.sweep.dir to pick a new directory)",
                      file=sys.stderr)
                sys.exit(2)


class SweepStatus(Callback):
    """Lets a sweep run every job even when one fails (its `error:` line is printed as it ends),
    then exits non-zero with a count, so one diverging configuration does not cost the rest."""

    def __init__(self) -> None:
        self.failed: list[str] = []
        self.jobs = 0

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        self.jobs += 1
        if job_return.status.name == "COMPLETED" and job_return.return_value is None:
            self.failed.append(Path(config.hydra.runtime.output_dir).name)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self.failed:
            print(f"error: {len(self.failed)} of {self.jobs} jobs failed: "
                  f"{'; '.join(self.failed)} (their error lines are above)", file=sys.stderr)
            sys.exit(2)
