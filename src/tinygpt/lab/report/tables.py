"""A sweep report's tables: one row per run, and one per setting over its seeds with Welch's
t-test against the setting's baseline."""

from __future__ import annotations

import math

from omegaconf import DictConfig, OmegaConf

from tinygpt import metrics as m
from tinygpt.lab.report.runs import Run, by_setting, train_tail
from tinygpt.lab.report.stats import Summary, format_p, verdict, welch_p
from tinygpt.probes.induction import uniform_score
from tinygpt.training.config import compose_train, yaml_value


def same_value(a: str, b: str) -> bool:
    """Two override values alike as numbers (1e-3 and 0.001) or as words (True and true)."""
    try:
        return math.isclose(float(a), float(b))
    except (TypeError, ValueError):
        return str(a).lower() == str(b).lower()


def is_default(key: str, value: str, defaults: DictConfig) -> bool:
    """Whether an override sets a key to the default run's value."""
    return same_value(yaml_value(getattr(OmegaConf.select(defaults, key), "value",
                                         OmegaConf.select(defaults, key))), value)


def baseline_of(setting: dict[str, str], settings: list[dict[str, str]],
                compare: dict[str, str | None], defaults: DictConfig) -> dict[str, str] | None:
    """The setting a setting is tested against: each compared key at its given baseline value
    (None: the default's), every other key as it is (no keys named: every key is compared)."""
    def is_base(k: str, v: str) -> bool:
        want = compare.get(k)
        return is_default(k, v, defaults) if want is None else same_value(v, want)

    for other in settings:
        if all(is_base(k, v) if (not compare or k in compare) else v == setting[k]
               for k, v in other.items()):
            return other
    return None


def fmt(x: float | None, digits: int = 3) -> str:
    """'–' where a run logged nothing; 'nan' where it logged NaN (it diverged)."""
    return "–" if x is None else f"{x:.{digits}f}"


