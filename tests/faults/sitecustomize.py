"""Fault injection for tests that need real processes, loaded only when a test puts this folder
on PYTHONPATH.

TINYGPT_RAISE_IN_LOAD=1: loading the corpus raises a plain ValueError (a bug, not bad input);
TINYGPT_RAISE_IN_LOAD=<text>: only where data.path holds that text (one job of a sweep).
TINYGPT_NAN_AT_CALL=k [TINYGPT_NAN_ON_RANK=r]: the k-th training loss is NaN (on rank r only).
TINYGPT_NO_RICH=1: rich cannot be imported (as in an install without the dev tools).
"""

import os

if os.environ.get("TINYGPT_RAISE_IN_LOAD"):
    from tinygpt.training.datamodule import TextDataModule

    _real_load, _where = TextDataModule.load, os.environ["TINYGPT_RAISE_IN_LOAD"]

    def _broken_load(self):
        if _where == "1" or _where in str(self.cfg.path):
            raise ValueError("injected bug")
        return _real_load(self)

    TextDataModule.load = _broken_load

if os.environ.get("TINYGPT_NAN_AT_CALL"):
    import torch

    from tinygpt.model.gpt import GPT

    _at, _calls, _real = int(os.environ["TINYGPT_NAN_AT_CALL"]), {"n": 0}, GPT.loss
    _rank = int(os.environ.get("TINYGPT_NAN_ON_RANK", "-1"))

    def _loss(self, idx, targets):
        out = _real(self, idx, targets)
        if not self.training or idx.device.type == "meta":  # not validation, not a FLOP count
            return out
        _calls["n"] += 1
        rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
        if _calls["n"] == _at and _rank in (-1, rank):
            import sys
            import time

            print(f"nan injected at {time.time()}", file=sys.stderr, flush=True)
            return out * torch.tensor(float("nan"))
        return out

    GPT.loss = _loss

if os.environ.get("TINYGPT_NO_RICH"):  # a user install without rich: Lightning logs its tables
    import importlib.metadata
    import sys

    sys.modules["rich"] = None  # `import rich` raises ImportError
    _real_version = importlib.metadata.version

    def _version(name):  # and its metadata is not found, which is how Lightning asks
        if name == "rich":
            raise importlib.metadata.PackageNotFoundError(name)
        return _real_version(name)

    importlib.metadata.version = _version
