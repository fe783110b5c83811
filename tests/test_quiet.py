"""A quiet start: a run prints the project's lines, not its dependencies' tips and deprecations,
and the project's own warnings still reach the user."""

import re
import warnings

from tinygpt.training.quiet import quiet_dependencies

FOREIGN = re.compile(r"warn|tip\b|deprecat", re.IGNORECASE)


def test_a_run_prints_no_foreign_warning_or_tip(tmp_path, run_script, cache_dir):
    # the smoke run, with what the default run adds (Lightning's model summary, and its precision:
    # bf16 autocast where bf16 is fast; where it is emulated, bf16 took this run 15 s before its
    # first step) and without what it does not (the int8 cost)
    p = run_script("train.py", "experiment=smoke", "trainer.max_steps=3",
                   "trainer.enable_model_summary=true", "trainer.precision=auto",
                   "probes.int8_windows=0", "trainer.limit_val_batches=1",
                   "sample.max_new_tokens=4",
                   f"data.cache_dir={cache_dir}", f"hydra.run.dir={tmp_path / 'run'}")
    assert p.returncode == 0, p.stderr[-3000:]
    foreign = [ln for ln in p.stderr.splitlines() if FOREIGN.search(ln) and "tinygpt" not in ln]
    assert not foreign, foreign
    assert "trained 3 steps" in p.stdout


def test_the_projects_own_warnings_stay():
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        quiet_dependencies()  # inside catch_warnings: the filters end with the block
        for module in ("lightning.pytorch.utilities._pytree", "tinygpt.data.tokenizer"):
            warnings.warn_explicit("old API", FutureWarning, "x.py", 1, module=module)
        warnings.warn_explicit("Precision bf16-mixed is not supported by the model summary.",
                               UserWarning, "x.py", 1, module="lightning.pytorch.utilities")
    assert [(w.category, str(w.message)) for w in seen] == [(FutureWarning, "old API")]
