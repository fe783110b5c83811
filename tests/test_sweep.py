"""Sweeps through other launchers and sweepers (tinygpt.training.sweep, configs/hydra/): the jobs
side by side (hydra/launcher=parallel), a stop signal passed on to each, submitit's local
executor, an Optuna search; and their bad input."""

import json
import multiprocessing
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from conftest import ROOT
from conftest import SEARCH_EXTRA as SEARCH
from tinygpt.errors import UsageError
from tinygpt.training import sweep as jobs
from tinygpt.training.datamodule import TextDataModule
from tinygpt.training.precheck import parallel_note


def final_losses(sweep: Path) -> dict[str, tuple[float, float]]:
    """Each job's folder name: its final train and val loss (result.json)."""
    out = {}
    for r in sweep.glob("*/result.json"):
        record = json.loads(r.read_text())
        out[r.parent.name] = (record["train_loss"], record["val_loss"])
    return out


def test_a_sweep_goes_on_past_a_refused_job_and_a_crashed_one_in_either_launcher(
        tmp_path, smoke, train_cli, monkeypatch):
    """The same three jobs (one trains, one is refused once tokenised, one crashes: a bug,
    injected) in this process (the basic launcher) and side by side in workers (parallel): each
    sweep goes on past both and ends 1; the job that trains gives the same numbers in both."""
    texts = tmp_path / "my corpus"  # a path in an override: still one folder per run
    texts.mkdir()
    (texts / "a.txt").write_text("The for statement is used to iterate over a sequence. " * 100)
    (texts / "short.txt").write_text("too short")  # refused inside its job, once tokenised
    (texts / "crash.txt").write_text("The while statement. " * 200)
    paths = ",".join(f"'{texts / n}'" for n in ("a.txt", "short.txt", "crash.txt"))
    args = [*smoke, "trainer.max_steps=6", "trainer.val_check_interval=3", "data=text",
            f"data.path={paths}", f"data.cache_dir={tmp_path / 'cache'}"]
    # the workers' fault and the launcher's own thread count (the suite's one thread left out)
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"} | {
        "TINYGPT_RAISE_IN_LOAD": "crash.txt", "PYTHONPATH": str(ROOT / "tests" / "faults")}
    p = subprocess.run([sys.executable, str(ROOT / "scripts" / "train.py"), "-m", *args,
                        "hydra/launcher=parallel", "hydra.launcher.n_jobs=2",
                        f"hydra.sweep.dir={tmp_path / 'parallel'}"],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
    threads = max(1, os.cpu_count() // 2)  # two jobs at once: jobs x threads = the cores
    assert p.stdout.count(f"threads:   {threads} torch threads") == 1, p.stdout[-2000:]

    real_load = TextDataModule.load

    def broken_load(self):
        if "crash.txt" in str(self.cfg.path):
            raise ValueError("injected bug")
        return real_load(self)

    monkeypatch.setattr(TextDataModule, "load", broken_load)
    basic = train_cli("-m", *args, f"hydra.sweep.dir={tmp_path / 'basic'}")
    for launcher, (code, err) in [("parallel", (p.returncode, p.stderr)), ("basic", basic)]:
        assert code == 1, (launcher, err[-3000:])  # a job crashed: not only bad input
        lines = [line for line in err.splitlines() if line.startswith("error:")]
        assert "too short" in lines[0]  # the refused job's own line, as it ended
        assert "ValueError: injected bug" in err  # the crash's traceback, and the sweep went on
        assert lines[-1].startswith("error: 2 of 3 jobs failed: data.path:")
        assert "(crashed: ValueError: injected bug)" in lines[-1]
        sweep = tmp_path / launcher
        folders = [d.name for d in sweep.iterdir() if d.is_dir()]
        trained = [n for n in folders if list((sweep / n).glob("events.out.tfevents.*"))]
        assert len(trained) == 1 and "my_corpus_a.txt" in trained[0] and "/" not in trained[0]
        assert "cache_dir" not in trained[0]  # plumbing keys stay out of the names
        assert not [n for n in folders if "short.txt" in n]  # the refused job's folder went
        assert [n for n in folders if "crash.txt" in n]  # the crashed one's stays, for its trace
        assert sorted(e.failed for e in jobs.ends(sweep, 0)) == [False, True, True]
    parallel, basic = final_losses(tmp_path / "parallel"), final_losses(tmp_path / "basic")
    assert sorted(parallel) == sorted(basic) and len(basic) == 1  # the same folder
    for name, losses in basic.items():  # the same numbers, to the rounding of a thread count
        assert parallel[name] == pytest.approx(losses, rel=1e-5)


@pytest.mark.slow
def test_a_stop_signal_stops_every_running_job_and_no_queued_one_starts(tmp_path, smoke,
                                                                        cache_dir, train_cli,
                                                                        monkeypatch):
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
    # a printed resume command goes on from its job's checkpoint (its arguments, in this process)
    step = int(re.search(r"stopped by SIGINT after step (\d+);", err).group(1))
    command = shlex.split(resumes[0])
    assert command[:2] == [sys.executable, str(ROOT / "scripts" / "train.py")]
    monkeypatch.chdir(tmp_path)
    code, again = train_cli(*command[2:], f"trainer.max_steps={step + 10}")
    assert code == 0, again[-3000:]
    run = Path(next(a for a in command if a.startswith("hydra.run.dir=")).split("=", 1)[1])
    assert json.loads((run / "result.json").read_text())["steps"] == step + 10


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


def test_an_optuna_search_of_three_trials_through_submitit_reports_its_best(tmp_path, run_script,
                                                                            smoke, cache_dir):
    """Both plugins in one sweep, as a search on Slurm runs: Optuna asks for three trials at once,
    submitit's local executor runs each in a process of its own."""
    assert (SEARCH / "hydra_plugins" / "hydra_optuna_sweeper").is_dir(), "make dev puts it there"
    sweep = tmp_path / "search"
    p = run_script("train.py", "-m", *smoke, "trainer.max_steps=4", "trainer.val_check_interval=2",
                   f"data.cache_dir={cache_dir}", "hydra/sweeper=optuna",
                   "hydra.sweeper.n_trials=3", "hydra.sweeper.n_jobs=3",
                   "hydra.sweeper.sampler.seed=1", "optim.lr=tag(log,interval(1e-3,1e-1))",
                   "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=5",
                   f"hydra.sweep.dir={sweep}", cwd=tmp_path, env={"PYTHONPATH": str(SEARCH)})
    assert p.returncode == 0, p.stderr[-3000:]
    bpb = {r.parent.name: json.loads(r.read_text())["val_bpb"] for r in sweep.glob("*/result.json")}
    assert len(bpb) == 3 and all(name.startswith("optim.lr:") for name in bpb)
    assert all(list((sweep / name).glob("events.out.tfevents.*")) for name in bpb)
    assert len(jobs.ends(sweep, 0)) == 3
    assert len(list((sweep / ".submitit").glob("*/*_log.out"))) == 3  # submitit's log of each
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
