"""Continue a prompt with a trained checkpoint (or a Hugging Face GPT-2 directory).

    python scripts/generate.py ckpt=outputs/.../checkpoints/last.ckpt prompt="The for statement"
"""

from __future__ import annotations

import sys

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig

from tinygpt.errors import UsageError
from tinygpt.generate import GenerateConfig, complete

ConfigStore.instance().store(name="generate_schema", node=GenerateConfig)


@hydra.main(version_base="1.3", config_path="../configs", config_name="generate")
def main(cfg: DictConfig) -> None:
    try:
        print(complete(cfg.ckpt, cfg.prompt, cfg.max_new_tokens, cfg.temperature, cfg.top_k,
                       cfg.top_p, cfg.seed, cfg.use_cache, cfg.device))
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
