"""The training wing: Lightning + Hydra around the plain-PyTorch core. `train(settings, run_dir)`
builds the data, the module and the Trainer from a run's checked settings (`settings.settle`),
fits, and reports; the entry point composes and checks the command line first (`precheck`)."""
