"""tinygpt.training.train: a whole run in-process (train(cfg) on the smoke config), and the config
schema; scripts/train.py itself only where its process is what is tested (sweeps, exit codes)."""

import importlib.util
import json
import math
import re
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
import torch
from lightning.pytorch.callbacks import Callback
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import ROOT
from tinygpt.lab.report.events import scalars_by_step
from tinygpt.model.gpt import GPT
from tinygpt.training.config import compose_train
from tinygpt.training.settings import configure

CONTRACT_SCALARS = [
    "train/loss", "val/loss", "val/ppl", "train/lr", "train/grad_norm",
    "train/tokens_per_sec", "train/mfu", "watch/grad_norm/blocks.0.attn.qkv.weight",
    "watch/grad_norm/tok_emb.weight",
]


def events(run_dir):
    ea = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    ea.Reload()
    return ea


def test_training_logs_every_contract_tag_and_loss_goes_down(smoke_run):
    ea = events(smoke_run)
    tags = ea.Tags()
    for tag in CONTRACT_SCALARS:
        assert tag in tags["scalars"], tag
    assert {"watch/attention/layer_0", "watch/attention/layer_1"} <= set(tags["images"])
    assert any(t.startswith("samples/") for t in tags["tensors"])
    loss = [e.value for e in ea.Scalars("train/loss")]
    assert loss[-1] < loss[0] - 0.5
    grad_total = ea.Scalars("train/grad_norm")
    assert len(grad_total) == len(ea.Scalars("train/loss"))  # every logged step
    val = ea.Scalars("val/loss")
    ppl = ea.Scalars("val/ppl")
    assert ppl[-1].value == pytest.approx(torch.tensor(val[-1].value).exp().item(), rel=1e-4)
    assert [e.step for e in val][-1] == 39  # the final weights are validated (step 40's end)
    assert all(0 < e.value <= 1 for e in ea.Scalars("train/mfu"))
    out = (smoke_run / "stdout.txt").read_text()
    assert "tensorboard --logdir" in out and "unigram baseline" in out
    assert "precision: 32-true (set by trainer.precision)" in out  # smoke pins it; auto says why


def test_a_run_logs_what_attention_does_and_its_int8_cost(smoke_run):
    from tinygpt import metrics as m

    scalars = set(events(smoke_run).Tags()["scalars"])
    for tag in (m.INDUCTION_MAX, m.PREVIOUS_MAX, m.IN_CONTEXT_DROP, m.FIRST_TOKEN_MASS_MAX,
                m.SINK_RATE, m.OUTLIER_RATIO_MAX, m.INT8_DELTA_BPB,
                m.probe_tag(m.INDUCTION, "score", 1, 1),
                m.probe_tag(m.SINKS, "first_token_mass", 0, 0),
                m.probe_tag(m.OUTLIERS, "kurtosis", 1)):
        assert tag in scalars, tag
    steps = [e.step for e in events(smoke_run).Scalars(m.INDUCTION_MAX)]
    assert steps == [0, 10, 20, 30, 40]  # every diagnostics_every steps, and the final weights


def test_the_int8_cost_is_measured_only_where_asked(train_run):
    # the lab's experiments (and the smoke run) ask for it; a plain run does not pay for it
    from tinygpt import metrics as m

    result, _ = train_run("probes.int8_windows=0", "trainer.max_steps=10",
                          "trainer.val_check_interval=10")
    scalars = set(events(result.run_dir).Tags()["scalars"])
    assert m.INDUCTION_MAX in scalars and m.INT8_DELTA_BPB not in scalars
    assert compose_train().probes.int8_windows == 0
    assert compose_train("experiment=repeated_segments").probes.int8_windows == 256
    assert compose_train("experiment=copy_task", "variant=softmax").probes.int8_windows == 256


