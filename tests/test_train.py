"""End-to-end: the real scripts/train.py and scripts/generate.py with a tiny config."""

import socket
import subprocess
import sys
import time
import urllib.request

import pytest
import torch
from hydra import compose, initialize_config_dir
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import TINY, run_script

CONFIGS = str(__import__("conftest").ROOT / "configs")
CONTRACT_SCALARS = [
    "train/loss", "val/loss", "val/ppl", "train/lr", "grad_norm/total", "train/tokens_per_sec",
    "grad_norm/blocks.0.attn.qkv.weight", "grad_norm/tok_emb.weight",
]


def events(run_dir):
    ea = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    ea.Reload()
    return ea


def test_training_logs_every_contract_tag_and_loss_goes_down(tiny_run):
    ea = events(tiny_run)
    tags = ea.Tags()
    for tag in CONTRACT_SCALARS:
        assert tag in tags["scalars"], tag
    assert {"attention/layer_0", "attention/layer_1"} <= set(tags["images"])
    assert any(t.startswith("samples/") for t in tags["tensors"])
    loss = [e.value for e in ea.Scalars("train/loss")]
    assert loss[-1] < loss[0] - 0.5
    grad_total = ea.Scalars("grad_norm/total")
    assert len(grad_total) == len(ea.Scalars("train/loss"))  # every logged step
    val = ea.Scalars("val/loss")
    ppl = ea.Scalars("val/ppl")
    assert ppl[-1].value == pytest.approx(torch.tensor(val[-1].value).exp().item(), rel=1e-4)
    out = (tiny_run / "stdout.txt").read_text()
    assert "tensorboard --logdir" in out and "unigram baseline" in out
    assert "precision: 32-true (set by trainer.precision)" in out  # smoke pins it; auto says why


def test_hparams_tab_holds_config_and_final_val_loss(tiny_run):
    ea = events(tiny_run)
    assert "hp/val_loss" in ea.Tags()["scalars"]
    final = ea.Scalars("hp/val_loss")[-1].value
    assert final == pytest.approx(ea.Scalars("val/loss")[-1].value, rel=1e-5)
    plugin = ea.PluginTagToContent("hparams")
    assert "_hparams_/session_start_info" in plugin
    assert b"model/attention/scale" in plugin["_hparams_/session_start_info"]


def test_checkpoint_exists_and_generate_prints_text(tiny_run):
    ckpts = sorted((tiny_run / "checkpoints").glob("*.ckpt"))
    names = [c.name for c in ckpts]
    assert "last.ckpt" in names and any(n.startswith("best") for n in names)
    p = run_script("generate.py", f"ckpt={tiny_run / 'checkpoints' / 'last.ckpt'}",
                   "prompt=The for", "max_new_tokens=20", "seed=1")
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("The for") and len(p.stdout.strip()) > len("The for") + 5


def test_resume_from_checkpoint_continues_step_count(tiny_run, tmp_path):
    run_dir = tmp_path / "resumed"
    p = run_script("train.py", *TINY, "trainer.max_steps=50", f"data.cache_dir={tmp_path}",
                   f"ckpt_path={tiny_run / 'checkpoints' / 'last.ckpt'}",
                   f"hydra.run.dir={run_dir}")
    assert p.returncode == 0, p.stderr[-2000:]
    steps = [e.step for e in events(run_dir).Scalars("train/loss")]
    assert min(steps) >= 40 and "trained 50 steps" in p.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_tensorboard_server_serves_the_run_scalars(tiny_run):
    port = free_port()
    tb = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", str(tiny_run), "--host",
         "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}/data/plugin/scalars/tags"
        body = ""
        deadline = time.time() + 60
        while time.time() < deadline and "val/loss" not in body:
            try:
                body = urllib.request.urlopen(url, timeout=5).read().decode()
            except OSError:
                time.sleep(0.5)
        for tag in ("train/loss", "val/loss", "grad_norm/total"):
            assert tag in body
    finally:
        tb.terminate()
        tb.wait(timeout=20)


def compose_train(*overrides):
    from train import register_configs

    register_configs()
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides))


@pytest.mark.parametrize(
    "override,attr,value",
    [
        ("model.attention.scale=false", "scale", False),
        ("model.attention.causal=false", "causal", False),
        ("model.attention.backend=manual", "backend", "manual"),
        ("model.attention.mask_impl=renorm", "mask_impl", "renorm"),
    ],
)
def test_each_toggle_reaches_the_attention_module(override, attr, value):
    from tinygpt.model import GPT
    from train import model_config

    extra = ["model.attention.backend=manual"] if "renorm" in override else []
    cfg = compose_train(override, *extra)
    model = GPT(model_config(cfg, vocab_size=50))
    assert all(getattr(b.attn, attr) == value for b in model.blocks)


