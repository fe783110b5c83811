"""Continue a prompt with a trained checkpoint, a run folder or a Hugging Face GPT-2 directory.

    tinygpt-generate ckpt=outputs/default/<date>_<time> prompt="The for statement"
"""

from __future__ import annotations

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig

from tinygpt.cli.required import require
from tinygpt.errors import usage_errors_exit
from tinygpt.training.config import CONFIG_PATH
from tinygpt.weights.config import GenerateConfig

ConfigStore.instance().store(name="generate_schema", node=GenerateConfig)


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="generate")
def main(cfg: DictConfig) -> None:
    with usage_errors_exit():
        require(cfg, "ckpt", example="ckpt=outputs/<run> prompt='The for statement'")
        # torch loads once the command is known to be complete
        from tinygpt.weights.complete import complete

        print(complete(cfg.ckpt, cfg.prompt, cfg.max_new_tokens, cfg.temperature, cfg.top_k,
                       cfg.top_p, cfg.seed, cfg.use_cache, cfg.device))


if __name__ == "__main__":
    main()
