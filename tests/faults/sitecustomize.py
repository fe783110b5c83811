"""Fault injection for the reliability tests, loaded only when a test puts this folder on
PYTHONPATH: TINYGPT_NAN_AT_CALL=k makes the k-th training loss NaN."""

import os

if "TINYGPT_NAN_AT_CALL" in os.environ:
    import torch

    from tinygpt.model import GPT

    _at = int(os.environ["TINYGPT_NAN_AT_CALL"])
    _real_loss = GPT.loss
    _calls = {"n": 0}

    def _loss(self, idx, targets):
        loss = _real_loss(self, idx, targets)
        if self.training:
            _calls["n"] += 1
            if _calls["n"] == _at:
                return loss * torch.tensor(float("nan"))
        return loss

    GPT.loss = _loss