def table(runs: list[Run]) -> str:
    head = ["run", "d_head", "train loss", "val loss", "train bpb", "val bpb",
            "val loss, causal eval",
            "entropy (nats)", "entropy max", "max weight", "score std", "W_q grad norm",
            "W_k grad norm"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in runs:
        d = r.head_dim()
        cells = [
            r.label, str(d) if d else "–", fmt(train_tail(r)), fmt(r.last(m.VAL_LOSS)),
            fmt(train_tail(r, m.TRAIN_BPB)), fmt(r.last(m.VAL_BPB)),
            fmt(r.last(m.VAL_LOSS_CAUSAL)), fmt(r.layer_mean("entropy"), 2),
            fmt(r.last(m.ENTROPY_UNIFORM), 2), fmt(r.layer_mean("max_weight"), 2),
            fmt(r.layer_mean("score_std"), 2),
            *(f"{fmt(r.layer_mean(g, 1.0), 4)} ({fmt(r.layer_mean(g, 0.25), 4)})"
              for g in ("grad_wq", "grad_wk")),
        ]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


# Columns a seeds table adds where its runs logged them: header, decimals, one run's value.
EXTRA_COLUMNS = (
    ("val bpb, 2x context", 3, lambda r: r.last(m.long_context(2)[1])),
    ("the same text at 1x", 3, lambda r: r.last(m.long_context(2)[2])),
    ("largest score (peak)", 1, lambda r: r.peak("max_score")),
    ("KV cache bytes/token", 0, lambda r: r.last(m.KV_CACHE_BYTES)),
    ("generate tokens/s", 0, lambda r: r.last(m.GENERATE_TOKENS_PER_SEC)),
)


def seeds_table(runs: list[Run], compare: dict[str, str | None]) -> str:
    """Per setting over its seeds: mean ± std of the final val bpb, val loss and train bpb (and
    of the EXTRA_COLUMNS the runs logged), and Welch's t-test of the val bpb against the
    setting's baseline."""
    groups = by_setting(runs)
    baselines = baseline_names(groups, compare)
    extra = [c for c in EXTRA_COLUMNS if any(c[2](r) is not None for r in runs)]
    head = ["setting", "seeds", "stopped early", "val bpb", "p vs baseline", "", "val loss",
            "train bpb", *(c[0] for c in extra), "baseline"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    final = {name: finals(g, m.VAL_BPB) for name, g in groups.items()}
    for name, group in groups.items():
        base_name = baselines[name]
        p = None if base_name in (None, name) else welch_p(final[name], final[base_name])
        cells = [name, str(len(group)), str(sum(r.stopped_early() for r in group)),
                 str(final[name]) if final[name].n else "–",
                 "–" if p is None else format_p(p), verdict(p) if p is not None else "",
                 summary_of(group, m.VAL_LOSS), summary_of(group, m.TRAIN_BPB, tail=True),
                 *(values_of(group, value, digits) for _, digits, value in extra),
                 "(itself)" if base_name == name else (base_name or "–")]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def baseline_names(groups: dict[str, list[Run]],
                   compare: dict[str, str | None]) -> dict[str, str | None]:
    """Each setting's baseline setting (by name; None where the sweep has none)."""
    settings = [g[0].setting for g in groups.values()]
    defaults = compose_train()
    out = {}
    for name, group in groups.items():
        base = baseline_of(group[0].setting, settings, compare, defaults)
        out[name] = next((n for n, g in groups.items() if g[0].setting == base), None)
    return out


def finals(group: list[Run], tag: str) -> Summary:
    """The last logged value of `tag` in each run of a group that logged it."""
    return Summary(tuple(v for r in group if (v := r.last(tag)) is not None))


def values_of(group: list[Run], value, digits: int) -> str:
    values = tuple(v for r in group if (v := value(r)) is not None)
    return Summary(values).format(digits) if values else "–"


def summary_of(group: list[Run], tag: str, tail: bool = False) -> str:
    values = tuple(v for r in group if (v := train_tail(r, tag) if tail else r.last(tag))
                   is not None)
    return str(Summary(values)) if values else "–"


def baseline_words(compare: dict[str, str | None]) -> str:
    if not compare:
        return "every key at its default"
    return ", ".join(f"{k}={v}" if v is not None else f"{k} at its default"
                     for k, v in sorted(compare.items()))


# What attention does: each setting's mean ± sd over its seeds and Welch's p against
# its baseline (the final values: the end-of-run measurement).
PHENOMENA = (
    ("induction score (best head)", 2, m.INDUCTION_MAX),
    ("in-context drop, nats", 2, m.IN_CONTEXT_DROP),
    ("previous-token score (best head)", 2, m.PREVIOUS_MAX),
    ("first-token mass (largest head)", 3, m.FIRST_TOKEN_MASS_MAX),
    ("sink rate", 2, m.SINK_RATE),
    ("outlier ratio (largest layer)", 1, m.OUTLIER_RATIO_MAX),
    ("int8 Δ val bpb", 4, m.INT8_DELTA_BPB),
)
# Induction has formed once a head's induction score passes this many times what uniform
# attention scores on the run's probe (the repeated-segment setting's probe of 16 tokens: 0.041,
# so 0.10); the in-context drop alone also counts copying that needs no induction head
# (docs/attention_lab.md).
FORMED_FACTOR = 2.5


def formed_at(run: Run, factor: float = FORMED_FACTOR) -> int | None:
    """The first logged step whose best induction score exceeds `factor` times the uniform
    score of the run's probe (its length and start read from the run's config), or None."""
    data = OmegaConf.select(run.config, "data") if run.config is not None else None
    context = OmegaConf.select(run.config, "model.context_length") if data is not None else None
    if context is None:  # not a run of this project's config: nothing to compare against
        return None
    # the probe's length: data.synthetic.length (data.repeat_length in runs recorded before it)
    length = (OmegaConf.select(data, "synthetic.length") or OmegaConf.select(data, "repeat_length")
              or context // 8)
    threshold = factor * uniform_score(length, start=int(bool(data.bos)))
    steps, values = run.series(m.INDUCTION_MAX)
    return next((s for s, v in zip(steps, values, strict=True) if v > threshold), None)


def phenomena_table(runs: list[Run], compare: dict[str, str | None]) -> str:
    """What attention does, per setting: each PHENOMENA column the runs logged as `mean ± sd
    (p)`, p from Welch's t-test against the setting's baseline, and the step induction formed
    at (its seeds that formed it); "" when no run logged any."""
    columns = [c for c in PHENOMENA if any(r.last(c[2]) is not None for r in runs)]
    if not columns:
        return ""
    groups = by_setting(runs)
    baselines = baseline_names(groups, compare)
    formed = f"induction formed at step (score > {FORMED_FACTOR:g} x uniform)"
    rows = ["| setting | " + " | ".join([formed] + [c[0] for c in columns]) + " |",
            "|" + "---|" * (len(columns) + 2)]
    for name, group in groups.items():
        base = baselines[name]
        steps = Summary(tuple(s for r in group if (s := formed_at(r)) is not None))
        cells = [name, f"{steps.format(0) if steps.n else 'never'} ({steps.n}/{len(group)})"]
        for _, digits, tag in columns:
            mine = finals(group, tag)
            cell = mine.format(digits) if mine.n else "–"
            if mine.n and base not in (None, name):
                theirs = finals(groups[base], tag)
                p = welch_p(mine, theirs) if theirs.n else None
                cell += f" (p {format_p(p)})" if p is not None else ""
            cells.append(cell)
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)