def test_causal_false_lets_position_t_see_t_plus_1():
    from tinygpt.model import GPT
    from train import model_config

    for causal in (True, False):
        model = GPT(model_config(compose_train(f"model.attention.causal={causal}"), 50)).eval()
        x = torch.randint(0, 50, (1, 8))
        y = x.clone()
        y[0, 1] = (y[0, 1] + 1) % 50
        changed = not torch.allclose(model(x)[0, 0], model(y)[0, 0])
        assert changed == (not causal)


def test_experiment_configs_are_small_diffs():
    cfg = compose_train("experiment=no_scale")
    assert cfg.model.attention.scale is False
    assert cfg.model.n_layers == compose_train().model.n_layers
    assert compose_train("experiment=no_mask").model.attention.causal is False


def test_multirun_writes_one_named_run_per_value(tmp_path):
    sweep = tmp_path / "sweep"
    corpus = tmp_path / "my corpus" / "a.txt"  # a path in an override: still one folder per run
    corpus.parent.mkdir()
    corpus.write_text("The for statement is used to iterate over a sequence. " * 100)
    p = run_script("train.py", "-m", *TINY, "trainer.max_steps=6", "trainer.val_check_interval=3",
                   f"data.cache_dir={tmp_path}", "model.attention.scale=true,false",
                   "data=text", f"data.path='{corpus}'", f"hydra.sweep.dir={sweep}")
    assert p.returncode == 0, p.stderr[-2000:]
    runs = sorted(d.name for d in sweep.iterdir() if list(d.glob("events.out.tfevents.*")))
    assert len(runs) == 2 and all("my corpus_a.txt" in r for r in runs)
    assert "model.attention.scale=False" in runs[0] and "model.attention.scale=True" in runs[1]
    assert "cache_dir" not in runs[0]  # plumbing keys stay out of the names


def test_a_failing_job_does_not_stop_the_sweep(tmp_path):
    sweep = tmp_path / "sweep"
    p = run_script("train.py", "-m", *TINY, "trainer.max_steps=4", "trainer.val_check_interval=2",
                   f"data.cache_dir={tmp_path}", "model.n_heads=3,2", f"hydra.sweep.dir={sweep}")
    assert p.returncode == 2
    lines = [line for line in p.stderr.splitlines() if line.startswith("error:")]
    assert "not divisible by n_heads=3" in lines[0]  # the job's own line, as it ended
    assert lines[-1].startswith("error: 1 of 2 jobs failed: experiment=smoke,model.n_heads=3,")
    assert "Traceback" not in p.stderr
    assert [d.name for d in sweep.iterdir() if list(d.glob("events.out.tfevents.*"))] == [
        "experiment=smoke,model.n_heads=2,trainer.max_steps=4,trainer.val_check_interval=2"]


@pytest.mark.parametrize(
    "override,needle",
    [("model.attenton.scale=false", "attenton"), ("model.n_layers=four", "n_layers")],
)
def test_misspelt_key_or_wrong_type_fails_fast(override, needle, tmp_path):
    t = time.time()
    p = run_script("train.py", override, f"hydra.run.dir={tmp_path / 'r'}")
    assert p.returncode != 0
    assert needle in p.stderr
    assert not (tmp_path / "r").exists()  # failed before any run directory was made
    assert time.time() - t < 60



def sweep_jobs(experiment: str) -> list:
    """The jobs Hydra's basic sweeper would launch for an experiment, each composed (no run)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from train import register_configs

    register_configs()
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"experiment={experiment}"],
                      return_hydra_config=True)
        assert cfg.hydra.mode.name == "MULTIRUN"  # the experiment is a sweep without -m
        params = [f"{k}={v}" for k, v in cfg.hydra.sweeper.params.items()]
        (batch,) = BasicSweeper.split_arguments(OverridesParser.create().parse_overrides(params),
                                                None)
        return [compose(config_name="train", overrides=[f"experiment={experiment}", *job])
                for job in batch]


def test_attention_ablation_composes_to_the_2x2_grid():
    jobs = sweep_jobs("attention_ablation")
    grid = sorted((j.model.attention.scale, j.model.attention.causal) for j in jobs)
    assert grid == [(False, False), (False, True), (True, False), (True, True)]
    assert all(j.data.tokenizer == "char" and j.trainer.max_steps == 600 for j in jobs)


def test_head_dim_sweep_repeats_scale_on_and_off_per_head_dimension():
    jobs = sweep_jobs("head_dim_sweep")
    grid = sorted((j.model.emb_dim // j.model.n_heads, j.model.attention.scale) for j in jobs)
    assert grid == [(d, s) for d in (16, 64, 256) for s in (False, True)]


def test_sweep_folder_names_keep_paths_in_values_flat():
    from tinygpt.config import folder_name

    name = folder_name("data.path=../corpus/a.txt,model.n_heads=4")
    assert name == "data.path=.._corpus_a.txt,model.n_heads=4" and "/" not in name
