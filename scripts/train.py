"""Train a tiny GPT.   python scripts/train.py [key=value ...]   (see configs/train.yaml)"""

from __future__ import annotations

import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from tinygpt.config import register_configs
from tinygpt.errors import UsageError
from tinygpt.hydra_callbacks import JobFailed, first_process
from tinygpt.train import TrainResult, train

register_configs()


@hydra.main(version_base="1.3", config_path="../configs", config_name="train")
def main(cfg: DictConfig) -> TrainResult | JobFailed:
    hc = HydraConfig.get()
    sweep = hc.mode == RunMode.MULTIRUN
    try:
        result = train(cfg, hc.runtime.output_dir, sweep=sweep)
    except UsageError as e:
        if first_process():  # every rank of a multi-process run stops with the same error
            print(f"error: {e}", file=sys.stderr)
        if sweep:  # the sweep goes on; SweepStatus exits non-zero once every job ran
            return JobFailed(str(e))
        sys.exit(2)
    if result.signal is not None:
        sys.exit(128 + result.signal)
    return result


if __name__ == "__main__":
    main()
