"""Sweeps through other launchers and sweepers (tinygpt.training.sweep, configs/hydra/): the jobs
side by side (hydra/launcher=parallel), a stop signal passed on to each, submitit's local
executor, an Optuna search; and their bad input."""

import json
import multiprocessing
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from tinygpt.errors import UsageError
from tinygpt.training import sweep as jobs
from tinygpt.training.precheck import parallel_note

ROOT = Path(__file__).resolve().parents[1]
SEARCH = ROOT / ".venv" / "search"  # the search extra, apart from the venv (Makefile)


def final_losses(sweep: Path) -> dict[str, tuple[float, float]]:
    """Each job's folder name: its final train and val loss (result.json)."""
    out = {}
    for r in sweep.glob("*/result.json"):
        record = json.loads(r.read_text())
        out[r.parent.name] = (record["train_loss"], record["val_loss"])
    return out


def test_a_parallel_sweep_trains_each_job_as_the_basic_launcher_does(tmp_path, smoke, train_cli,
                                                                      cache_dir):
    args = [*smoke, "trainer.max_steps=6", "trainer.val_check_interval=3", "seed=1,2",
            f"data.cache_dir={cache_dir}"]
    # the launcher's own thread count: the suite's one thread per test process left out
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    p = subprocess.run([sys.executable, str(ROOT / "scripts" / "train.py"), "-m", *args,
                        "hydra/launcher=parallel", "hydra.launcher.n_jobs=2",
                        f"hydra.sweep.dir={tmp_path / 'parallel'}"],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    threads = max(1, os.cpu_count() // 2)  # two jobs at once: jobs x threads = the cores
    assert p.stdout.count(f"threads:   {threads} torch threads") == 2, p.stdout[-2000:]
    code, err = train_cli("-m", *args, f"hydra.sweep.dir={tmp_path / 'basic'}")
    assert code == 0, err[-3000:]
    parallel, basic = final_losses(tmp_path / "parallel"), final_losses(tmp_path / "basic")
    assert sorted(parallel) == sorted(basic) and len(basic) == 2  # the same folders
    assert all(name.startswith("seed:") for name in basic)  # led by what the sweep varies
    for name, losses in basic.items():  # the same numbers, to the rounding of a thread count
        assert parallel[name] == pytest.approx(losses, rel=1e-5)
    ends = jobs.ends(tmp_path / "parallel", 0)
    assert sorted(e.job for e in ends) == sorted(basic) and not any(e.failed for e in ends)


@pytest.mark.slow
def test_a_stop_signal_stops_every_running_job_and_no_queued_one_starts(tmp_path, smoke,
                                                                        cache_dir):
    """Ctrl+C reaches the whole terminal's process group (a SIGTERM the main process alone, which
    passes it on alike: the next test): each running job stops once (not 'at once', which a
    second signal would give), saves and prints its resume command; the queued job never
    starts; the sweep exits 128 + the signal."""
    sweep = tmp_path / "sweep"
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "train.py"), "-m", *smoke, "seed=1,2,3",
         "trainer.max_steps=5000", "trainer.val_check_interval=1000", "trainer.log_every_n_steps=1",
         f"data.cache_dir={cache_dir}", "hydra/launcher=parallel", "hydra.launcher.n_jobs=2",
         f"hydra.sweep.dir={sweep}"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True, env=os.environ | {"PYTHONUNBUFFERED": "1"})
    deadline = time.time() + 120
    while len(list(sweep.glob("*/events.out.tfevents.*"))) < 2 and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(2)  # both in training
    signum = signal.SIGINT
    os.killpg(proc.pid, signum)  # Ctrl+C: the terminal's whole process group
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum, err[-3000:]
    assert err.count(f"stopped by {signum.name} after step") == 2 and "at once" not in err
    assert "Traceback" not in err
    resumes = [line.removeprefix("resume with: ") for line in err.splitlines()
               if line.startswith("resume with: ")]
    assert len(resumes) == 2
    assert f"sweep stopped by {signum.name}: 2 jobs stopped in training" in err
    assert "1 did not train: seed:3" in err
    assert sorted(p.name.split("+")[0] for p in sweep.iterdir() if p.is_dir()) == [
        "seed:1", "seed:2"]  # the queued job's folder was taken back
    assert not (sweep / jobs.STOP).exists()
    # a printed resume command goes on from its job's checkpoint
    step = int(re.search(r"stopped by SIGINT after step (\d+);", err).group(1))
    again = subprocess.run([*resumes[0].split(), f"trainer.max_steps={step + 10}"],
                           cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"trained {step + 10} steps" in again.stdout, again.stdout[-1500:]


def wait_for_a_stop(got: Path) -> None:
    """A worker's stand-in: records the signal it gets."""
    def handle(signum, frame):
        got.write_text(str(signum))
        os._exit(0)

    signal.signal(signal.SIGTERM, handle)
    got.with_suffix(".ready").write_text("")
    time.sleep(30)
    os._exit(1)


def test_the_sweeps_process_passes_a_stop_on_to_each_worker_and_marks_the_sweep(tmp_path):
    child = multiprocessing.get_context("fork").Process(target=wait_for_a_stop,
                                                        args=(tmp_path / "got",))
    child.start()
    deadline = time.time() + 20
    while not (tmp_path / "got.ready").exists() and time.time() < deadline:
        time.sleep(0.05)
    before = signal.getsignal(signal.SIGTERM)
    stops = jobs.PassStopsOn(tmp_path)
    stops.start()
    try:
        assert os.environ[jobs.MAIN_ENV] == str(os.getpid()) and not jobs.in_job_process()
        os.kill(os.getpid(), signal.SIGTERM)  # to the sweep's process alone
        child.join(20)
        assert jobs.stop_requested(tmp_path) == signal.SIGTERM  # the queued jobs see it
    finally:
        stops.stop()
    assert (tmp_path / "got").read_text() == str(int(signal.SIGTERM))
    assert signal.getsignal(signal.SIGTERM) == before and jobs.MAIN_ENV not in os.environ
    assert jobs.stop_requested(tmp_path) is None


def test_a_job_stopped_before_training_or_after_the_stop_returns_it(tmp_path, monkeypatch):
    """In a worker: a stop that came before the job began keeps it from starting; a signal
    before training stops it there; between jobs one is ignored."""
    (tmp_path / jobs.STOP).write_text("SIGTERM\n")
    assert jobs.stop_requested(tmp_path) == signal.SIGTERM
    monkeypatch.setattr(os, "setpgrp", lambda: None)  # the test's process keeps its group
    before = {s: signal.getsignal(s) for s in jobs.STOP_SIGNALS}
    try:
        with pytest.raises(jobs.StoppedAtOnce) as stop, jobs.own_stops():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)
        assert stop.value.signum == signal.SIGTERM
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN  # between jobs
        os.kill(os.getpid(), signal.SIGTERM)  # ignored: the test goes on
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)


