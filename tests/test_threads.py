"""How a run waits for the cores: set before torch loads, said in the run's summary, and a
choice a user can override."""

import os
import subprocess
import sys

from tinygpt.training.threads import SPIN_ENV, WAIT_ENV, apply_wait_policy, describe


def test_the_policy_goes_into_the_environment_torch_reads(monkeypatch):
    monkeypatch.delenv(WAIT_ENV, raising=False)
    monkeypatch.delenv(SPIN_ENV, raising=False)
    apply_wait_policy("passive", 3000)
    assert (os.environ[WAIT_ENV], os.environ[SPIN_ENV]) == ("PASSIVE", "3000")
    assert describe(2) == ("2 torch threads, passive wait after 3000 spins "
                           "(OMP_WAIT_POLICY=PASSIVE GOMP_SPINCOUNT=3000)")
    apply_wait_policy("active", None)
    assert SPIN_ENV not in os.environ
    assert describe(1) == "1 torch threads, active wait (OMP_WAIT_POLICY=ACTIVE)"


def test_a_run_says_and_uses_its_thread_choice(tmp_path, run_script):
    p = run_script("train.py", "experiment=smoke", "trainer.max_steps=2", "cpu.threads=1",
                   "cpu.wait=active", "cpu.spin=null", f"hydra.run.dir={tmp_path / 'r'}",
                   f"data.cache_dir={tmp_path / 'cache'}", env={"OMP_NUM_THREADS": "2"})
    assert p.returncode == 0, p.stderr[-2000:]
    assert "threads:   1 torch threads, active wait (OMP_WAIT_POLICY=ACTIVE)" in p.stdout


def test_the_entry_point_sets_the_policy_before_torch_loads():
    # torch is imported inside the task function, after apply_wait_policy: nothing before it
    code = ("import sys\nimport tinygpt.cli.train\n"
            "print('torch' in sys.modules, 'lightning' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_the_shared_cpu_benchmark_times_alone_two_at_once_and_beside_a_busy_process(
        monkeypatch):
    # its orchestration, with a stand-in for the training run (a benchmark is not a test)
    from tinygpt.lab.bench import threads as bench_threads

    started = []

    def stand_in(overrides, steps, folder):
        started.append(folder.name)
        return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.2)"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    monkeypatch.setattr(bench_threads, "start_run", stand_in)
    r = bench_threads.measure(["cpu.threads=1"], steps=2, repeats=1)
    assert started == ["run0", "run0", "run1", "run0"]  # alone; two at once; beside the busy one
    assert all(s >= 0.2 for s in r["seconds"].values())
    assert r["ratio_two_at_once"] == r["seconds"]["two_at_once"] / r["seconds"]["alone"]
    assert "| cpu.threads=1 |" in bench_threads.table([r])
