"""Write a trained checkpoint as a Hugging Face GPT-2 directory (config.json, model.safetensors).

    python scripts/export_hf.py ckpt=outputs/.../checkpoints/last.ckpt out=exported/
    # then, in Python: transformers.GPT2LMHeadModel.from_pretrained("exported/")
"""

from __future__ import annotations

import sys

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig

from tinygpt.errors import UsageError
from tinygpt.hf import ExportConfig, export_checkpoint

ConfigStore.instance().store(name="export_schema", node=ExportConfig)


@hydra.main(version_base="1.3", config_path="../configs", config_name="export_hf")
def main(cfg: DictConfig) -> None:
    try:
        print(f"wrote {export_checkpoint(cfg.ckpt, cfg.out, cfg.overwrite)}")
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
