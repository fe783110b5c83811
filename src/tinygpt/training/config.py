"""The typed training config, registered in Hydra's ConfigStore: a misspelt key, a wrong type or
an unknown choice fails before any work starts, with the valid choices listed.

Each default has one home. The library's own dataclasses are the schema's nodes (`GPTConfig`,
`DataConfig`, `OptimConfig`, `SampleConfig`, `CpuConfig`, beside the code each configures) and
carry their defaults and their own checks; the nodes of the run itself (`ProbesConfig`, the
`trainer` node: `lightning.Trainer`'s arguments with Lightning's defaults) are here; the YAML
files under configs/ hold only what differs from those (the tiny shape in configs/model/tiny.yaml,
the run length in configs/trainer/default.yaml). Values only: the Trainer is built from them as
they are (`trainer_arguments`), never through Hydra's `instantiate`, so no config names a Python
object to build; `trainer.strategy` and `trainer.profiler` take Lightning's names (ddp,
fsdp_blocks, simple), and objects come from Python (`train(..., callbacks=...)`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from enum import Enum
from functools import lru_cache
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_module
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf

from tinygpt.data.config import DataConfig
from tinygpt.data.tokenizer import TokenizerName
from tinygpt.errors import UsageError, unknown_choice
from tinygpt.model.config import GPTConfig, SampleConfig
from tinygpt.optim.config import OptimConfig
from tinygpt.run_dir import folder_name, run_name
from tinygpt.training.lightning_adapter import PRECISIONS
from tinygpt.training.threads import CpuConfig
from tinygpt.weights.hf_tokenizer import read_tokenizer

# The configs ship inside the package, so an installed wheel trains without a checkout.
CONFIG_MODULE = "tinygpt.configs"
CONFIG_PATH = f"pkg://{CONFIG_MODULE}"  # for @hydra.main

# Where and how a run works, not what it trains: left out of run names (configs/train.yaml's
# override_dirname reads this list) and of the HPARAMS tab.
PLUMBING = ("data.cache_dir", "data.num_workers", "trainer.enable_progress_bar",
            "trainer.enable_model_summary", "ckpt_path", "resume", "cpu.threads", "cpu.wait",
            "cpu.spin")
# What a resumed run may change (keys, or prefixes ending in "."): how long it goes on, how often
# it validates, logs and saves, what it measures and prints. Anything else (seed, data,
# tokenizer, model, optimizer, precision) is the run's own and a resume keeps it.
RESUMABLE = (*PLUMBING, "trainer.max_steps", "trainer.max_time", "trainer.max_epochs",
             "trainer.val_check_interval", "trainer.check_val_every_n_epoch",
             "trainer.limit_val_batches", "trainer.log_every_n_steps",
             "trainer.num_sanity_val_steps", "trainer.profiler", "save_every_n_steps",
             "probes.", "peak_tflops", "sample.")


class NonFinite(str, Enum):
    """What a NaN or inf training loss (or gradient) does."""

    stop = "stop"  # end the run naming the step; the last good checkpoint stays
    skip = "skip"  # drop the batch (counted in train/skipped_batches)


@dataclass
class ModelConfig(GPTConfig):
    """GPTConfig as a run sets it: its vocabulary comes from the tokenizer."""

    vocab_size: int | None = None  # set by the run from data.tokenizer
    # A local Hugging Face GPT-2 directory to start from; its config.json sets the shape.
    init_from: str | None = None

    def gpt_config(self, vocab_size: int) -> GPTConfig:
        """The GPTConfig this node describes, with the tokenizer's vocabulary size."""
        shape = {f.name: getattr(self, f.name) for f in fields(GPTConfig)}
        return GPTConfig(**(shape | {"vocab_size": vocab_size}))


@dataclass
class ProbesConfig:
    """What a run measures besides its losses, and how often (0: never; configs/probes/off.yaml
    turns every one off)."""

    # attention's entropy, saturation and W_q/W_k gradients; induction, sinks and outliers
    every: int = 50
    grad_norm_every: int = 50  # per-parameter gradient norms
    attention_map_tokens: int = 32  # the attention maps' input at each validation (0: none)
    # At the end, the int8 sensitivity on this many validation windows (the lab's experiments
    # measure it on 256). Off by default: 1-4 s of every run's wind-down.
    int8_windows: int = 0
    causal_eval: bool | None = None  # also score val with the mask on (None: if causal=false)

    def validate(self) -> None:
        for key in ("every", "grad_norm_every", "attention_map_tokens", "int8_windows"):
            if getattr(self, key) < 0:
                raise UsageError(f"probes.{key}={getattr(self, key)} must be at least 0 (0 "
                                 "turns it off)")


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


    def validate(self) -> None:
        """What a config can get wrong in the Trainer's arguments before Lightning sees them
        (what Lightning refuses as it builds the Trainer is answered there: `build_trainer`)."""
        if self.max_steps != -1 and self.max_steps < 1:
            raise UsageError(f"trainer.max_steps={self.max_steps} must be a positive number of "
                             "steps (or -1: no step limit, with trainer.max_time or max_epochs)")
        if self.precision not in (*PRECISIONS, "auto"):
            valid = [p for p in ("auto", *PRECISIONS) if isinstance(p, str)]
            raise unknown_choice(f"trainer.precision={self.precision!r}", valid)
        for key in ("accumulate_grad_batches", "log_every_n_steps", "num_nodes"):
            if getattr(self, key) is not None and getattr(self, key) < 1:
                raise UsageError(f"trainer.{key}={getattr(self, key)} must be at least 1 (a "
                                 "whole number)")
        if self.gradient_clip_val is not None and self.gradient_clip_val < 0:
            raise UsageError(f"trainer.gradient_clip_val={self.gradient_clip_val} must be at "
                             "least 0 (0 or null: no clipping)")
        vci = self.val_check_interval
        if isinstance(vci, int | float) and not isinstance(vci, bool) and vci <= 0:
            raise UsageError(f"trainer.val_check_interval={vci} must be positive (steps, or a "
                             "fraction of an epoch)")


