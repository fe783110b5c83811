import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

# The seconds-long config (configs/experiment/smoke.yaml), quiet.
TINY = ["experiment=smoke", "trainer.enable_progress_bar=false"]


def run_script(script: str, *args: str, cwd: Path | None = None, timeout: int = 300,
               env: dict | None = None):
    """Run scripts/<script> in a subprocess, as a user would; returns the CompletedProcess."""
    env = os.environ | {"PYTHONUNBUFFERED": "1"} | (env or {})
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / script), *args],
        capture_output=True, text=True, timeout=timeout, cwd=cwd or ROOT, env=env,
    )


def scalars_by_step(run_dir: Path, tag: str) -> dict[int, float]:
    """tag's values by step over every event file of a run directory, oldest file first, so a
    resumed run's value for a step wins (EventAccumulator on the folder would purge steps)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out: dict[int, float] = {}
    for f in sorted(run_dir.glob("events.out.tfevents.*"), key=lambda p: p.stat().st_mtime):
        ea = EventAccumulator(str(f), size_guidance={"scalars": 0})
        ea.Reload()
        if tag in ea.Tags()["scalars"]:  # SIGKILL may have lost a file's buffer
            out.update({e.step: e.value for e in ea.Scalars(tag)})
    return out


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """One tiny training run through the real entry point, shared by the tests that read it."""
    tmp = tmp_path_factory.mktemp("run")
    run_dir = tmp / "run"
    p = run_script("train.py", *TINY, f"data.cache_dir={tmp / 'cache'}", f"hydra.run.dir={run_dir}")
    assert p.returncode == 0, p.stderr[-3000:]
    (run_dir / "stdout.txt").write_text(p.stdout)
    return run_dir
