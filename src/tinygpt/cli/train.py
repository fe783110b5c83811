"""Train a tiny GPT.   tinygpt-train [key=value ...]   (see configs/train.yaml)"""

from __future__ import annotations

import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from tinygpt.errors import USAGE_EXIT, UsageError, print_error
from tinygpt.training.hydra_callbacks import JobFailed, first_process
from tinygpt.training.quiet import quiet_dependencies
from tinygpt.training.schema import CONFIG_PATH, register_configs
from tinygpt.training.train import TrainResult, train

register_configs()


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="train")
def main(cfg: DictConfig) -> TrainResult | JobFailed:
    quiet_dependencies()
    hc = HydraConfig.get()
    sweep = hc.mode == RunMode.MULTIRUN
    try:
        result = train(cfg, hc.runtime.output_dir, sweep=sweep)
    except UsageError as e:
        if first_process():  # every rank of a multi-process run stops with the same error
            print_error(e)
        if sweep:  # the sweep goes on; SweepStatus exits non-zero once every job ran
            return JobFailed(str(e))
        sys.exit(USAGE_EXIT)
    if result.signal is not None:
        sys.exit(128 + result.signal)
    return result


if __name__ == "__main__":
    main()
