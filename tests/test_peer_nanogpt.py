"""tinygpt.lab.peers.nanogpt: the side-by-side run, with a stand-in for nanoGPT's train.py (the
real one is compared by hand: docs/results/benchmarks.md) and a short run of ours."""

import pytest

from tinygpt.errors import UsageError
from tinygpt.lab.peers.nanogpt import side_by_side, table

FAKE_TRAIN = """import sys, pathlib
args = sys.argv[1:]
assert args[0] == "config/train_shakespeare_char.py" and "--device=cpu" in args, args
assert pathlib.Path("data/shakespeare_char/train.bin").exists()
for i, ms in enumerate([500.0, 40.0, 42.0, 38.0]):
    print(f"iter {i}: loss 2.0000, time {ms:.2f}ms, mfu 0.03%")
print("step 4: train loss 1.9000, val loss 1.8857")
"""
FAKE_PREPARE = """import requests  # nanoGPT's imports it; the bench stands in for it
open("train.bin", "w").write(open("input.txt").read()[:10])
"""


@pytest.fixture
def fake_nanogpt(tmp_path):
    root = tmp_path / "nanoGPT"
    (root / "data/shakespeare_char").mkdir(parents=True)
    (root / "config").mkdir()
    (root / "train.py").write_text(FAKE_TRAIN)
    (root / "data/shakespeare_char/prepare.py").write_text(FAKE_PREPARE)
    return root


def test_side_by_side_times_both_and_reads_their_numbers(fake_nanogpt, tmp_path, cache_dir):
    text = tmp_path / "shakespeare.txt"
    text.write_text("First Citizen:\nBefore we proceed any further, hear me speak.\n" * 200)
    result = side_by_side(fake_nanogpt, text, steps=6,
                          ours=[["trainer.precision=32-true", f"data.cache_dir={cache_dir}",
                                 "sample.max_new_tokens=4"]])
    nano, ours = result["rows"]["nanoGPT"], result["rows"][
        f"tinygpt trainer.precision=32-true data.cache_dir={cache_dir} sample.max_new_tokens=4"]
    assert nano["median_step_ms"] == 40.0 and nano["val_loss"] == 1.8857  # the first is setup
    assert ours["precision"] == "32-true" and ours["median_step_ms"] > 0
    assert ours["speedup_vs_nanogpt"] == pytest.approx(nano["wall_s"] / ours["wall_s"])
    assert "| nanoGPT |" in table(result)


def test_a_folder_without_nanogpt_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="no nanoGPT train.py"):
        side_by_side(tmp_path, tmp_path / "x.txt", 6, [[]])


def test_the_race_runs_ours_to_nanogpts_final_loss(fake_nanogpt, tmp_path, cache_dir):
    from tinygpt.lab.peers.nanogpt import race, race_table

    text = tmp_path / "shakespeare.txt"
    text.write_text("First Citizen:\nBefore we proceed any further, hear me speak.\n" * 200)
    # the stand-in's final val loss, 1.8857 nats, is 2.72 bits per character: any model beats it
    result = race(fake_nanogpt, text, ["trainer.precision=32-true", f"data.cache_dir={cache_dir}",
                                       "trainer.max_steps=40", "trainer.val_check_interval=10",
                                       "sample.max_new_tokens=4"], repeats=1)
    pair = result["pairs"][0]
    # it stopped at the first validation below the target, before its last step
    assert pair["tinygpt"]["reached"] and pair["tinygpt"]["steps"] in (10, 20, 30)
    assert pair["tinygpt"]["val_loss"] < 1.8857
    assert pair["speedup"] == pytest.approx(pair["nanoGPT"]["wall_s"] / pair["tinygpt"]["wall_s"])
    assert result["all_reached"] and result["median_speedup"] == pair["speedup"]
    assert "| median |" in race_table(result)
