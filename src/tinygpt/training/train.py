"""A training run from a composed config: data, model, Trainer, fit, the summary.

`tinygpt-train` (`scripts/train.py`) is Hydra's entry point over `train()`; tests and notebooks
call it in-process with `tinygpt.training.schema.compose_train(...)`.
"""

from __future__ import annotations

import json
import math
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only
from omegaconf import DictConfig, OmegaConf

from tinygpt import metrics
from tinygpt.atomic import atomic_write
from tinygpt.data import TokenSplit
from tinygpt.errors import UsageError
from tinygpt.hf import load_hf_gpt2
from tinygpt.model import GPT
from tinygpt.run_dir import RESULT
from tinygpt.tokenizer import tokenizer_state
from tinygpt.training.callbacks import (
    AttentionDiagnostics,
    AttentionMaps,
    LongContextEval,
    SampleText,
    TensorBoardLayout,
)
from tinygpt.training.checkpoints import (
    AtomicCheckpointIO,
    FinalCheckpoint,
    RunRecord,
    check_resumable,
    checkpoint_callbacks,
)
from tinygpt.training.checks import check_train_config
from tinygpt.training.commands import as_typed, command, entry_point, override, tool
from tinygpt.training.datamodule import TextDataModule
from tinygpt.training.module import GPTLightningModule
from tinygpt.training.phenomena import Phenomena
from tinygpt.training.precision import PrecisionChoice, resolve_precision
from tinygpt.training.progress import progress_callback
from tinygpt.training.resume import flatten, resume_source
from tinygpt.training.schema import TrainConfig
from tinygpt.training.tensorboard_layout import RunLogger, hyperparameters, write_hparams
from tinygpt.training.threads import describe as describe_threads
from tinygpt.training.throughput import Throughput, TrainClock


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
    tokens: int = 0  # trained on, all devices
    train_bytes: float = 0.0  # of training text those tokens stand for
    train_seconds: float | None = None  # the training loop alone (TrainClock)
    median_step_ms: float | None = None  # from one step's end to the next's
    # the median step's FLOP/s over the peak train/mfu divides by (a measured matmul on CPUs)
    step_peak_share: float | None = None
    target_bpb: float | None = None

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


def train(cfg: DictConfig, run_dir: str | Path, sweep: bool = False,
          callbacks: list[L.Callback] | None = None) -> TrainResult:
    """Train as `cfg` says, writing events and checkpoints into run_dir. UsageError for what the
    user can fix; `sweep` only changes the summary's pointers; `callbacks` are added to ours."""
    run_dir = Path(run_dir)
    s = check_train_config(cfg)  # typed (enums, dataclasses), and every value checked
    settings = flatten(OmegaConf.to_container(cfg, resolve=True, enum_to_str=True))
    L.seed_everything(s.seed, workers=True, verbose=False)
    ckpt_path = resume_source(s.ckpt_path, s.resume, run_dir)
    init = pretrained(s)
    dm = TextDataModule(s.data, context_length=s.model.context_length, seed=s.seed)
    data = dm.load()
    gpt_cfg = init.cfg if init else s.model.gpt_config(data.tokenizer.vocab_size)
    tok_state = tokenizer_state(data.tokenizer)
    if ckpt_path:
        check_resumable(ckpt_path, gpt_cfg, tok_state, settings)
    s.sample.prompt = readable_prompt(s.sample.prompt, data)
    module = GPTLightningModule(
        gpt_cfg, tok_state, s.optim, grad_norm_every=s.grad_norm_every,
        on_nonfinite=s.on_nonfinite, compile=s.compile, causal_eval=s.causal_eval)
    if init is not None:
        module.model.load_state_dict(init.state_dict())
    if s.threads:
        torch.set_num_threads(s.threads)
    precision = resolve_precision(cfg.trainer.precision, cfg.trainer.accelerator)
    threads = describe_threads(torch.get_num_threads())
    rank_zero_info(f"precision {precision.precision} ({precision.reason}); {threads}")
    trainer, final, best = build_trainer(cfg, s, run_dir, precision,
                                         [RunRecord(settings), *(callbacks or [])])
    write_hparams(trainer.logger, hyperparameters(cfg, precision.precision, overridden_keys()))
    trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path, weights_only=True)
    if module.nonfinite_step is not None:
        kept = f"; the last good checkpoint is {final.path}" if final.path.exists() else ""
        raise UsageError(f"the loss became NaN or inf at step {module.nonfinite_step}{kept} "
                         "(lower optim.lr, or set on_nonfinite=skip to drop such batches)")
    if trainer.interrupted:
        raise UsageError("training was interrupted (resume it with resume=true)")
    logged = trainer.callback_metrics
    result = TrainResult(
        run_dir=run_dir, steps=trainer.global_step,
        train_loss=float(logged.get(metrics.TRAIN_LOSS, math.nan)),
        val_loss=float(logged.get(metrics.VAL_LOSS, math.nan)),
        val_bpb=float(logged.get(metrics.VAL_BPB, math.nan)),
        last_checkpoint=final.path if final.path.exists() else None,
        best_checkpoint=Path(best.best_model_path) if best.best_model_path else None,
        precision=precision.precision, signal=final.signum)
    result.tokens = result.steps * s.data.batch_size * gpt_cfg.context_length
    result.train_bytes = result.tokens * data.train_bytes_per_token()
    clock = next(c for c in trainer.callbacks if isinstance(c, TrainClock))
    result.train_seconds, result.median_step_ms = clock.seconds, clock.median_step_ms
    meter = next(c for c in trainer.callbacks if isinstance(c, Throughput))
    flops = getattr(trainer.lightning_module, "flops_per_batch", None)
    if flops and clock.median_step_ms and meter.available_flops:
        result.step_peak_share = flops / (clock.median_step_ms / 1000) / meter.available_flops
    result.target_bpb = s.target_bpb
    if trainer.is_global_zero:
        result.write(run_dir / RESULT)
    sample = next(c.last for c in trainer.callbacks if isinstance(c, SampleText))
    summary(result, data, gpt_cfg, precision, sample, s.sample.prompt, sweep)
    return result


