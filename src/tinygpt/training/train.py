"""A training run from its settled settings: build the Trainer, the data and the model, fit, then
summarise what it ended with.

`tinygpt-train` (`scripts/train.py`) is Hydra's entry point over `train()`; tests and notebooks
call it in-process: `train(configure("trainer.max_steps=50", run_dir=d), d)`.
"""

from __future__ import annotations

import json
import math
import signal
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import lightning as L
import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.strategies import FSDPStrategy, StrategyRegistry
from lightning.pytorch.utilities import rank_zero_only

from tinygpt import metrics
from tinygpt.atomic import atomic_write
from tinygpt.data.tokenizer import TokenizerName, tokenizer_state
from tinygpt.data.windows import TokenSplit
from tinygpt.errors import RunStopped, StoppedAtOnce, UsageError
from tinygpt.model.gpt import Block, GPTConfig
from tinygpt.run_dir import RESULT
from tinygpt.training.callbacks import (
    AttentionMaps,
    AttentionStats,
    LongContextEval,
    SampleText,
    TensorBoardLayout,
    rank_zero_print,
)
from tinygpt.training.checkpoint_callbacks import (
    AtomicCheckpointIO,
    FinalCheckpoint,
    RunRecord,
    check_checkpoint_fits,
    checkpoint_callbacks,
)
from tinygpt.training.commands import as_typed, command, entry_point, override, tool
from tinygpt.training.config import TrainConfig, trainer_arguments
from tinygpt.training.datamodule import TextDataModule, split_batch
from tinygpt.training.module import GPTLightningModule
from tinygpt.training.precision import PrecisionChoice, resolve_precision
from tinygpt.training.probes import Probes
from tinygpt.training.progress import progress_callback
from tinygpt.training.settings import Settings
from tinygpt.training.tensorboard_layout import RunLogger, hyperparameters, write_hparams
from tinygpt.training.threads import describe as describe_threads
from tinygpt.training.throughput import Throughput, TrainClock
from tinygpt.weights.checkpoint import read_checkpoint
from tinygpt.weights.hf import load_hf_model

# trainer=fsdp's strategy, by a name Lightning looks up (a config names no object to build): one
# FSDP unit per transformer block; checkpoints gathered whole, so they load on any device count.
FSDP_BLOCKS = "fsdp_blocks"
if FSDP_BLOCKS not in StrategyRegistry:
    StrategyRegistry.register(FSDP_BLOCKS, FSDPStrategy, "FSDP, one unit per transformer block",
                              auto_wrap_policy={Block}, sharding_strategy="FULL_SHARD",
                              state_dict_type="full")


@dataclass(frozen=True)
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
    signal: int | None
    tokens: int  # trained on, all devices
    train_bytes: float  # of training text those tokens stand for
    train_seconds: float | None  # the training loop alone (TrainClock)
    median_step_ms: float | None  # from one step's end to the next's
    # the median step's FLOP/s over the peak train/mfu divides by (a measured matmul on CPUs)
    step_peak_share: float | None
    target_bpb: float | None

    def __float__(self) -> float:
        """What a search minimises: the final val/bpb (Hydra's Optuna sweeper reads a job's value
        as a float)."""
        return self.val_bpb

    @property
    def reached_target(self) -> bool | None:
        return None if self.target_bpb is None else self.val_bpb < self.target_bpb

    def write(self, path: Path) -> None:
        """result.json: what a run ended with, for scripts (tinygpt-speedrun) to read."""
        fields = {k: v for k, v in vars(self).items() if k not in ("run_dir",)}
        record = {k: str(v) if isinstance(v, Path) else v for k, v in fields.items()}
        with atomic_write(path) as f:
            f.write(json.dumps(record | {"reached_target": self.reached_target}, indent=2)
                    .encode())


@dataclass(frozen=True)
class RunCallbacks:
    """The callbacks `build_trainer` made whose results the run's summary reads."""

    final: FinalCheckpoint
    best: ModelCheckpoint
    clock: TrainClock
    throughput: Throughput
    sample: SampleText


