"""Train a tiny GPT.   python scripts/train.py [key=value ...]   (see configs/train.yaml)"""

from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path

import hydra
import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from tinygpt.callbacks import AttentionMaps, SampleText, TokensPerSecond
from tinygpt.config import register_configs
from tinygpt.data import TextDataModule
from tinygpt.lit import LitGPT
from tinygpt.model import AttentionConfig, GPTConfig
from tinygpt.tokenizer import tokenizer_state

register_configs()


def resolve_precision(precision: str, accelerator: str) -> str:
    """`auto`: bf16-mixed where the device runs bf16 matmuls natively, else 32-true."""
    if precision != "auto":
        return precision
    if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    cpu_bf16 = getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()
    cpu_amx = getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()
    return "bf16-mixed" if (cpu_bf16 or cpu_amx) else "32-true"


def model_config(cfg: DictConfig, vocab_size: int) -> GPTConfig:
    m = OmegaConf.to_container(cfg.model, resolve=True)
    m["attention"] = AttentionConfig(**m["attention"])
    return GPTConfig(vocab_size=vocab_size, **m)


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def train(cfg: DictConfig) -> float:
    if OmegaConf.is_missing(cfg.data, "path"):
        fail("data=text needs a corpus (set data.path=/path/to/file.txt)")
    model_config(cfg, vocab_size=1).validate()  # shape errors before any data is read
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    run_dir = Path(HydraConfig.get().runtime.output_dir)

    d = cfg.data
    dm = TextDataModule(
        name=d.name, path=d.path, tokenizer=d.tokenizer, context_length=cfg.model.context_length,
        batch_size=d.batch_size, val_fraction=d.val_fraction, stride=d.stride,
        num_workers=d.num_workers, cache_dir=d.cache_dir, seed=cfg.seed,
    )
    dm.load()
    gpt_cfg = model_config(cfg, vocab_size=dm.tokenizer.vocab_size)
    o = cfg.optim
    lit = LitGPT(
        model=asdict(gpt_cfg), tokenizer=tokenizer_state(dm.tokenizer), lr=o.lr,
        weight_decay=o.weight_decay, betas=tuple(o.betas), warmup_steps=o.warmup_steps,
        min_lr_ratio=o.min_lr_ratio, grad_norm_every=cfg.grad_norm_every,
    )

    # Events straight into the run directory: in a sweep each job's folder is one TB run.
    logger = TensorBoardLogger(save_dir=str(run_dir), name="", version="", default_hp_metric=False)
    checkpoints = ModelCheckpoint(
        dirpath=run_dir / "checkpoints", filename="best-{step}", monitor="val/loss", mode="min",
        save_top_k=1, save_last=True, auto_insert_metric_name=False,
    )
    s = cfg.sample
    sampler = SampleText(s.prompt, s.max_new_tokens, s.temperature, s.top_k, seed=cfg.seed)
    callbacks = [checkpoints, TokensPerSecond(), sampler, AttentionMaps(cfg.attention_map_tokens)]
    precision = resolve_precision(cfg.trainer.precision, cfg.trainer.accelerator)
    trainer: L.Trainer = instantiate(
        cfg.trainer, precision=precision, logger=logger, callbacks=callbacks,
        default_root_dir=str(run_dir),
    )
    trainer.fit(lit, datamodule=dm, ckpt_path=cfg.ckpt_path)
    if trainer.interrupted:
        fail("training was interrupted")
    if "val/loss" not in trainer.callback_metrics or trainer.global_step % _val_every(trainer):
        trainer.validate(lit, datamodule=dm, verbose=False)  # score the final weights
    val_loss = float(trainer.callback_metrics["val/loss"])
    train_loss = float(trainer.callback_metrics.get("train/loss", float("nan")))
    logger.log_hyperparams(
        OmegaConf.to_container(cfg, resolve=True),
        {"hp/val_loss": val_loss, "hp/train_loss": train_loss},
    )
    logger.finalize("success")
    report(run_dir, trainer, dm, gpt_cfg, precision, train_loss, val_loss, sampler.last)
    return val_loss


def _val_every(trainer: L.Trainer) -> int:
    v = trainer.val_check_interval
    return int(v) if isinstance(v, int) and v > 0 else max(1, trainer.num_training_batches)


@rank_zero_only
def report(run_dir, trainer, dm, gpt_cfg, precision, train_loss, val_loss, sample) -> None:
    logdir = run_dir.parent if HydraConfig.get().mode.name == "MULTIRUN" else run_dir
    lines = [
        f"trained {trainer.global_step} steps ({gpt_cfg.n_layers} layers x {gpt_cfg.emb_dim}, "
        f"{precision}) on {dm.name}: {len(dm.train_ids):,} train / {len(dm.val_ids):,} val tokens",
        f"final train loss {train_loss:.3f}, val loss {val_loss:.3f} nats "
        f"(add-one unigram baseline {dm.unigram_baseline():.3f})",
        f"sample: {sample!r}" if sample else "",
        f"run directory: {run_dir}",
        f"checkpoints:   {run_dir / 'checkpoints'}",
        f"tensorboard:   tensorboard --logdir {logdir}",
    ]
    print("\n" + "\n".join(line for line in lines if line))


@hydra.main(version_base="1.3", config_path="../configs", config_name="train")
def main(cfg: DictConfig) -> float:
    try:
        return train(cfg)
    except (ValueError, FileNotFoundError) as e:
        fail(str(e))


if __name__ == "__main__":
    main()
