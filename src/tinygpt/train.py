"""A training run from a composed config: data, model, Trainer, fit, the summary.

`scripts/train.py` is Hydra's entry point over `train()`; tests and notebooks call it in-process
with `tinygpt.config.compose_train(...)`.
"""

from __future__ import annotations

import math
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only
from omegaconf import DictConfig, OmegaConf

from tinygpt.callbacks import (
    AttentionDiagnostics,
    AttentionMaps,
    FinalCheckpoint,
    LearningRate,
    LongContextEval,
    SampleText,
    TensorBoardLayout,
    Throughput,
)
from tinygpt.checkpoint import check_resumable, resume_path
from tinygpt.config import TrainConfig, config_keys, flat_config, yaml_value
from tinygpt.data import TextDataModule
from tinygpt.errors import UsageError
from tinygpt.files import atomic_write
from tinygpt.hf import load_hf_gpt2
from tinygpt.lightning_module import GPTLightningModule
from tinygpt.model import GPT
from tinygpt.precision import PrecisionChoice, resolve_precision
from tinygpt.progress import progress_callback
from tinygpt.tokenizer import tokenizer_state


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, through `atomic_write`: a kill mid-write leaves the
    previous `last.ckpt` loadable, never a truncated one."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        with atomic_write(path) as f:
            torch.save(checkpoint, f)


@dataclass
class TrainResult:
    """What a run ended with. `signal`: the signal that stopped it early, if one did."""

    run_dir: Path
    steps: int
    train_loss: float
    val_loss: float
    val_bpb: float  # bits per byte of the validation text: comparable across tokenizers
    last_checkpoint: Path | None
    best_checkpoint: Path | None
    precision: str
    signal: int | None = None


def train(cfg: DictConfig, run_dir: str | Path, sweep: bool = False,
          callbacks: list[L.Callback] | None = None) -> TrainResult:
    """Train as `cfg` says, writing events and checkpoints into run_dir. UsageError for what the
    user can fix; `sweep` only changes the summary's pointers; `callbacks` are added to ours."""
    run_dir = Path(run_dir)
    s: TrainConfig = OmegaConf.to_object(cfg)  # typed: enums, dataclasses
    s.model.gpt_config(vocab_size=1).validate()  # shape errors before any data is read
    L.seed_everything(s.seed, workers=True, verbose=False)
    ckpt_path = resume_path(s.ckpt_path, s.resume, run_dir)
    init = pretrained(s)
    dm = TextDataModule(s.data, context_length=s.model.context_length, seed=s.seed)
    dm.load()
    gpt_cfg = init.cfg if init else s.model.gpt_config(dm.tokenizer.vocab_size)
    tok_state = tokenizer_state(dm.tokenizer)
    if ckpt_path:
        check_resumable(ckpt_path, gpt_cfg, tok_state)
    module = GPTLightningModule(
        gpt_cfg, tok_state, s.optim, grad_norm_every=s.grad_norm_every,
        on_nonfinite=s.on_nonfinite, compile=s.compile, causal_eval=s.causal_eval)
    if init is not None:
        module.model.load_state_dict(init.state_dict())
    precision = resolve_precision(cfg.trainer.precision, cfg.trainer.accelerator)
    rank_zero_info(f"precision {precision.precision} ({precision.reason})")
    trainer, final, best = build_trainer(cfg, s, run_dir, precision, callbacks or [])
    trainer.logger.log_hyperparams(hyperparameters(cfg, precision.precision), {
        "hp/val_bpb": math.nan, "hp/val_loss": math.nan, "hp/train_loss": math.nan})
    trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path, weights_only=True)
    if module.nonfinite_step is not None:
        kept = f"; the last good checkpoint is {final.path}" if final.path.exists() else ""
        raise UsageError(f"the loss became NaN or inf at step {module.nonfinite_step}{kept} "
                         "(lower optim.lr, or set on_nonfinite=skip to drop such batches)")
    if trainer.interrupted:
        raise UsageError("training was interrupted (resume it with resume=true)")
    metrics = trainer.callback_metrics
    result = TrainResult(
        run_dir=run_dir, steps=trainer.global_step,
        train_loss=float(metrics.get("train/loss", math.nan)),
        val_loss=float(metrics.get("val/loss", math.nan)),
        val_bpb=float(metrics.get("val/bpb", math.nan)),
        last_checkpoint=final.path if final.path.exists() else None,
        best_checkpoint=Path(best.best_model_path) if best.best_model_path else None,
        precision=precision.precision, signal=final.signum)
    sample = next(c.last for c in trainer.callbacks if isinstance(c, SampleText))
    summary(result, dm, gpt_cfg, precision, sample, sweep)
    return result


def pretrained(s: TrainConfig) -> GPT | None:
    """The GPT-2 weights model.init_from names, checked against this run's data settings."""
    if not s.model.init_from:
        return None
    if s.data.tokenizer != "gpt2":
        raise UsageError(f"model.init_from needs GPT-2's tokenizer, not data.tokenizer="
                         f"{s.data.tokenizer.value} (set data.tokenizer=gpt2)")
    model = load_hf_gpt2(s.model.init_from, s.model.attention)
    model.cfg.drop_rate = s.model.drop_rate  # dropout is a training choice, not the file's
    if s.model.context_length > model.cfg.context_length:
        raise UsageError(f"model.context_length={s.model.context_length} is longer than the "
                         f"pretrained model's {model.cfg.context_length} "
                         "(lower model.context_length)")
    return model


