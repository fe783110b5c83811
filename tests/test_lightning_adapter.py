"""The Lightning behaviour `tinygpt.training.lightning_adapter` relies on, checked against the
installed Lightning: if a release changes it, this fails before a run misbehaves."""

import lightning as L

from tinygpt.lab.report.events import scalars_by_step
from tinygpt.training.lightning_adapter import logger_writes_this_step, stop_without_validation


class StopAt(L.Callback):
    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step == self.step:
            stop_without_validation(trainer)


def test_stop_without_validation_ends_training_after_the_step_and_skips_validation(train_run):
    # smoke validates first after step 20; stopping there would validate unless the stop skips it
    result, _ = train_run("save_every_n_steps=0", callbacks=[StopAt(20)])
    assert result.steps == 20
    assert not scalars_by_step(result.run_dir, "val/loss")
    assert max(scalars_by_step(result.run_dir, "train/loss")) < 20


def test_a_plain_should_stop_validates_first(train_run):
    # the control: Lightning's own stop at the same step does validate, so the test above can fail
    class PlainStop(StopAt):
        def on_train_batch_end(self, trainer, *args) -> None:
            if trainer.global_step == self.step:
                trainer.should_stop = True

    result, _ = train_run("save_every_n_steps=0", callbacks=[PlainStop(20)])
    assert result.steps == 20 and scalars_by_step(result.run_dir, "val/loss")


def test_the_precisions_are_lightnings_own():
    import typing

    from lightning.fabric.plugins.precision.precision import _PRECISION_INPUT

    from tinygpt.training.lightning_adapter import PRECISIONS

    def literals(hint) -> set:
        args = typing.get_args(hint)
        return {a for arg in args for a in (literals(arg) if typing.get_args(arg) else {arg})}

    assert set(PRECISIONS) == literals(_PRECISION_INPUT)


def test_the_steps_said_to_be_written_are_the_ones_the_logger_writes(train_run):
    class Probe(L.Callback):  # logs every step; Lightning keeps what it writes
        def __init__(self):
            self.said: list[int] = []

        def on_train_batch_start(self, trainer, pl_module, *args) -> None:
            if logger_writes_this_step(trainer):
                self.said.append(trainer.global_step)

        def on_train_batch_end(self, trainer, pl_module, *args) -> None:
            pl_module.log("probe", float(trainer.global_step))

    probe = Probe()
    result, _ = train_run("trainer.log_every_n_steps=3", "trainer.max_steps=14",
                          "trainer.val_check_interval=14", callbacks=[probe])
    written = scalars_by_step(result.run_dir, "probe")
    assert probe.said == [2, 5, 8, 11]  # the 3rd, 6th, ... step, counted from 0
    # and the last step, which Lightning writes as training ends (logs_this_step adds it)
    assert sorted(written) == [*probe.said, 13]
    # the module logs its train metrics on exactly those steps (GPTLightningModule.logs_this_step)
    assert sorted(scalars_by_step(result.run_dir, "train/loss")) == sorted(written)
