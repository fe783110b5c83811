"""scripts/report.py on a real two-run sweep, and the values it reads (causal eval, diagnostics)."""

import subprocess
from pathlib import Path

import pytest

from tinygpt.errors import UsageError
from tinygpt.lab.report.events import scalars_by_step
from tinygpt.lab.report.page import write_report

ROOT = Path(__file__).resolve().parents[1]
PNGS = ["loss.png", "bpb.png", "entropy.png", "saturation.png", "score_std.png", "grad_qk.png",
        "phenomena.png"]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, run_script, smoke):
    """causal on and off, both also scored with the mask (probes.causal_eval=true): a real multirun,
    since Hydra's sweep folders and overrides.yaml are what the report reads."""
    tmp = tmp_path_factory.mktemp("sweep")
    p = run_script("train.py", "-m", *smoke, "trainer.max_steps=30",
                   "trainer.val_check_interval=15",
                   "probes.causal_eval=true", "model.attention.causal=true,false",
                   f"data.cache_dir={tmp / 'cache'}", f"hydra.sweep.dir={tmp / 'sweep'}")
    assert p.returncode == 0, p.stderr[-3000:]
    assert f"scripts/report.py {tmp / 'sweep'}" in p.stdout  # each job says how to report
    (tmp / "sweep" / "stdout.txt").write_text(p.stdout)
    runs = {d.name.split("causal:")[1].split("+")[0]: d for d in (tmp / "sweep").iterdir()
            if d.is_dir()}
    return tmp / "sweep", runs


def test_the_printed_report_command_runs_as_printed(sweep, tmp_path):
    sweep_dir, runs = sweep
    stdout = (next(iter(runs.values())).parent / "stdout.txt").read_text()
    line = next(ln for ln in stdout.splitlines() if ln.startswith("sweep report:"))
    p = subprocess.run(line.removeprefix("sweep report:").strip(), shell=True,
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0 and (sweep_dir / "report.md").exists(), p.stderr[-2000:]


def test_causal_eval_equals_val_loss_for_a_causal_model_only(sweep):
    _, runs = sweep
    causal_val = scalars_by_step(runs["True"], "val/loss")
    assert causal_val and scalars_by_step(runs["True"], "val/loss_causal_eval") == causal_val
    open_val = scalars_by_step(runs["False"], "val/loss")
    open_eval = scalars_by_step(runs["False"], "val/loss_causal_eval")
    assert open_eval.keys() == open_val.keys()
    assert all(abs(open_eval[s] - open_val[s]) > 1e-4 for s in open_val)


def test_diagnostics_are_logged_every_n_steps_and_at_the_end(sweep):
    _, runs = sweep
    entropy = scalars_by_step(runs["True"], "watch/attention/entropy/layer_1")
    assert sorted(entropy) == [0, 10, 20, 30]  # smoke: probes.every=10, 30 steps
    uniform = scalars_by_step(runs["True"], "watch/attention/entropy_uniform")
    assert all(0 < entropy[s] <= uniform[s] + 1e-6 for s in entropy)
    for tag in ("max_weight/layer_0", "score_std/layer_0", "entropy/layer_0/head_1"):
        assert scalars_by_step(runs["True"], f"watch/attention/{tag}"), tag
    grads = scalars_by_step(runs["False"], "watch/attention/grad_wq/layer_0")
    assert sorted(grads) == [0, 10, 20] and all(g > 0 for g in grads.values())


def test_report_writes_the_table_and_plots(sweep, tmp_path):
    sweep_dir, runs = sweep
    text = write_report(sweep_dir, tmp_path).read_text()
    header = next(line for line in text.splitlines() if line.startswith("| run |"))
    columns = [c.strip() for c in header.split("|")[1:-1]]
    rows = {line.split("|")[1].strip(): line for line in text.splitlines()
            if line.startswith("| causal=")}
    assert set(rows) == {"causal=true", "causal=false"}  # labelled by what differs
    for name, run in runs.items():
        cells = [c.strip() for c in rows[f"causal={name.lower()}"].split("|")[1:-1]]
        cell = dict(zip(columns, cells, strict=True))
        val, bpb = scalars_by_step(run, "val/loss"), scalars_by_step(run, "val/bpb")
        assert cell["val loss"] == f"{val[max(val)]:.3f}"  # the last validation
        assert cell["val bpb"] == f"{bpb[max(bpb)]:.3f}"
        assert cell["d_head"] == "16"  # emb_dim 32 / 2 heads
        assert cell["val loss, causal eval"] != "–"  # probes.causal_eval=true: both runs have it
    for png in PNGS:
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
        assert f"({png})" in text
    assert "## Samples" in text and "The for statement" in text
    # the smoke probe repeats 4 tokens: uniform attention scores 0.15 there, and 2.5 times that
    # is out of reach of 30 steps
    assert "## What attention does" in text and "| causal=true | never (0/1) |" in text


def test_report_on_a_folder_without_runs_is_a_one_line_error(tmp_path, run_script):
    with pytest.raises(UsageError, match="no TensorBoard event files"):
        write_report(tmp_path, tmp_path)
    p = run_script("report.py", str(tmp_path))  # the script's own mapping of it
    assert p.returncode != 0 and p.stderr.startswith("error: no TensorBoard event files")
    assert "Traceback" not in p.stderr


def test_a_report_on_lab_ivs_runs_tables_and_draws_the_phase_change(tmp_path, train_into):
    copy_task = ["data.synthetic.kind=copies", "data.synthetic.prefix=8",
                 "data.synthetic.shortest=2", "data.synthetic.longest=6", "trainer.max_steps=20",
                 "trainer.val_check_interval=20"]
    for layers in (1, 2):
        train_into(tmp_path / "sweep" / f"layers_{layers}", *copy_task, f"model.n_layers={layers}")
    text = write_report(tmp_path / "sweep", tmp_path / "report").read_text()
    table = text.split("## The induction phase change", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| layers_")]
    assert len(rows) == 2 and "formed at step" in table and "copy loss" in table
    assert (tmp_path / "report" / "phase_change.png").read_bytes()[:4] == b"\x89PNG"
    assert "![the induction phase change](phase_change.png)" in text
