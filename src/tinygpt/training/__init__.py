"""The training wing: Lightning + Hydra around the plain-PyTorch core. `train(cfg)` builds the
data, the module and the Trainer from a composed config, fits, and reports."""