def test_hparams_tab_holds_config_and_final_val_loss(smoke_run):
    ea = events(smoke_run)
    assert "val/loss" in ea.Tags()["scalars"]
    plugin = ea.PluginTagToContent("hparams")
    # its metric columns are the loss series themselves, not copies under other names
    experiment = plugin["_hparams_/experiment"]
    assert all(tag in experiment for tag in (b"val/bpb", b"val/loss", b"train/loss"))
    assert not any(t.startswith("hp/") for t in ea.Tags()["scalars"])
    assert "_hparams_/session_start_info" in plugin
    info = plugin["_hparams_/session_start_info"]
    assert b"experiment" in info and b"smoke" in info  # what the run's overrides chose
    assert b"model.attention.scale" not in info  # what no run here changed stays out
    assert b"data.cache_dir" not in info  # plumbing stays out
    assert b"trainer.inference_mode" not in info  # Lightning's defaults are not repeated


def test_one_event_file_per_run(smoke_run):
    assert len(list(smoke_run.glob("events.out.tfevents.*"))) == 1


def test_checkpoint_exists_and_generate_prints_text(smoke_run, run_script):
    names = [c.name for c in (smoke_run / "checkpoints").glob("*.ckpt")]
    assert "last.ckpt" in names and any(n.startswith("best") for n in names)
    p = run_script("generate.py", f"ckpt={smoke_run / 'checkpoints' / 'last.ckpt'}",
                   "prompt=The for", "max_new_tokens=20", "seed=1")
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("The for") and len(p.stdout.strip()) > len("The for") + 5


def test_resume_from_checkpoint_continues_step_count(smoke_run, train_run):
    result, printed = train_run("trainer.max_steps=50",
                                f"ckpt_path={smoke_run / 'checkpoints' / 'last.ckpt'}")
    steps = scalars_by_step(result.run_dir, "train/loss")
    assert min(steps) >= 40 and result.steps == 50 and "trained 50 steps" in printed


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def tensorboard(smoke_run):
    """A TensorBoard server on the folder above the smoke run, as the README says to start it;
    yields a function that GETs (or POSTs JSON to) a path of its HTTP API."""
    port = free_port()
    tb = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", str(smoke_run.parent), "--host",
         "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )

    def api(path: str, body: dict | None = None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data,
                                     headers={"Content-Type": "application/json"})
        return json.loads(urllib.request.urlopen(req, timeout=10).read().decode())

    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if "val/loss" in json.dumps(api("/data/plugin/scalars/tags")):
                break
        except OSError:  # not listening yet
            pass
        time.sleep(0.5)  # also while it is still loading the run: no busy loop
    yield api
    tb.terminate()
    tb.wait(timeout=20)
    tb.wait(timeout=20)


def test_tensorboard_serves_the_run_by_its_name(tensorboard, smoke_run):
    assert tensorboard("/data/runs") == [smoke_run.name]  # its folder's name, not "."
    tags = tensorboard("/data/plugin/scalars/tags")[smoke_run.name]
    for tag in ("train/loss", "val/loss", "val/bpb", "train/grad_norm", "train/mfu"):
        assert tag in tags


def test_tensorboard_time_series_opens_on_the_losses(tensorboard, smoke_run):
    # The Time Series tab (TensorBoard's default) groups cards by the tag's first part, orders
    # the groups by name (ASCII: uppercase first) and opens the first two (seen in a headless
    # browser, README): those must be the losses.
    scalars = tensorboard("/data/plugin/scalars/tags")[smoke_run.name]
    images = tensorboard("/data/plugin/images/tags")[smoke_run.name]
    groups = sorted({tag.split("/")[0] for tag in [*scalars, *images]})
    assert groups[:2] == ["train", "val"], groups
    assert [t for t in scalars if t.startswith("val/")] and "train/loss" in scalars


