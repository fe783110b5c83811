"""Continue a prompt with a trained checkpoint.

    python scripts/generate.py ckpt=outputs/.../checkpoints/last.ckpt prompt="The for statement"
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig

from tinygpt.checkpoint import load_checkpoint
from tinygpt.config import register_configs
from tinygpt.generate import check_sampling, generate
from tinygpt.hf import load_hf_gpt2
from tinygpt.tokenizer import get_tokenizer

register_configs()


def run(cfg: DictConfig) -> str:
    check_sampling(cfg.temperature, cfg.top_k, cfg.top_p)
    if cfg.max_new_tokens < 1:
        raise ValueError(f"max_new_tokens={cfg.max_new_tokens} is too small (set 1 or more)")
    device = cfg.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if Path(cfg.ckpt).is_dir():  # a Hugging Face GPT-2 directory
        model, tok = load_hf_gpt2(cfg.ckpt).to(device).eval(), get_tokenizer("gpt2")
    else:
        model, tok = load_checkpoint(cfg.ckpt, map_location=device)
    ids = tok.encode(cfg.prompt)
    if not ids:
        raise ValueError('the prompt is empty (give one, e.g. prompt="The for statement")')
    ctx = model.cfg.context_length
    if len(ids) > ctx:
        raise ValueError(f"the prompt is {len(ids)} tokens, longer than the model's context of "
                         f"{ctx} (shorten it)")
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    out = generate(
        model, torch.tensor([ids], device=device), cfg.max_new_tokens,
        temperature=cfg.temperature, top_k=cfg.top_k, top_p=cfg.top_p,
        eos_token=tok.eot_token, use_cache=cfg.use_cache, generator=gen,
    )
    return tok.decode(out[0].tolist())


@hydra.main(version_base="1.3", config_path="../configs", config_name="generate")
def main(cfg: DictConfig) -> None:
    try:
        print(run(cfg))
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
