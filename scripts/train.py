"""Train a tiny GPT.   python scripts/train.py [key=value ...]   (see configs/train.yaml)"""

from __future__ import annotations

import signal
import sys
from dataclasses import asdict
from pathlib import Path
from typing import NoReturn

import hydra
import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only
from omegaconf import DictConfig, OmegaConf

from tinygpt.callbacks import (
    AttentionDiagnostics,
    AttentionMaps,
    LastCheckpoint,
    RunLogger,
    SampleText,
    TokensPerSecond,
)
from tinygpt.checkpoint import (
    AtomicCheckpointIO,
    checkpoint_model_config,
    find_last_checkpoint,
    read_checkpoint,
)
from tinygpt.config import register_configs
from tinygpt.data import TextDataModule
from tinygpt.hf import load_hf_gpt2
from tinygpt.lit import LitGPT
from tinygpt.model import GPT, AttentionConfig, GPTConfig
from tinygpt.precision import resolve_precision
from tinygpt.tokenizer import tokenizer_state

register_configs()


def model_config(cfg: DictConfig, vocab_size: int) -> GPTConfig:
    m = OmegaConf.to_container(cfg.model, resolve=True)
    m.pop("init_from")
    m["attention"] = AttentionConfig(**m["attention"])
    return GPTConfig(vocab_size=vocab_size, **m)


def pretrained(cfg: DictConfig) -> GPT | None:
    """The GPT-2 weights model.init_from names, checked against this run's data settings."""
    if not cfg.model.init_from:
        return None
    if cfg.data.tokenizer != "gpt2":
        fail(f"model.init_from needs GPT-2's tokenizer, not data.tokenizer={cfg.data.tokenizer} "
             "(set data.tokenizer=gpt2)")
    model = load_hf_gpt2(cfg.model.init_from, AttentionConfig(**cfg.model.attention))
    model.cfg.drop_rate = cfg.model.drop_rate  # dropout is a training choice, not the file's
    if cfg.model.context_length > model.cfg.context_length:
        fail(f"model.context_length={cfg.model.context_length} is longer than the pretrained "
             f"model's {model.cfg.context_length} (lower model.context_length)")
    return model


class RunFailed(Exception):
    """A run that ended with a one-line `error:` already printed."""


def fail(message: str, code: int = 2) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    raise RunFailed(code)


def resume_checkpoint(cfg: DictConfig, run_dir: Path) -> str | None:
    """The checkpoint to resume from: ckpt_path as given, or the newest one for resume/last."""
    if not (cfg.resume or cfg.ckpt_path == "last"):
        return cfg.ckpt_path
    found = find_last_checkpoint(run_dir, "outputs")
    if found is None:
        fail(f"there is no last.ckpt to resume in {run_dir} or outputs/ "
             "(train first, or give ckpt_path=/path/to/file.ckpt)")
    return str(found)


def check_resumable(path: str, gpt_cfg: GPTConfig, tokenizer: dict) -> None:
    """Refuse, before training starts, a checkpoint this run's model could not continue."""
    ckpt = read_checkpoint(path)
    theirs = checkpoint_model_config(ckpt, path)
    if theirs != gpt_cfg:
        diff = ", ".join(f"{k}={v} (this run: {getattr(gpt_cfg, k)})"
                         for k, v in asdict(theirs).items() if v != asdict(gpt_cfg)[k])
        fail(f"checkpoint {path} is for another model: {diff} "
             "(use the same model.* and data settings, or start a new run)")
    if ckpt["hyper_parameters"].get("tokenizer") != tokenizer:
        fail(f"checkpoint {path} was trained with another tokenizer or vocabulary "
             "(use the same data.tokenizer and corpus, or start a new run)")