def test_tensorboard_custom_scalars_open_on_the_losses(tensorboard, smoke_run):
    layout = tensorboard("/data/plugin/custom_scalars/layout")
    categories = [c["title"] for c in layout["category"]]
    assert categories[0] == "1. losses" and categories[-1] == "4. what attention does"
    losses = {c["title"]: c["multiline"]["tag"] for c in layout["category"][0]["chart"]}
    assert losses["bits per byte (comparable across tokenizers)"][:2] == ["^train/bpb$",
                                                                           "^val/bpb$"]
    charts = {c["title"]: [ch["title"] for ch in c["chart"]] for c in layout["category"]}
    # one chart per quantity (a line per layer or head), not a card per head
    attention = charts["3. attention"]
    assert len(attention) == 6 + 2 and "entropy per head, layer 1" in attention
    assert len(charts["4. what attention does"]) == 8
    assert len(losses) == 2  # learned positions: no empty chart for a 2x context they cannot reach


def test_the_layout_shows_the_longer_context_only_where_positions_allow_it():
    from tinygpt.training.tensorboard_layout import custom_scalars_layout

    def loss_charts(**kw):
        return list(custom_scalars_layout(2, **kw)["1. losses"])

    assert not any("twice" in c for c in loss_charts())
    assert any("twice" in c for c in loss_charts(longer_context=True))


def test_the_layout_shows_the_induction_phase_change_for_lab_ivs_windows_only():
    from tinygpt.training.tensorboard_layout import custom_scalars_layout

    assert "5. the induction phase change" not in custom_scalars_layout(2)
    panel = custom_scalars_layout(2, copies=True)["5. the induction phase change"]
    assert len(panel) == 3 and any("per layer" in title for title in panel)


def test_tensorboard_hparams_lead_with_what_defines_a_run(tensorboard):
    exp = tensorboard("/data/plugin/hparams/experiment", {"experimentName": ""})
    hparams = [h["name"] for h in exp["hparamInfos"]]
    metrics = [m["name"]["tag"] for m in exp["metricInfos"]]
    assert {"val/bpb", "val/loss", "train/loss"} <= set(metrics)
    assert set(hparams) == {"experiment", "precision"}  # its overrides: experiment=smoke
    assert "data.cache_dir" not in hparams  # plumbing stays out


def model_of(*overrides) -> GPT:
    node = OmegaConf.to_object(compose_train(*overrides).model)
    return GPT(node.gpt_config(vocab_size=50))


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
    extra = ["model.attention.backend=manual"] if "renorm" in override else []
    model = model_of(override, *extra)
    assert all(getattr(b.attn.switches, attr) == value for b in model.blocks)


def test_causal_false_lets_position_t_see_t_plus_1():
    for causal in (True, False):
        model = model_of(f"model.attention.causal={causal}").eval()
        x = torch.randint(0, 50, (1, 8))
        y = x.clone()
        y[0, 1] = (y[0, 1] + 1) % 50
        changed = not torch.allclose(model(x)[0, 0], model(y)[0, 0])
        assert changed == (not causal)


