"""Hydra configs: train.yaml and its groups, shipped inside the package (pkg://tinygpt.configs)."""

from pathlib import Path

CONFIG_DIR = Path(__file__).parent  # each folder in it is a config group
