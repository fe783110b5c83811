"""Hydra configs: train.yaml and its groups, shipped inside the package (pkg://tinygpt.configs)."""