def test_each_jobs_end_is_one_line_the_main_process_reads(tmp_path):
    jobs.record(tmp_path, jobs.JobEnd("seed:1"))
    start = jobs.size(tmp_path)  # a later sweep's lines only
    jobs.record(tmp_path, jobs.JobEnd("seed:2", failed=True, message="too short"))
    jobs.record(tmp_path, jobs.JobEnd("seed:3", signum=15, started=False))
    assert [e.job for e in jobs.ends(tmp_path, 0)] == ["seed:1", "seed:2", "seed:3"]
    later = jobs.ends(tmp_path, start)
    assert [(e.job, e.failed, e.signum) for e in later] == [("seed:2", True, None),
                                                            ("seed:3", False, 15)]


def test_a_sweep_runs_to_the_end_through_submitits_local_executor(tmp_path, run_script, smoke,
                                                                  cache_dir):
    sweep = tmp_path / "sweep"
    p = run_script("train.py", "-m", *smoke, "trainer.max_steps=4", "trainer.val_check_interval=2",
                   "seed=1,2", f"data.cache_dir={cache_dir}", "hydra/launcher=submitit_local",
                   "hydra.launcher.timeout_min=5", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    assert sorted(n.split("+")[0] for n in final_losses(sweep)) == ["seed:1", "seed:2"]
    assert all(list(d.glob("events.out.tfevents.*")) for d in sweep.glob("seed:*"))
    assert len(jobs.ends(sweep, 0)) == 2
    assert list((sweep / ".submitit").glob("*/*_log.out"))  # submitit's own logs of each job


def test_an_optuna_search_of_three_trials_reports_its_best(tmp_path, run_script, smoke,
                                                           cache_dir):
    assert (SEARCH / "hydra_plugins" / "hydra_optuna_sweeper").is_dir(), "make dev puts it there"
    sweep = tmp_path / "search"
    p = run_script("train.py", "-m", *smoke, "trainer.max_steps=6", "trainer.val_check_interval=3",
                   f"data.cache_dir={cache_dir}", "hydra/sweeper=optuna",
                   "hydra.sweeper.n_trials=3", "hydra.sweeper.sampler.seed=1",
                   "optim.lr=tag(log,interval(1e-3,1e-1))", f"hydra.sweep.dir={sweep}",
                   cwd=tmp_path, env={"PYTHONPATH": str(SEARCH)})
    assert p.returncode == 0, p.stderr[-3000:]
    bpb = {r.parent.name: json.loads(r.read_text())["val_bpb"] for r in sweep.glob("*/result.json")}
    assert len(bpb) == 3 and all(name.startswith("optim.lr:") for name in bpb)
    best = OmegaConf.load(sweep / "optimization_results.yaml")
    assert best.best_value == pytest.approx(min(bpb.values()))
    best_name = min(bpb, key=bpb.get)
    assert best_name.startswith(f"optim.lr:{best.best_params['optim.lr']}+")


@pytest.mark.parametrize("args, message", [
    (["hydra/launcher=paralel"], "error: hydra/launcher=paralel is unknown (use one of basic, "),
    (["hydra/launcher=parallel", "hydra.launcher.n_job=2"],
     "error: hydra.launcher.n_job is not a config key (add --cfg hydra"),
    (["hydra/launcher=parallel", "hydra.launcher.n_jobs=0"],
     "error: hydra.launcher.n_jobs=0: no job could run"),
    (["hydra/sweeper=optuna"], "error: hydra/sweeper=optuna needs the hydra-optuna-sweeper "
                               "package (pip install -e '.[search]')"),
])
def test_a_launcher_or_sweeper_mistake_is_one_line_and_writes_nothing(tmp_path, train_cli, smoke,
                                                                      args, message):
    code, err = train_cli("-m", *smoke, "seed=1,2", f"hydra.sweep.dir={tmp_path / 's'}",
                          f"data.cache_dir={tmp_path / 'cache'}", *args)
    assert code == 2
    assert err.strip().splitlines() == [err.strip().splitlines()[0]]
    assert err.startswith(message), err
    assert not list(tmp_path.iterdir())


def test_more_parallel_jobs_than_cores_says_what_it_will_do():
    cores = os.cpu_count()
    launcher = OmegaConf.create({"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher."
                                             "JoblibLauncher", "n_jobs": cores * 2})
    note = parallel_note(launcher)
    assert note.startswith(f"{cores * 2} jobs at once on {cores} cores: each runs one torch thread")
    launcher.n_jobs = -1
    assert parallel_note(launcher) is None
    launcher.n_jobs = -cores - 1
    with pytest.raises(UsageError):
        parallel_note(launcher)
