"""Statistics over seeds: mean ± std, Welch's t-test, and the seeds table report.py writes from a
sweep's folders."""

import math

import pytest
from torch.utils.tensorboard import SummaryWriter

from tinygpt.lab.report.runs import find_runs
from tinygpt.lab.report.stats import Summary, format_p, verdict, welch_p, welch_p_less
from tinygpt.lab.report.tables import seeds_table


def test_summary_is_the_sample_mean_and_standard_deviation():
    s = Summary((1.0, 2.0, 4.0))
    assert s.mean == pytest.approx(7 / 3)
    assert s.std == pytest.approx(math.sqrt(((1 - 7 / 3) ** 2 + (2 - 7 / 3) ** 2
                                             + (4 - 7 / 3) ** 2) / 2))
    assert str(s) == "2.333 ± 1.528" and str(Summary((2.0,))) == "2.000"


def test_welch_p_against_a_hand_computation():
    # t = (2 - 5) / sqrt(1/3 + 1/3) = -3.674 with 4 degrees of freedom: two-sided p = 0.0213
    p = welch_p(Summary((1.0, 2.0, 3.0)), Summary((4.0, 5.0, 6.0)))
    assert p == pytest.approx(0.02131, abs=1e-4) and verdict(p) == "differs"
    assert verdict(welch_p(Summary((1.0, 2.0, 3.0)), Summary((1.5, 2.5, 3.5)))) == \
        "no clear difference"
    assert welch_p(Summary((1.0,)), Summary((2.0, 3.0))) is None  # one seed: no test


def test_welch_with_unequal_sizes_and_spreads_matches_a_reference():
    # scipy.stats.ttest_ind(a, b, equal_var=False) gave these (df 2.5: the beta function's path)
    a, b = Summary((61.2, 58.9, 63.4, 60.1, 59.7)), Summary((70.3, 66.1, 74.8))
    assert welch_p(a, b) == pytest.approx(0.04969675204952384, rel=1e-9)
    assert welch_p_less(a, b) == pytest.approx(0.02484837602476192, rel=1e-9)
    assert welch_p_less(b, a) == pytest.approx(0.975151623975238, rel=1e-9)


def test_a_tiny_p_value_is_not_printed_as_zero():
    p = welch_p(Summary((1.0, 1.01, 1.02)), Summary((2.0, 2.01, 2.02)))
    assert 0 < p < 0.0005 and format_p(p) == "< 0.001"
    assert format_p(0.02131) == "0.021" and format_p(0.0005) == "0.001"


def fake_sweep(root, values: dict[tuple[str, int], float]):
    """A sweep folder as Hydra and the run write it: overrides.yaml, config.yaml, events."""
    for (qk, seed), bpb in values.items():
        run = root / f"qk_norm={qk},seed={seed}"
        (run / ".hydra").mkdir(parents=True)
        (run / ".hydra" / "overrides.yaml").write_text(
            f"- model.attention.qk_norm={qk}\n- seed={seed}\n")
        (run / ".hydra" / "config.yaml").write_text(
            "trainer: {max_steps: 10, log_every_n_steps: 1}\n"
            "model: {emb_dim: 8, n_heads: 2, context_length: 128}\n"
            "data: {synthetic: {length: null}, bos: true}\n")
        with SummaryWriter(str(run)) as w:
            for step in range(10):
                w.add_scalar("train/loss", 1.0, step)
            w.add_scalar("val/bpb", bpb, 9)
            w.add_scalar("watch/attention/max_score/layer_0", 10 * bpb, 5)
            w.add_scalar("watch/attention/entropy/layer_0", 1.0, 9)


def test_the_seeds_table_groups_seeds_and_tests_each_setting_against_the_default(tmp_path):
    fake_sweep(tmp_path, {("none", 1): 2.0, ("none", 2): 2.1, ("none", 3): 2.2,
                          ("rms", 1): 1.5, ("rms", 2): 1.6, ("rms", 3): 1.7})
    table = seeds_table(find_runs(tmp_path), {"model.attention.qk_norm": None})
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ") for line in table.splitlines()}
    none, rms = rows["qk_norm=none"], rows["qk_norm=rms"]
    assert none[1] == "3" and none[3] == "2.100 ± 0.100" and none[-1].startswith("(itself)")
    expected = welch_p(Summary((1.5, 1.6, 1.7)), Summary((2.0, 2.1, 2.2)))
    assert rms[3] == "1.600 ± 0.100" and rms[4] == f"{expected:.3f}" and rms[5] == "differs"
    assert rms[-1].startswith("qk_norm=none")
    assert rms[8] == "16.0 ± 1.0"  # the largest score column appears because runs logged it


def test_the_baseline_can_be_named_by_value(tmp_path):
    fake_sweep(tmp_path, {("none", 1): 2.0, ("none", 2): 2.1, ("rms", 1): 1.5, ("rms", 2): 1.6})
    table = seeds_table(find_runs(tmp_path), {"model.attention.qk_norm": "rms"})
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ") for line in table.splitlines()}
    assert rows["qk_norm=rms"][-1].startswith("(itself)")
    assert rows["qk_norm=none"][-1].startswith("qk_norm=rms")


def test_the_phenomena_table_tests_each_quantity_and_finds_the_formation_step(tmp_path):
    from tinygpt import metrics as m
    from tinygpt.lab.report.tables import phenomena_table

    assert phenomena_table(find_runs(tmp_path), {}) == ""  # nothing logged: no table
    scores = {"none": [0.01, 0.05, 0.15, 0.3], "rms": [0.01, 0.02, 0.03, 0.04]}
    mass = {("none", 1): 0.5, ("none", 2): 0.6, ("none", 3): 0.7,
            ("rms", 1): 0.1, ("rms", 2): 0.12, ("rms", 3): 0.11}
    fake_sweep(tmp_path, {k: 2.0 for k in mass})
    for (qk, seed), value in mass.items():
        with SummaryWriter(str(tmp_path / f"qk_norm={qk},seed={seed}")) as w:
            for i, score in enumerate(scores[qk]):
                w.add_scalar(m.INDUCTION_MAX, score + 0.001 * seed, 25 * i)
            w.add_scalar(m.FIRST_TOKEN_MASS_MAX, value, 75)
    table = phenomena_table(find_runs(tmp_path), {"model.attention.qk_norm": None})
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ") for line in table.splitlines()}
    # the probe: 16 tokens after the end-of-text token, uniform 0.041, so "formed" is > 0.1
    assert rows["qk_norm=none"][1] == "50 (3/3)" and rows["qk_norm=rms"][1] == "never (0/3)"
    expected = welch_p(Summary((0.1, 0.12, 0.11)), Summary((0.5, 0.6, 0.7)))
    assert rows["qk_norm=rms"][3].strip(" |") == f"0.110 ± 0.010 (p {format_p(expected)})"
    assert rows["qk_norm=none"][3].strip(" |") == "0.600 ± 0.100"  # the baseline: no p
