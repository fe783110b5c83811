"""The typed training config, registered in Hydra's ConfigStore: a misspelt key, a wrong type or
an unknown choice fails before any work starts, with the valid choices listed.

Each default has one home. The library's own dataclasses are the schema's nodes (`GPTConfig`,
`DataConfig`, `OptimConfig`, `SampleConfig`) and carry their defaults; the `trainer` node lists
`lightning.Trainer`'s arguments with Lightning's defaults (`trainer_config`); the YAML files
under configs/ hold only what differs from those (the tiny shape in configs/model/tiny.yaml, the
run length in configs/trainer/default.yaml).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from hydra import compose, initialize_config_module
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf

from tinygpt.config import DataConfig, NonFinite, OptimConfig, SampleConfig
from tinygpt.model_config import GPTConfig
from tinygpt.run_dir import folder_name, run_name
from tinygpt.tokenizer import TokenizerName
from tinygpt.training.threads import ThreadWait
from tinygpt.training.trainer_config import TrainerConfig

# The configs ship inside the package, so an installed wheel trains without a checkout.
CONFIG_MODULE = "tinygpt.configs"
CONFIG_PATH = f"pkg://{CONFIG_MODULE}"  # for @hydra.main

# Where and how a run works, not what it trains: left out of run names (configs/train.yaml's
# override_dirname reads this list) and of the HPARAMS tab.
PLUMBING = ("data.cache_dir", "data.num_workers", "trainer.enable_progress_bar",
            "trainer.enable_model_summary", "ckpt_path", "resume", "threads", "thread_wait",
            "thread_spin")
# What a resumed run may change (keys, or prefixes ending in "."): how long it goes on, how often
# it validates, logs and saves, what it measures and prints. Anything else (seed, data,
# tokenizer, model, optimizer, precision) is the run's own and a resume keeps it.
RESUMABLE = (*PLUMBING, "trainer.max_steps", "trainer.max_time", "trainer.max_epochs",
             "trainer.val_check_interval", "trainer.check_val_every_n_epoch",
             "trainer.limit_val_batches", "trainer.log_every_n_steps",
             "trainer.num_sanity_val_steps", "trainer.profiler", "save_every_n_steps",
             "grad_norm_every", "diagnostics_every", "int8_windows", "attention_map_tokens",
             "causal_eval", "peak_tflops", "sample.")


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
    # Stop at the first validation whose val/bpb is below this (a speedrun's target; null: run on)
    target_bpb: float | None = None
    on_nonfinite: NonFinite = NonFinite.stop  # a NaN/inf loss: stop, or skip the batch
    grad_norm_every: int = 50  # per-layer gradient norms every N steps (0: never)
    # Attention entropy, saturation, W_q/W_k grads; induction, sinks, outliers (0: never)
    diagnostics_every: int = 50
    # At the end, the int8 sensitivity on this many validation windows (0: not; the lab's
    # experiments measure it on 256). Off by default: 1-4 s of every run's wind-down.
    int8_windows: int = 0
    causal_eval: bool | None = None  # also score val with the mask on (None: if causal=false)
    attention_map_tokens: int = 32  # 0: no attention maps
    compile: bool = False  # torch.compile the transformer blocks (falls back to eager if it fails)
    # The device's peak for train/mfu, in TFLOP/s (None: Lightning's table on GPUs, a measured
    # matmul rate on CPUs).
    peak_tflops: float | None = None
    threads: int | None = None  # torch's threads on a CPU (None: one per core)
    # How idle threads wait (tinygpt.training.threads): spin this many times, then sleep, so a
    # run alone keeps its speed and runs beside other work share the cores (null: OpenMP's own).
    thread_wait: ThreadWait = ThreadWait.passive
    thread_spin: int | None = 3000


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
    """data.tokenizer unless the run chooses one: GPT-2's for a run from GPT-2's weights (they
    read no other tokens), else DataConfig's default."""
    if init_from:
        return TokenizerName.gpt2.value
    return next(f.default for f in fields(DataConfig) if f.name == "tokenizer").value


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


def flat_config(cfg: DictConfig) -> dict[str, Any]:
    """A composed config as dotted keys and plain values; of the trainer, only what differs
    from Lightning's defaults."""
    tree = OmegaConf.to_container(cfg, resolve=True)
    lightning = {f.name: f.default for f in fields(TrainerConfig)}
    tree["trainer"] = {k: v for k, v in tree["trainer"].items()
                       if v != lightning.get(k)}

    def flat(d: dict, prefix: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in d.items():
            out |= flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {
                prefix + k: getattr(v, "value", v)}
        return out

    return flat(tree)


def config_keys() -> dict[str, str]:
    """Every key of the default run's config and its default, as YAML would spell it (the
    README's key table is checked against this)."""
    return {k: yaml_value(v) for k, v in flat_config(compose_train()).items()}


def yaml_value(v: Any) -> str:
    """A value as YAML spells it: null, true, [0.9, 0.95]."""
    if v is None or isinstance(v, bool):
        return {None: "null", True: "true", False: "false"}[v]
    if isinstance(v, list):
        return "[" + ", ".join(yaml_value(x) for x in v) + "]"
    return str(v)