def train(cfg: DictConfig) -> float:
    model_config(cfg, vocab_size=1).validate()  # shape errors before any data is read
    if cfg.on_nonfinite not in ("stop", "skip"):
        fail(f"on_nonfinite={cfg.on_nonfinite} is unknown (use stop or skip)")
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    ckpt_path = resume_checkpoint(cfg, run_dir)
    init = pretrained(cfg)

    d = cfg.data
    dm = TextDataModule(
        name=d.name, path=d.path, tokenizer=d.tokenizer, context_length=cfg.model.context_length,
        batch_size=d.batch_size, val_fraction=d.val_fraction, stride=d.stride,
        num_workers=d.num_workers, cache_dir=d.cache_dir, seed=cfg.seed, url=d.url,
    )
    dm.load()
    gpt_cfg = init.cfg if init else model_config(cfg, vocab_size=dm.tokenizer.vocab_size)
    tok_state = tokenizer_state(dm.tokenizer)
    if ckpt_path:
        check_resumable(ckpt_path, gpt_cfg, tok_state)
    o = cfg.optim
    lit = LitGPT(
        model=asdict(gpt_cfg), tokenizer=tok_state, lr=o.lr,
        weight_decay=o.weight_decay, betas=tuple(o.betas), warmup_steps=o.warmup_steps,
        min_lr_ratio=o.min_lr_ratio, grad_norm_every=cfg.grad_norm_every,
        on_nonfinite=cfg.on_nonfinite, compile=cfg.compile, causal_eval=cfg.causal_eval,
    )
    if init is not None:
        lit.model.load_state_dict(init.state_dict())

    # Events straight into the run directory: in a sweep each job's folder is one TB run.
    logger = RunLogger(save_dir=str(run_dir), name="", version="", default_hp_metric=False)
    ckpt_dir = run_dir / "checkpoints"
    last = ckpt_dir / "last.ckpt"
    best = ModelCheckpoint(
        dirpath=ckpt_dir, filename="best-{step}", monitor="val/loss", mode="min",
        save_top_k=1, auto_insert_metric_name=False,
    )
    s = cfg.sample
    sampler = SampleText(s.prompt, s.max_new_tokens, s.temperature, s.top_k, seed=cfg.seed)
    saver = LastCheckpoint(last, cfg.save_every_n_steps)
    callbacks = [best, TokensPerSecond(), sampler, AttentionMaps(cfg.attention_map_tokens),
                 AttentionDiagnostics(cfg.diagnostics_every), saver]
    precision = resolve_precision(cfg.trainer.precision, cfg.trainer.accelerator)
    rank_zero_info(f"precision {precision.precision} ({precision.reason})")
    trainer: L.Trainer = instantiate(
        cfg.trainer, precision=precision.precision, logger=logger, callbacks=callbacks,
        default_root_dir=str(run_dir), plugins=[AtomicCheckpointIO()],
    )
    batch = split_batch(cfg, trainer)
    dm.batch_size = batch["per_device_batch"]
    trainer.fit(lit, datamodule=dm, ckpt_path=ckpt_path, weights_only=True)

    if lit.nonfinite_step is not None:
        kept = f"; the last good checkpoint is {last}" if last.exists() else ""
        fail(f"the loss became NaN or inf at step {lit.nonfinite_step}{kept} (lower optim.lr, "
             "or set on_nonfinite=skip to drop such batches)")
    if saver.signum is not None:
        name = signal.Signals(saver.signum).name
        print(f"\nstopped by {name} after step {trainer.global_step}; saved {last}\n"
              f"resume with: python scripts/train.py hydra.run.dir={run_dir} resume=true",
              file=sys.stderr)
        sys.exit(128 + saver.signum)
    if trainer.interrupted:
        fail("training was interrupted")
    if trainer.max_steps <= 0:  # an epoch-based run: LastCheckpoint could not see its end
        trainer.save_checkpoint(last, weights_only=False)
    if "val/loss" not in trainer.callback_metrics or trainer.global_step % _val_every(trainer):
        trainer.validate(lit, datamodule=dm, verbose=False, weights_only=True)  # final weights
    val_loss = float(trainer.callback_metrics["val/loss"])
    train_loss = float(trainer.callback_metrics.get("train/loss", float("nan")))
    logger.log_hyperparams(
        OmegaConf.to_container(cfg, resolve=True) | {"batch": batch},
        {"hp/val_loss": val_loss, "hp/train_loss": train_loss},
    )
    logger.close()
    report(run_dir, trainer, dm, gpt_cfg, precision, train_loss, val_loss, sampler.last)
    return val_loss


def split_batch(cfg: DictConfig, trainer: L.Trainer) -> dict:
    """data.batch_size sequences per optimizer step, shared by devices and accumulation steps."""
    world, acc = trainer.world_size, trainer.accumulate_grad_batches
    per_device, rest = divmod(cfg.data.batch_size, world * acc)
    if rest or per_device == 0:
        fail(f"data.batch_size={cfg.data.batch_size} (sequences per step, all devices) is not a "
             f"multiple of devices x accumulate_grad_batches = {world * acc} (change one of them)")
    batch = {"global_batch_tokens": cfg.data.batch_size * cfg.model.context_length,
             "per_device_batch": per_device, "accumulate_grad_batches": acc, "world_size": world}
    if world > 1 or acc > 1:
        rank_zero_info(f"global batch {batch['global_batch_tokens']:,} tokens = {world} device(s) "
                       f"x {acc} accumulation step(s) x {per_device} sequences x "
                       f"{cfg.model.context_length} tokens")
    return batch


def _val_every(trainer: L.Trainer) -> int:
    v = trainer.val_check_interval
    return int(v) if isinstance(v, int) and v > 0 else max(1, trainer.num_training_batches)


@rank_zero_only
def report(run_dir, trainer, dm, gpt_cfg, precision, train_loss, val_loss, sample) -> None:
    sweep = HydraConfig.get().mode.name == "MULTIRUN"
    logdir = run_dir.parent if sweep else run_dir
    lines = [
        f"trained {trainer.global_step} steps ({gpt_cfg.n_layers} layers x {gpt_cfg.emb_dim}, "
        f"{precision.precision}) on {dm.name}: {len(dm.train_ids):,} train / "
        f"{len(dm.val_ids):,} val tokens",
        f"precision: {precision.precision} ({precision.reason})",
        f"final train loss {train_loss:.3f}, val loss {val_loss:.3f} nats "
        f"(add-one unigram baseline {dm.unigram_baseline():.3f})",
        f"sample: {sample!r}" if sample else "",
        f"run directory: {run_dir}",
        f"checkpoints:   {run_dir / 'checkpoints'}",
        f"tensorboard:   tensorboard --logdir {logdir}",
        f"sweep report:  python scripts/report.py {logdir}" if sweep else "",
    ]
    print("\n" + "\n".join(line for line in lines if line))


@hydra.main(version_base="1.3", config_path="../configs", config_name="train")
def main(cfg: DictConfig) -> float | None:
    try:
        try:
            return train(cfg)
        except ValueError as e:  # the library's way of saying the input is wrong
            fail(str(e))
    except RunFailed as e:
        if HydraConfig.get().mode.name == "MULTIRUN":
            return None  # the sweep goes on; SweepStatus exits non-zero once all jobs ran
        sys.exit(e.args[0])


if __name__ == "__main__":
    main()