def test_a_mistake_in_one_jobs_values_stops_the_sweep_before_any_job(tmp_path, run_script,
                                                                     smoke):
    sweep = tmp_path / "sweep"
    p = run_script("train.py", "-m", *smoke, "model.n_heads=2,3", f"hydra.sweep.dir={sweep}",
                   f"data.cache_dir={tmp_path / 'cache'}", cwd=tmp_path)
    assert p.returncode == 2, p.stderr[-2000:]
    errors = [line for line in p.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in p.stderr
    assert errors[0].startswith("error: job 2 of 2 (") and "model.n_heads=3" in errors[0]
    assert "not divisible by n_heads=3" in errors[0]
    assert not sweep.exists() and not (tmp_path / "cache").exists()  # nothing was written


def test_an_unknown_choice_fails_in_the_schema_listing_the_valid_ones(tmp_path, run_script):
    t = time.time()
    p = run_script("train.py", "model.attention.mask_impl=renrom", f"hydra.run.dir={tmp_path}/r")
    assert p.returncode != 0
    assert "Invalid value 'renrom', expected one of [neg_inf, renorm]" in p.stderr
    assert not (tmp_path / "r").exists()  # failed before any run directory was made
    assert time.time() - t < 60


def test_every_trainer_argument_can_be_set(train_run):
    # not in any YAML: the schema is Lightning's own signature
    cfg = compose_train("trainer.max_time=00:00:01:00", "trainer.detect_anomaly=true",
                        "trainer.limit_train_batches=0.5", "trainer.benchmark=false")
    assert cfg.trainer.max_time == "00:00:01:00" and cfg.trainer.detect_anomaly is True
    result, _ = train_run("trainer.max_time=00:00:01:00", "trainer.max_steps=5")
    assert result.steps == 5


class Spy(Callback):
    """Records what the Trainer was configured with and whether anomaly detection was on."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.anomaly = torch.is_anomaly_enabled()
        self.fast_dev_run = trainer.fast_dev_run
        self.overfit_batches = trainer.overfit_batches


def test_debug_fdr_runs_one_batch_and_saves_nothing(train_run):
    spy = Spy()
    result, printed = train_run("debug=fdr", callbacks=[spy])
    assert spy.fast_dev_run and result.steps == 1 and result.last_checkpoint is None
    assert not (result.run_dir / "checkpoints").exists()


def test_debug_fdr_measures_nothing_it_throws_away_and_prints_no_missing_path(train_run,
                                                                               monkeypatch):
    timed = []
    monkeypatch.setattr("tinygpt.training.callbacks.generation_speed",
                        lambda model: timed.append(model) or 1.0)
    result, printed = train_run("debug=fdr")
    assert not timed  # the end-of-run generation timing is skipped
    assert "checkpoints:" not in printed and "generate:" not in printed
    run, _ = train_run("trainer.max_steps=10", run_dir=result.run_dir.parent / "full")
    assert timed  # the control: a real run measures it


def test_debug_overfit_drives_the_loss_of_one_batch_down(train_run):
    spy = Spy()
    result, _ = train_run("debug=overfit", "trainer.max_steps=60", callbacks=[spy])
    assert spy.overfit_batches == 1
    losses = scalars_by_step(result.run_dir, "train/loss")
    assert losses[max(losses)] < 0.5 * losses[min(losses)]


def test_debug_profiler_prints_its_report(train_run, caplog):
    caplog.set_level("INFO")
    result, _ = train_run("debug=profiler", "trainer.max_steps=5")
    assert result.steps == 5
    assert "FIT Profiler Report" in caplog.text and "run_training_batch" in caplog.text


def test_debug_anomaly_turns_on_autograd_anomaly_detection(train_run):
    spy = Spy()
    train_run("debug=anomaly", "trainer.max_steps=3", callbacks=[spy])
    assert spy.anomaly


def test_a_bug_shows_its_traceback_not_an_error_line(tmp_path, train_cli, smoke, monkeypatch):
    # a ValueError from inside the library is a bug, not bad input: it must not look like one
    # (it leaves the entry point as it is, and Python prints its traceback and exits 1)
    from tinygpt.training.datamodule import TextDataModule

    def broken(self):
        raise ValueError("injected bug")

    monkeypatch.setattr(TextDataModule, "load", broken)
    with pytest.raises(ValueError, match="injected bug"):
        train_cli(*smoke, f"data.cache_dir={tmp_path}", f"hydra.run.dir={tmp_path / 'r'}")


def test_a_plain_log_line_every_n_steps_when_stdout_is_not_a_terminal(train_run):
    _, printed = train_run("trainer.enable_progress_bar=true")
    lines = [line for line in printed.splitlines() if line.startswith("step ")]
    assert lines[0].startswith("step 25/40  train loss ") and "tokens/s  eta " in lines[0]
    assert lines[-1].startswith("step 40/40")
    assert "validation at step 20: val/loss " in printed


def test_a_terminal_shows_steps_not_epochs(train_run, monkeypatch):
    monkeypatch.setattr("tinygpt.training.progress.on_terminal", lambda: True)
    _, printed = train_run("trainer.enable_progress_bar=true")
    bar = printed.replace("\r", "\n")  # tqdm redraws its line with carriage returns
    assert "step: 100%" in bar and "40/40" in bar and "Epoch" not in bar


def test_model_summary_counts_real_flops(train_run, capsys, caplog):
    caplog.set_level("INFO")  # the plain summary is a log record; rich's prints to stdout
    _, printed = train_run("trainer.enable_model_summary=true")
    out = printed + capsys.readouterr().out + caplog.text
    # rich's summary says "Total FLOPs: 1.8 M", the plain one "1.8 M  Total Flops"
    found = re.search(r"Total FLOPs: (\S+)|(\S+) +Total Flops", out)
    assert found and (found[1] or found[2]) != "0", out


def test_hparams_take_every_kind_of_value():
    from tinygpt.training.tensorboard_layout import hyperparameters

    settings = configure("optim.betas=[0.9,0.99]", "model.attention.scale=false",
                         "model.attention.window=8", "variant=sigmoid", "seed=3",
                         "data.cache_dir=/tmp/x", run_dir="r")
    params = hyperparameters(settings, "32-true")
    assert params["optim.betas"] == "[0.9, 0.99]" and params["model.attention.scale"] == "false"
    assert params["model.attention.window"] == 8 and params["precision"] == "32-true"
    assert params["variant"] == "sigmoid" and params["seed"] == 3  # a group by its option
    assert "data.cache_dir" not in params  # plumbing: where, not what


def test_target_bpb_stops_at_the_first_validation_below_it(train_run, tmp_path):
    result, _ = train_run("target_bpb=100.0")  # any model beats 100 bpb: the first validation
    assert result.steps == 20 and result.reached_target  # val_check_interval=20 of 40 steps
    record = json.loads((tmp_path / "run" / "result.json").read_text())
    assert record["steps"] == 20 and record["reached_target"] is True
    assert record["tokens"] == 20 * 8 * 32  # steps x batch x context (smoke)
    assert 0 < record["train_seconds"] and record["train_bytes"] >= record["tokens"]
    assert record["median_step_ms"] > 0 and 0 < record["step_peak_share"] < 1


def test_without_a_target_the_run_goes_on(smoke_run):
    record = json.loads((smoke_run / "result.json").read_text())
    assert record["steps"] == 40 and record["target_bpb"] is None
    assert record["reached_target"] is None



def test_speedrun_switches_train_through_lightning(train_run, tmp_path):
    from tinygpt.weights.checkpoint import load_checkpoint

    result, _ = train_run("optim=muon", "optim.schedule=wsd", "model.activation=relu2",
                          "model.zero_init=true", "model.logit_softcap=15", "optim.fused=true")
    assert result.steps == 40 and math.isfinite(result.val_bpb)
    ckpt = torch.load(result.last_checkpoint, weights_only=False)
    assert ckpt["hyper_parameters"]["optim"]["algorithm"] == "muon"
    assert len(ckpt["optimizer_states"][0]["optimizers"]) == 2  # Muon's state and AdamW's
    model, _ = load_checkpoint(str(result.last_checkpoint))
    assert model.cfg.logit_softcap == 15 and model.cfg.activation == "relu2"


def test_fused_adamw_is_refused_under_float16_loss_scaling_only(train_run, monkeypatch):
    from types import SimpleNamespace

    from tinygpt.errors import UsageError
    from tinygpt.model.gpt import GPTConfig
    from tinygpt.training.module import GPTLightningModule

    # a GPU's 16-mixed (Lightning turns it into bf16-mixed on a CPU)
    module = GPTLightningModule(GPTConfig(vocab_size=16, context_length=8, emb_dim=16,
                                          n_heads=2, n_layers=1),
                                {"name": "char", "chars": "abcdefghijklmnop"}, {"fused": True})
    trainer = SimpleNamespace(precision="16-mixed", estimated_stepping_batches=10)
    monkeypatch.setattr(GPTLightningModule, "trainer", property(lambda self: trainer))
    with pytest.raises(UsageError, match="optim.fused=true cannot clip"):
        module.configure_optimizers()
    module.optim.fused = None  # the default leaves it unfused there
    assert not module.configure_optimizers()["optimizer"].defaults["fused"]
    monkeypatch.undo()
    # bf16 has no loss scaler: the fused step is the default there, and clipping still acts
    # (no probes, int8 pass or sample: bf16 is emulated, and slow, on AVX2-only CPUs)
    result, _ = train_run("trainer.precision=bf16-mixed", "trainer.max_steps=4",
                          "trainer.val_check_interval=4", "optim=adamw", "probes.every=0",
                          "probes.int8_windows=0", "trainer.limit_val_batches=1",
                          "sample.max_new_tokens=0")
    ckpt = torch.load(result.last_checkpoint, weights_only=False)
    assert ckpt["optimizer_states"][0]["param_groups"][0]["fused"] is True


def test_a_run_on_lab_ivs_copy_windows_logs_the_phase_change(train_run):
    from tinygpt import metrics as m

    result, _ = train_run("data.synthetic.kind=copies", "data.synthetic.prefix=8",
                          "data.synthetic.shortest=2", "data.synthetic.longest=6",
                          "trainer.max_steps=20", "trainer.val_check_interval=20")
    ea = events(result.run_dir)
    scalars = set(ea.Tags()["scalars"])
    for tag in (m.COPY_LOSS, m.REST_LOSS, m.probe_tag(m.INDUCTION, m.COPY_SCORE, 1),
                m.probe_tag(m.INDUCTION, m.COPY_PREVIOUS, 0)):
        assert tag in scalars, tag
    assert [e.step for e in ea.Scalars(m.COPY_LOSS)] == [0, 10, 20]
    from tensorboard.plugins.custom_scalar import layout_pb2

    proto = ea.Tensors("custom_scalars__config__")[0].tensor_proto.string_val[0]
    titles = [c.title for c in layout_pb2.Layout.FromString(proto).category]
    assert titles[-1] == "5. the induction phase change"


@pytest.mark.parametrize("rich", [True, False], ids=["rich", "no rich"])
def test_a_piped_run_prints_every_line_once_and_summarises_the_model_alone(rich, run_script,
                                                                         tmp_path, cache_dir):
    assert importlib.util.find_spec("rich") is not None  # the dev tools install it: both paths
    env = {} if rich else {"TINYGPT_NO_RICH": "1", "PYTHONPATH": str(ROOT / "tests" / "faults")}
    p = run_script("train.py", "experiment=smoke", "trainer.enable_model_summary=true",
                   f"data.cache_dir={cache_dir}", f"hydra.run.dir={tmp_path / 'run'}",
                   cwd=tmp_path, env=env)
    assert p.returncode == 0, p.stderr[-2000:]
    lines = [ln.strip() for ln in (p.stdout + p.stderr).splitlines() if ln.strip()]
    said = [ln for ln in lines if any(c.isalnum() for c in ln)]  # not a table's border
    repeated = sorted({ln for ln in said if said.count(ln) > 1})
    assert not repeated, repeated
    # at the start, and in the closing summary ("precision: ...")
    assert sum("32-true (set by trainer.precision)" in ln for ln in lines) == 2
    table = "\n".join(lines)
    assert "GPT" in table and "Total params" in table  # the model is summarised
    assert "val_loss" not in table and "Metric" not in table  # and nothing but the model
