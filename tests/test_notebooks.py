"""The learners' notebooks run from top to bottom as Jupyter runs them (jupytext reads the
percent-format .py files, nbclient executes them in a kernel), on short runs, and draw what they
promise: attention pictures and loss plots."""

import os
from pathlib import Path

import jupytext
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.py"))
STEPS = {"01_attention_from_scratch": 20, "02_toggles": 10, "03_induction_phase_change": 30}


def test_every_notebook_is_covered():
    assert [p.stem for p in NOTEBOOKS] == sorted(STEPS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_the_notebook_runs_and_draws(path, tmp_path, cache_dir, monkeypatch):
    monkeypatch.setenv("NOTEBOOK_STEPS", str(STEPS[path.stem]))
    monkeypatch.setenv("NOTEBOOK_RUN_DIR", str(tmp_path / "runs"))
    # seconds, not minutes: one validation batch, no TensorBoard heatmaps (the notebooks draw
    # their own pictures), small batches, a narrow model
    monkeypatch.setenv("NOTEBOOK_OVERRIDES",
                       "trainer.limit_val_batches=1 probes.attention_map_tokens=0 "
                       "data.batch_size=4 model.emb_dim=32")
    monkeypatch.setenv("TINYGPT_CACHE", str(cache_dir))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    notebook = jupytext.read(path)
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    pictures = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(pictures) >= {"01": 8, "02": 2, "03": 2}[path.stem[:2]], len(pictures)
    assert os.listdir(tmp_path / "runs")  # it trained


def test_importing_the_library_leaves_a_notebooks_plotting_backend_alone():
    import subprocess
    import sys

    code = ("import matplotlib, tinygpt.training.train, tinygpt.lab.report.page, "
            "tinygpt.lab.demos.heads; print(matplotlib.get_backend())")
    env = os.environ | {"MPLBACKEND": "module://matplotlib_inline.backend_inline"}
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                       check=True)
    assert p.stdout.strip() == "module://matplotlib_inline.backend_inline"
