"""The start-up benchmark: the warm-up run is not counted, the medians are of the measured runs,
and the table shows each. (our_run itself, a real whole process, is tested by the race's test.)"""

from pathlib import Path

import tinygpt.lab.bench.startup as bs


def test_the_warm_up_is_not_counted_and_the_medians_are_the_runs(monkeypatch, tmp_path):
    calls = []

    def fake_run(text, steps, overrides, folder):
        calls.append((steps, overrides, folder.name))
        n = len(calls)  # the warm-up is the slowest, as a cold cache would be
        return {"to_first_step_s": 30.0 if n == 1 else float(n), "after_last_step_s": 0.1 * n,
                "wall_s": 10.0 + n, "precision": "32-true"}

    monkeypatch.setattr(bs, "our_run", fake_run)
    r = bs.bench_startup(Path("text.txt"), repeats=3, steps=5)
    assert [c[2] for c in calls] == ["warm-up", "run-0", "run-1", "run-2"]
    assert all(c[:2] == (5, ["variant=race"]) for c in calls)
    assert [x["to_first_step_s"] for x in r["runs"]] == [2.0, 3.0, 4.0]
    assert r["median"]["to_first_step_s"] == 3.0 and r["median"]["wall_s"] == 13.0
    table = bs.table(r).splitlines()
    assert table[2] == "| 1 | 2.00 | 0.20 | 12.0 |"
    assert table[-1] == "| median | 3.00 | 0.30 | 13.0 |"
