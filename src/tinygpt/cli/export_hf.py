"""Write a trained checkpoint as a Hugging Face GPT-2 directory (config.json, model.safetensors,
and its tokenizer as tokenizer.json and tokenizer_config.json, whichever it trained with).

    tinygpt-export-hf ckpt=outputs/<run>/<date>_<time> out=exported/
    # then, in Python: transformers.GPT2LMHeadModel.from_pretrained("exported/"), and
    # transformers.AutoTokenizer.from_pretrained("exported/") for its tokens
"""

from __future__ import annotations

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig

from tinygpt.cli.required import require
from tinygpt.errors import usage_errors_exit
from tinygpt.training.config import CONFIG_PATH
from tinygpt.weights.config import ExportConfig

ConfigStore.instance().store(name="export_schema", node=ExportConfig)


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="export_hf")
def main(cfg: DictConfig) -> None:
    with usage_errors_exit():
        require(cfg, "ckpt", "out", example="ckpt=outputs/<run> out=exported/")
        # torch loads once the command is known to be complete
        from tinygpt.weights.checkpoint import export_hf

        print(f"wrote {export_hf(cfg.ckpt, cfg.out, cfg.overwrite)}")


if __name__ == "__main__":
    main()
