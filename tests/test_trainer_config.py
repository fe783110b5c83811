"""The trainer node written out by hand is Lightning's Trainer: every argument a config can set,
with Lightning's own default, and nothing Lightning does not take."""

import inspect
from dataclasses import fields

import lightning as L

from tinygpt.training.config import SUPPLIED, TrainerConfig


def test_the_trainer_node_has_every_trainer_argument_with_lightnings_default():
    lightning = {p.name: p.default for p in inspect.signature(L.Trainer.__init__).parameters
                 .values() if p.name != "self" and p.name not in SUPPLIED}
    ours = {f.name: f.default for f in fields(TrainerConfig)}
    assert ours == lightning


def test_the_arguments_the_run_supplies_are_trainer_arguments():
    assert set(SUPPLIED) <= set(inspect.signature(L.Trainer.__init__).parameters)