def trainer_arguments(t: TrainerConfig) -> dict[str, Any]:
    """The Trainer's keyword arguments these settings give."""
    return asdict(t)


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    probes: ProbesConfig = field(default_factory=ProbesConfig)
    cpu: CpuConfig = field(default_factory=CpuConfig)
    seed: int = 1337
    ckpt_path: str | None = None  # resume from this checkpoint; "last": the run folder's own
    resume: bool = False  # same as ckpt_path=last
    save_every_n_steps: int = 100  # write checkpoints/last.ckpt this often (0: only at the end)
    # Stop at the first validation whose val/bpb is below this (a speedrun's target; null: run on)
    target_bpb: float | None = None
    on_nonfinite: NonFinite = NonFinite.stop  # a NaN/inf loss or gradient: stop, or skip it
    compile: bool = False  # torch.compile the transformer blocks (falls back to eager if it fails)
    # The device's peak for train/mfu, in TFLOP/s (None: Lightning's table on GPUs, a measured
    # matmul rate on CPUs).
    peak_tflops: float | None = None


def register_configs() -> None:
    """Put the training schema in Hydra's ConfigStore (idempotent)."""
    ConfigStore.instance().store(name="train_schema", node=TrainConfig)
    # the resolvers that name run and sweep folders (configs/train.yaml)
    resolvers = {"folder_name": folder_name, "run_name": run_name,
                 "plumbing": lambda: list(PLUMBING), "tokenizer_for": tokenizer_for}
    for name, fn in resolvers.items():
        # once: a running sweep puts its own folder_name in place (hydra_callbacks.SweepStatus)
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)


def tokenizer_for(init_from: str | None) -> str:
    """data.tokenizer unless the run chooses one: for a run from pretrained weights, the
    tokenizer beside them (GPT-2's where there is none: they read no other tokens), else
    DataConfig's default."""
    if init_from:
        return own_tokenizer(init_from)
    return next(f.default for f in fields(DataConfig) if f.name == "tokenizer").value


@lru_cache(maxsize=8)  # the resolver runs at each read of data.tokenizer
def own_tokenizer(folder: str) -> str:
    try:
        return read_tokenizer(Path(folder)).name
    except UsageError:  # check_init_from says what is wrong with it
        return TokenizerName.gpt2.value


def compose_train(*overrides: str, hydra: bool = False) -> DictConfig:
    """configs/train.yaml with overrides, composed as `tinygpt-train` would (no run): for
    tests, benchmarks and notebooks. `hydra=True` keeps the hydra node."""
    register_configs()
    # Inside a running Hydra app (scripts/train.py) Hydra is already set up: step aside for
    # this composition and put it back after.
    gh = GlobalHydra.instance()
    running = gh.hydra if gh.is_initialized() else None
    gh.clear()
    try:
        with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
            return compose(config_name="train", overrides=list(overrides),
                           return_hydra_config=hydra)
    finally:
        if running is not None:
            gh.clear()
            gh.initialize(running)


def flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    """A config's tree (plain values: `OmegaConf.to_container`) as dotted keys."""
    out: dict[str, Any] = {}
    for k, v in tree.items():
        out |= flatten(v, f"{prefix}{k}.") if isinstance(v, dict) else {prefix + k: v}
    return out


def config_keys() -> dict[str, str]:
    """Every key of the default run's config and its default, as YAML would spell it, the
    trainer's only where they differ from Lightning's (the README's key table is checked
    against this)."""
    lightning = {f"trainer.{f.name}": f.default for f in fields(TrainerConfig)}
    keys = flatten(OmegaConf.to_container(compose_train(), resolve=True, enum_to_str=True))
    return {k: yaml_value(v) for k, v in keys.items()
            if not (k in lightning and v == lightning[k])}


def yaml_value(v: Any) -> str:
    """A value as YAML spells it: null, true, [0.9, 0.95]."""
    if v is None or isinstance(v, bool):
        return {None: "null", True: "true", False: "false"}[v]
    if isinstance(v, list):
        return "[" + ", ".join(yaml_value(x) for x in v) + "]"
    return str(v)