def train(settings: Settings, run_dir: str | Path, sweep: bool = False,
          callbacks: list[L.Callback] | None = None) -> TrainResult:
    """Train as the settings say, writing events and checkpoints into run_dir. UsageError for what
    the user can fix; `sweep` only changes the summary's pointers; `callbacks` are added to ours."""
    s, run_dir = settings.config, Path(run_dir)
    L.seed_everything(s.seed, workers=True, verbose=False)
    if s.cpu.threads:
        torch.set_num_threads(s.cpu.threads)
    precision = resolve_precision(s.trainer.precision, s.trainer.accelerator)
    trainer, made = build_trainer(settings, run_dir, precision, callbacks or [])
    per_device = split_batch(s.data.batch_size, trainer.world_size,
                             trainer.accumulate_grad_batches)
    init, init_tok = (load_hf_model(s.model.init_from, s.model.attention) if s.model.init_from
                      else (None, None))
    # a pretrained model reads its own tokens: the corpus is encoded with its tokenizer
    given = init_tok if init_tok is not None and init_tok.name != TokenizerName.gpt2 else None
    dm = TextDataModule(s.data, s.model.context_length, per_device, seed=s.seed, tokenizer=given)
    data = dm.load()
    # GPT-2's weights set the shape; dropout is this run's choice, not the file's
    gpt_cfg = replace(init.cfg, drop_rate=s.model.drop_rate) if init else \
        s.model.gpt_config(data.tokenizer.vocab_size)
    tok_state = tokenizer_state(data.tokenizer)
    if settings.resume_from:
        check_checkpoint_fits(settings.resume_from, gpt_cfg, tok_state)
    module = GPTLightningModule(
        gpt_cfg, tok_state, s.optim, grad_norm_every=s.probes.grad_norm_every,
        on_nonfinite=s.on_nonfinite, compile=s.compile, causal_eval=s.probes.causal_eval)
    if init is not None:
        module.model.load_state_dict(init.state_dict())
    rank_zero_print(f"precision {precision.precision} ({precision.reason}); "
                    f"{describe_threads(torch.get_num_threads())}")
    write_hparams(trainer.logger, hyperparameters(settings, precision.precision))
    try:
        trainer.fit(module, datamodule=dm, ckpt_path=settings.resume_from, weights_only=True)
    except StoppedAtOnce as stop:
        stopped_at_once(stop.signum, made.final.path, run_dir)
        raise
    if module.nonfinite_step is not None:
        kept = f"; the last good checkpoint is {made.final.path}" if made.final.path.exists() \
            else ""
        raise RunStopped(f"the {module.nonfinite_what} became NaN or inf at step "
                         f"{module.nonfinite_step}{kept} "
                         "(lower optim.lr, or set on_nonfinite=skip to drop such batches)")
    if trainer.interrupted:
        raise RunStopped("training was interrupted (resume it with resume=true)")
    result = outcome(trainer, made, s, run_dir, precision, data, module)
    if trainer.is_global_zero:
        result.write(run_dir / RESULT)
    summary(result, data, gpt_cfg, precision, made.sample, sweep)
    return result


def build_trainer(settings: Settings, run_dir: Path, precision: PrecisionChoice,
                  extra: list[L.Callback]) -> tuple[L.Trainer, RunCallbacks]:
    """The Trainer from the trainer settings, with the project's logger, checkpoints and
    callbacks; what Lightning refuses in those settings, as a UsageError."""
    s = settings.config
    final, best, checkpoints = checkpoint_callbacks(run_dir, s.save_every_n_steps)
    log_every = s.trainer.log_every_n_steps or 50
    made = RunCallbacks(final, best, TrainClock(),
                        Throughput(window=log_every, peak_tflops=s.peak_tflops),
                        SampleText(s.sample, seed=s.seed))
    callbacks = [
        *checkpoints, made.throughput, made.clock, made.sample,
        AttentionMaps(s.probes.attention_map_tokens), TensorBoardLayout(), LongContextEval(),
        AttentionStats(s.probes.every), Probes(s.probes.every, s.probes.int8_windows),
        *progress_callback(s.trainer.enable_progress_bar, every=5 * log_every),
        RunRecord(settings.record), *extra,
    ]
    if s.target_bpb is not None:  # Lightning's own: stop once val/bpb is below the target
        callbacks.append(EarlyStopping(monitor=metrics.VAL_BPB, mode="min", patience=2**31,
                                       stopping_threshold=s.target_bpb, check_finite=False))
    try:
        trainer = L.Trainer(**trainer_arguments(s.trainer) | {
            "precision": precision.precision,
            "logger": RunLogger(str(run_dir)),  # events straight into run_dir
            "callbacks": callbacks, "default_root_dir": str(run_dir),
            "plugins": [AtomicCheckpointIO()]})
    except (ValueError, TypeError, MisconfigurationException) as e:
        said = " ".join(str(e).split())
        raise UsageError(f"Lightning cannot build the Trainer from the trainer.* settings: "
                         f"{said} (change the trainer.* setting it names)") from None
    return trainer, made