def build_trainer(cfg: DictConfig, s: TrainConfig, run_dir: Path, precision: PrecisionChoice,
                  extra: list[L.Callback]) -> tuple[L.Trainer, FinalCheckpoint, ModelCheckpoint]:
    """The Trainer from cfg.trainer, with the project's logger, checkpoints and callbacks."""
    ckpt_dir = run_dir / "checkpoints"
    final = FinalCheckpoint(ckpt_dir / "last.ckpt")
    best = ModelCheckpoint(dirpath=ckpt_dir, filename="best-{step}", monitor="val/loss",
                           mode="min", save_top_k=1, auto_insert_metric_name=False)
    log_every = cfg.trainer.log_every_n_steps or 50
    callbacks = [
        best, final, LearningRate(logging_interval="step"),
        Throughput(window=log_every, peak_tflops=s.peak_tflops),
        SampleText(s.sample, seed=s.seed), AttentionMaps(s.attention_map_tokens),
        TensorBoardLayout(), LongContextEval(),
        AttentionDiagnostics(s.diagnostics_every),
        *progress_callback(cfg.trainer, every=5 * log_every), *extra,
    ]
    if s.save_every_n_steps > 0:  # last.ckpt on a schedule of steps, each replacing the one before
        callbacks.append(ModelCheckpoint(dirpath=ckpt_dir, filename="last", save_top_k=1,
                                         every_n_train_steps=s.save_every_n_steps,
                                         enable_version_counter=False))
    # Events straight into the run directory: in a sweep each job's folder is one TB run.
    logger = TensorBoardLogger(save_dir=str(run_dir), name="", version="",
                               default_hp_metric=False)
    trainer = instantiate(cfg.trainer, precision=precision.precision, logger=logger,
                          callbacks=callbacks, default_root_dir=str(run_dir),
                          plugins=[AtomicCheckpointIO()])
    return trainer, final, best


# What the HPARAMS tab always shows of a run, in this order; then whatever else it changed.
HPARAMS_FIRST = ("data.tokenizer", "data.vocab_size", "model.n_layers", "model.emb_dim",
                 "model.n_heads", "model.context_length", "model.attention.scale",
                 "model.attention.causal", "optim.lr", "data.batch_size", "trainer.max_steps",
                 "seed")
# Where and how a run works, not what it trains: left out of HPARAMS (and of run names).
PLUMBING = {"data.cache_dir", "data.num_workers", "trainer.enable_progress_bar",
            "trainer.enable_model_summary", "ckpt_path", "resume"}


def hyperparameters(cfg: DictConfig, precision: str) -> dict:
    """The HPARAMS columns of a run: a few that define any run, then every key that differs
    from the default config (the full config is in the run's .hydra/config.yaml)."""
    run, default = flat_config(cfg), config_keys()
    changed = [k for k in run if k not in HPARAMS_FIRST and k not in PLUMBING
               and yaml_value(run[k]) != default.get(k)]
    first = [k for k in HPARAMS_FIRST if k != "data.vocab_size" or run["data.tokenizer"] == "bpe"]
    return {k: run[k] for k in [*first, *changed]} | {"precision": precision}


def tensorboard_logdir(run_dir: Path, sweep: bool) -> Path:
    """Where to point TensorBoard so the run shows under its own name (its folder's), not `.`:
    a sweep's folder, outputs/ for a run under it, else the run's parent folder."""
    outputs = Path("outputs").resolve()
    if sweep:
        return run_dir.parent
    if run_dir.resolve().is_relative_to(outputs):
        return Path("outputs")
    return run_dir.parent


@rank_zero_only
def summary(r: TrainResult, dm: TextDataModule, gpt_cfg, precision: PrecisionChoice,
            sample: str | None, sweep: bool) -> None:
    """The lines a run ends with: what was trained, how well, and where everything went."""
    logdir = tensorboard_logdir(r.run_dir, sweep)
    lines = [
        f"trained {r.steps} steps ({gpt_cfg.n_layers} layers x {gpt_cfg.emb_dim}) on {dm.name}: "
        f"{len(dm.train_ids):,} train / {len(dm.val_ids):,} val tokens",
        f"precision: {precision.precision} ({precision.reason})",
        f"final train loss {r.train_loss:.3f}, val loss {r.val_loss:.3f} nats = "
        f"{r.val_bpb:.3f} bits per byte (add-one unigram baseline {dm.unigram_baseline():.3f} "
        f"nats = {dm.unigram_bpb():.3f} bpb)",
        f"sample: {sample!r}" if sample else "",
        f"run directory: {r.run_dir}",
        f"checkpoints:   {r.run_dir / 'checkpoints'}",
        f"tensorboard:   tensorboard --logdir {logdir}   "
        "(then http://localhost:6006/#custom_scalars: losses first)",
        f"sweep report:  python scripts/report.py {logdir}" if sweep else "",
    ]
    print("\n" + "\n".join(line for line in lines if line))
    if r.signal is not None:
        print(f"stopped by {signal.Signals(r.signal).name} after step {r.steps}; saved "
              f"{r.last_checkpoint}\nresume with: python scripts/train.py "
              f"hydra.run.dir={r.run_dir} resume=true", file=sys.stderr)