def overridden_keys() -> list[str]:
    """The keys this run's command line set, where Hydra started it (none in-process)."""
    if not HydraConfig.initialized():
        return []
    return [o.split("=", 1)[0].lstrip("+~") for o in HydraConfig.get().overrides.task]


def readable_prompt(prompt: str, data: TokenSplit) -> str:
    """The prompt the run samples from: sample.prompt where this run's tokenizer can read it,
    else the start of the validation text (said once, not found out after training)."""
    try:
        data.tokenizer.encode(prompt)
        return prompt
    except UsageError as e:
        reason = str(e).split(" (")[0]
    start = data.tokenizer.decode(data.val_ids[:24].tolist())
    fallback = start.split("\n")[0] or start
    say(f"sample.prompt={prompt!r} cannot be read by this run's tokenizer ({reason}); "
        f"sampling from the validation text's start, {fallback!r}, instead")
    return fallback


@rank_zero_only
def say(text: str) -> None:
    """A line for the user, once per run (rank 0)."""
    print(text, flush=True)


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
    final, best, checkpoints = checkpoint_callbacks(run_dir, s.save_every_n_steps)
    log_every = cfg.trainer.log_every_n_steps or 50
    callbacks = [
        *checkpoints, Throughput(window=log_every, peak_tflops=s.peak_tflops), TrainClock(),
        SampleText(s.sample, seed=s.seed), AttentionMaps(s.attention_map_tokens),
        TensorBoardLayout(), LongContextEval(), AttentionDiagnostics(s.diagnostics_every),
        Phenomena(s.diagnostics_every),
        *progress_callback(cfg.trainer, every=5 * log_every), *extra,
    ]
    if s.target_bpb is not None:  # Lightning's own: stop once val/bpb is below the target
        callbacks.append(EarlyStopping(monitor=metrics.VAL_BPB, mode="min", patience=2**31,
                                       stopping_threshold=s.target_bpb, check_finite=False))
    # Events straight into the run directory: in a sweep each job's folder is one TB run.
    logger = RunLogger(str(run_dir))
    trainer = instantiate(cfg.trainer, precision=precision.precision, logger=logger,
                          callbacks=callbacks, default_root_dir=str(run_dir),
                          plugins=[AtomicCheckpointIO()])
    return trainer, final, best


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
def summary(r: TrainResult, data: TokenSplit, gpt_cfg, precision: PrecisionChoice,
            sample: str | None, prompt: str, sweep: bool) -> None:
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
        f"sample: {sample!r}" if sample else "",
        f"run directory: {run}",
        f"checkpoints:   {as_typed(ckpt_dir)}" if ckpt_dir else "",
        "generate:      " + command([*entry_point("generate"), override("ckpt", run),
                                     override("prompt", prompt)]) if ckpt_dir else "",
        "tensorboard:   " + command([*tool("tensorboard"), "--logdir", str(logdir)])
        + "   (then http://localhost:6006)",
        "sweep report:  " + command([*entry_point("report"), str(logdir)]) if sweep else "",
    ]
    print("\n" + "\n".join(line for line in lines if line))
    if r.signal is not None:
        resume = command([*entry_point("train"), override("hydra.run.dir", run),
                          "resume=true"])
        print(f"stopped by {signal.Signals(r.signal).name} after step {r.steps}; saved "
              f"{r.last_checkpoint}\nresume with: {resume}", file=sys.stderr)