def outcome(trainer: L.Trainer, made: RunCallbacks, s: TrainConfig, run_dir: Path,
            precision: PrecisionChoice, data: TokenSplit, module: GPTLightningModule
            ) -> TrainResult:
    """The run's TrainResult, from what the Trainer logged and the callbacks measured."""
    logged = trainer.callback_metrics
    tokens = trainer.global_step * s.data.batch_size * module.model.cfg.context_length
    step_ms, peak = made.clock.median_step_ms, made.throughput.available_flops
    flops = module.flops_per_batch
    return TrainResult(
        run_dir=run_dir, steps=trainer.global_step,
        train_loss=float(logged.get(metrics.TRAIN_LOSS, math.nan)),
        val_loss=float(logged.get(metrics.VAL_LOSS, math.nan)),
        val_bpb=float(logged.get(metrics.VAL_BPB, math.nan)),
        last_checkpoint=made.final.path if made.final.path.exists() else None,
        best_checkpoint=Path(made.best.best_model_path) if made.best.best_model_path else None,
        precision=precision.precision, signal=made.final.signum, tokens=tokens,
        train_bytes=tokens * data.train_bytes_per_token(), train_seconds=made.clock.seconds,
        median_step_ms=step_ms,
        step_peak_share=flops / (step_ms / 1000) / peak if flops and step_ms and peak else None,
        target_bpb=s.target_bpb)


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
def summary(r: TrainResult, data: TokenSplit, gpt_cfg: GPTConfig, precision: PrecisionChoice,
            sample: SampleText, sweep: bool) -> None:
    """The lines a run ends with: what was trained, how well, where everything went, and the
    commands that read it, each ready to paste."""
    logdir, run = tensorboard_logdir(r.run_dir, sweep), as_typed(r.run_dir)
    ckpt_dir = r.last_checkpoint.parent if r.last_checkpoint else None
    lines = [
        f"trained {r.steps} steps ({gpt_cfg.n_layers} layers x {gpt_cfg.emb_dim}) on {data.name}: "
        f"{len(data.train_ids):,} train / {len(data.val_ids):,} val tokens",
        f"precision: {precision.precision} ({precision.reason})",
        f"threads:   {describe_threads(torch.get_num_threads())}",
        f"final train loss {r.train_loss:.3f}, val loss {r.val_loss:.3f} nats = "
        f"{r.val_bpb:.3f} bits per byte (add-one unigram baseline {data.unigram_baseline():.3f} "
        f"nats = {data.unigram_bpb():.3f} bpb)",
        f"sample: {sample.last!r}" if sample.last else "",
        f"run directory: {run}",
        f"checkpoints:   {as_typed(ckpt_dir)}" if ckpt_dir else "",
        "generate:      " + command([*entry_point("generate"), override("ckpt", run),
                                     override("prompt", sample.prompt)]) if ckpt_dir else "",
        "tensorboard:   " + command([*tool("tensorboard"), "--logdir", str(logdir)])
        + "   (then http://localhost:6006)",
        "sweep report:  " + command([*entry_point("report"), str(logdir)]) if sweep else "",
    ]
    print("\n" + "\n".join(line for line in lines if line))
    if r.signal is not None:
        print(f"stopped by {signal.Signals(r.signal).name} after step {r.steps}; saved "
              f"{r.last_checkpoint}\nresume with: {resume_command(r.run_dir)}", file=sys.stderr)


def resume_command(run_dir: Path) -> str:
    """The command that continues the run in run_dir where its last checkpoint left it."""
    return command([*entry_point("train"), override("hydra.run.dir", as_typed(run_dir)),
                    "resume=true"])


@rank_zero_only
def stopped_at_once(signum: int, last: Path, run_dir: Path) -> None:
    """What a run stopped by a second signal says: what it kept, and how to go on."""
    kept = "no checkpoint was written yet"
    if last.exists():
        kept = f"the last checkpoint, {last}, is from step {read_checkpoint(last)['global_step']}"
    print(f"stopped at once by a second {signal.Signals(signum).name}; {kept}\nresume with: "
          f"{resume_command(run_dir)}", file=sys.stderr, flush=True)

