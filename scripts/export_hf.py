"""Write a trained checkpoint as a Hugging Face GPT-2 directory (config.json, model.safetensors).

    python scripts/export_hf.py ckpt=outputs/.../checkpoints/last.ckpt out=exported/
    # then, in Python: transformers.GPT2LMHeadModel.from_pretrained("exported/")
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from tinygpt.checkpoint import load_checkpoint
from tinygpt.config import register_configs
from tinygpt.hf import save_hf_gpt2

register_configs()


def export(cfg: DictConfig) -> Path:
    model, tok = load_checkpoint(cfg.ckpt)
    if tok.name != "gpt2":
        raise ValueError(f"the checkpoint uses the {tok.name} tokenizer; Hugging Face GPT-2 "
                         "needs GPT-2's (train with data.tokenizer=gpt2)")
    out = Path(cfg.out)
    if out.exists() and any(out.iterdir()) and not cfg.overwrite:
        raise ValueError(f"{out} is not empty (choose another out=, or set overwrite=true)")
    save_hf_gpt2(model, out)
    return out


@hydra.main(version_base="1.3", config_path="../configs", config_name="export_hf")
def main(cfg: DictConfig) -> None:
    try:
        print(f"wrote {export(cfg)}")
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
