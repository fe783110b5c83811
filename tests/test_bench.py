import json
import tempfile
from pathlib import Path

import pytest
import torch

from tinygpt.lab.bench.gpu import gpu_section
from tinygpt.lab.bench.render import write
from tinygpt.lab.bench.run import run
from tinygpt.model.generate import generate
from tinygpt.model.gpt import GPT, GPTConfig
from tinygpt.training.precision import NATIVE_BF16_RATIO


def test_bench_quick_mode_writes_table_and_json(tmp_path):
    write(run(quick=True), tmp_path)
    r = json.loads((tmp_path / "benchmarks.json").read_text())
    precision = r["default_precision"]["precision"]  # what precision=auto picks on this machine
    dtype = {"bf16-mixed": "bf16", "32-true": "float32"}[precision]
    assert r["training"][f"Lightning (our default: {dtype})"]["tokens_per_sec"] > 0
    assert r["training"][f"raw {dtype} + sliced CE (our default)"]["tokens_per_sec"] > 0
    assert r["mfu"]["peak_dtype"] == dtype  # MFU against the peak of the precision in use
    native = r["bf16_probe"]["speedup"] >= NATIVE_BF16_RATIO
    bf16_row = r["training"]["raw bf16 autocast, full CE"]
    assert ("skipped" not in bf16_row) == native  # timed only where bf16 is not emulated
    assert set(r["attention_fwd_bwd"]) == {"64", "128"}
    md = (tmp_path / "benchmarks.md").read_text()
    assert "python scripts/bench.py --quick" in md and "| raw float32 eager" in md
    assert f"Default path: `{precision}`" in md
    text = r["text_throughput"]  # what a user waits for: bytes of text per second
    gpt2 = next(v for k, v in text.items() if k.startswith("GPT-2"))
    assert all(v["bytes_per_sec"] == pytest.approx(v["tokens_per_sec"] * v["bytes_per_token"])
               for v in text.values()) and gpt2["bytes_per_token"] == pytest.approx(2.75, abs=0.1)
    assert "| GPT-2 tokens (vocabulary 50257) |" in md and "bytes/s" in md


def test_bench_gpu_section_code_runs():
    # the GPU section's code, on the CPU with a toy shape (no GPU is needed to check it runs)
    r = gpu_section("cpu", quick=True)
    assert r["tokens_per_sec"] > 0 and r["tflops"] > 0


def test_bf16_autocast_loss_close_to_float32():
    torch.manual_seed(0)
    m = GPT(GPTConfig(vocab_size=300, context_length=32, emb_dim=64, n_heads=4, n_layers=2,
                      pad_vocab_multiple=64))
    x, y = torch.randint(0, 300, (4, 32)), torch.randint(0, 300, (4, 32))
    full = m.loss(x, y)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = m.loss(x, y)
    assert abs(low.item() - full.item()) < 0.02


def test_compiled_trunk_matches_eager(monkeypatch):
    # A cache per CPU capability: inductor's shared cache hands a kernel built for AVX-512 to a
    # process started with ATEN_CPU_CAPABILITY=avx2 (the AVX2 emulation), which then gives NaN.
    isa = torch.backends.cpu.get_cpu_capability()
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR",
                       str(Path(tempfile.gettempdir()) / f"tinygpt_inductor_{isa}"))
    torch.manual_seed(0)
    m = GPT(GPTConfig(vocab_size=100, context_length=16, emb_dim=32, n_heads=2, n_layers=2))
    x, y = torch.randint(0, 100, (2, 16)), torch.randint(0, 100, (2, 16))
    eager = m.loss(x, y)
    m.hidden = torch.compile(m.hidden)
    torch.testing.assert_close(m.loss(x, y), eager, atol=1e-5, rtol=1e-5)


def test_padded_vocabulary_is_never_scored_or_sampled():
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=70, context_length=16, emb_dim=32, n_heads=2, n_layers=1,
                    pad_vocab_multiple=64)
    m = GPT(cfg).eval()
    assert cfg.padded_vocab_size == 128 and m.head.weight.shape[0] == 128
    with torch.no_grad():
        m.head.weight[70:] = 100.0  # padding rows that would win every argmax if they counted
    x = torch.randint(0, 70, (2, 16))
    assert m(x).shape[-1] == 70
    out = generate(m, x[:, :4], 30, temperature=1.0, generator=torch.Generator().manual_seed(0))
    assert out.max() < 70
    # the loss equals cross-entropy over the 70 real tokens only
    ref = torch.nn.functional.cross_entropy(m(x).flatten(0, 1), x.flatten())
    torch.testing.assert_close(m.loss(x, x), ref, atol=1e-5, rtol=1e-5)
    fresh = GPT(cfg)
    fresh.loss(x, x).backward()
    assert not fresh.head.weight.grad[70:].any()  # padding rows are never trained


def test_a_sweep_benchmark_compares_each_jobs_losses_and_replaces_its_own_entry(monkeypatch,
                                                                               tmp_path):
    from tinygpt.lab.bench import sweeps

    def fake_sweep(overrides, sweep_dir):  # each launcher's jobs, as result.json files
        parallel = "hydra/launcher=parallel" in overrides
        for seed in (1, 2):
            (sweep_dir / f"seed:{seed}").mkdir(parents=True)
            loss = 2.0 + seed + (1e-6 if parallel else 0)
            (sweep_dir / f"seed:{seed}" / "result.json").write_text(json.dumps(
                {"train_loss": loss, "val_loss": loss, "val_bpb": loss}))
        return 30.0 if parallel else 48.0

    monkeypatch.setattr(sweeps, "timed_sweep", fake_sweep)
    entry = sweeps.bench_sweep(["experiment=smoke", "seed=1,2"])
    assert entry["jobs"] == 2 and entry["speedup"] == pytest.approx(1.6)
    assert entry["max_loss_difference"] == pytest.approx(1e-6)
    path = tmp_path / "sweeps.json"
    path.write_text(json.dumps([entry | {"speedup": 9.0}, entry | {"machine": "another"}]))
    merged = sweeps.merge(path, entry)
    assert [e["speedup"] for e in merged if e["machine"] == entry["machine"]] == [
        pytest.approx(1.6)]
    assert len(merged) == 2 and "| 2 | 48 s | 30 s | 1.60x |" in sweeps.table(merged)
