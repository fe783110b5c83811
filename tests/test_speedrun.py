"""tinygpt.lab.speedrun: configurations, the record rule, the tables; one seconds-long attempt."""

import pytest

from tinygpt.errors import UsageError
from tinygpt.lab.speedrun import (
    BEGIN,
    END,
    Attempt,
    Config,
    attempt,
    judge,
    markers,
    tables,
    write_tables,
)


def attempts(name, walls, reached=True):
    return [Attempt(name, i, w, w - 5, 100, 1000, 3000.0, 1.7, reached, 50.0, 0.2)
            for i, w in enumerate(walls, 1)]


CONFIGS = [Config("default", ()), Config("fast", ("optim=muon",)), Config("same", ("a=1",)),
           Config("faster", ("b=2",))]


def test_config_reads_name_and_overrides():
    assert Config.parse("muon: optim=muon model.zero_init=true") == Config(
        "muon", ("optim=muon", "model.zero_init=true"))
    assert Config.parse("default:") == Config("default", ())
    with pytest.raises(UsageError, match="colon"):
        Config.parse("optim=muon")


def test_a_record_needs_p_below_001_against_the_record_standing_then():
    runs = (attempts("default", [100, 102, 98, 101, 99]) + attempts("fast", [60, 61, 59, 62, 60])
            + attempts("same", [60, 62, 58, 61, 59]) + attempts("faster", [40, 41, 39, 40, 42]))
    v = {x.config.name: x for x in judge(CONFIGS, runs)}
    assert v["default"].record and v["default"].p is None
    assert v["fast"].record and v["fast"].p < 0.01 and v["fast"].against == "default"
    assert not v["same"].record and v["same"].against == "fast" and v["same"].p > 0.3
    assert v["faster"].record and v["faster"].against == "fast"  # not against "same"
    text = tables(list(v.values()), "test CPU", 1.777)
    records, negatives = text.split("Tried, not a record:")
    assert "record 1: fast" in records and "record 2: faster" in records
    again = tables(list(v.values()), "test CPU", 1.777, first_record=1)  # from a standing record
    assert "record 1: default" in again and "record 3: faster" in again
    assert "| same | `tinygpt-train a=1` | 60.0 ± 1.6 | 55.0 ± 1.6 | 100 | 50.0 | 20.0 |" \
        in negatives


def test_a_change_tried_on_fewer_than_five_seeds_is_no_record():
    runs = attempts("default", [100, 101, 99, 100, 102]) + attempts("fast", [50, 51, 49])
    v = judge(CONFIGS[:2], runs)
    assert v[1].p < 0.01 and not v[1].record


def test_a_sweep_runs_a_tried_change_on_its_first_seeds_only(monkeypatch, tmp_path):
    import tinygpt.lab.speedrun as sr

    ran = []
    monkeypatch.setattr(sr, "attempt", lambda c, seed, target, folder: ran.append(
        (c.name, seed)) or attempts(c.name, [1.0])[0])
    sr.sweep([Config("a", ()), Config("b", (), seeds=2)], [1, 2, 3], 1.7, tmp_path,
             report=lambda line: None)
    assert ran == [("a", 1), ("b", 1), ("a", 2), ("b", 2), ("a", 3)]  # interleaved


def test_a_candidate_that_missed_the_target_on_a_seed_is_no_record():
    runs = attempts("default", [100, 101, 99]) + attempts("fast", [50, 51, 50, 49]) + attempts(
        "fast", [49], reached=False)
    v = judge(CONFIGS[:2], runs)
    assert v[1].reached == 4 and v[1].n == 5 and not v[1].record


def test_tables_go_between_the_markers_and_the_prose_stays(tmp_path):
    doc = tmp_path / "speedrun.md"
    doc.write_text(f"# Speedrun\nintro\n{BEGIN}\nold\n{END}\nafter\n")
    write_tables(doc, "new table")
    assert doc.read_text() == f"# Speedrun\nintro\n{BEGIN}\nnew table\n{END}\nafter\n"
    begin, end = markers("record 2")
    doc.write_text(f"{BEGIN}\nold\n{END}\n{begin}\nold 2\n{end}\n")
    write_tables(doc, "new 2", "record 2")
    assert doc.read_text() == f"{BEGIN}\nold\n{END}\n{begin}\nnew 2\n{end}\n"
    doc.write_text("no markers")
    with pytest.raises(UsageError, match="block"):
        write_tables(doc, "x")


def test_an_attempt_trains_until_the_target_and_reads_its_result(tmp_path, cache_dir):
    smoke = Config("smoke", ("experiment=smoke", f"data.cache_dir={cache_dir}",
                             "sample.max_new_tokens=4"))
    a = attempt(smoke, 3, 100.0, tmp_path / "run")  # any model beats 100 bpb
    assert a.reached and a.steps == 20 and a.seed == 3  # stopped at the first validation
    assert a.wall_s > a.train_s > 0 and a.tokens == 20 * 8 * 32


def test_cli_refuses_one_seed(run_script):
    proc = run_script("speedrun.py", "--seeds", "1")
    assert proc.returncode == 2 and proc.stderr.startswith("error: --seeds 1")
