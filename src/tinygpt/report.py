"""A sweep's report from its TensorBoard events: a table and plots, one line per run.

`write_report(sweep, out)` (what scripts/report.py runs) writes report.md (final losses,
causal-eval loss, attention entropy and saturation, W_q/W_k gradient norms, each run's last
sample) and loss.png, entropy.png, saturation.png, score_std.png, grad_qk.png. Runs are labelled
by the overrides that tell them apart.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from tinygpt.config import compose_train, yaml_value  # noqa: E402
from tinygpt.errors import UsageError  # noqa: E402
from tinygpt.events import EVENTS, read_events  # noqa: E402
from tinygpt.stats import Summary, format_p, verdict, welch_p  # noqa: E402

TRAIN_TAIL = 5  # train loss in the table: the mean of the last this-many logged values


class Run:
    """One job of a sweep: its directory, overrides, config and logged values."""

    def __init__(self, path: Path):
        self.path = path
        hydra_dir = path / ".hydra"
        overrides = hydra_dir / "overrides.yaml"
        self.overrides = list(OmegaConf.load(overrides)) if overrides.exists() else [path.name]
        config = hydra_dir / "config.yaml"
        self.config = OmegaConf.load(config) if config.exists() else None
        events = read_events(path)
        self.scalars, self.sample = events.scalars, events.sample
        self.label = path.name

    def series(self, tag: str) -> tuple[list[int], list[float]]:
        values = self.scalars.get(tag, {})
        steps = sorted(values)
        return steps, [values[s] for s in steps]

    def last(self, tag: str) -> float | None:
        _, values = self.series(tag)
        return values[-1] if values else None

    def layers(self) -> int:
        return sum(1 for t in self.scalars if t.startswith("attention/entropy/layer_")
                   and t.count("/") == 2)

    def layer_mean(self, name: str, tail: float = 0.0) -> float | None:
        """Mean over layers of attention/<name>/layer_i: its last value (tail=0), or its mean
        over the last `tail` fraction of the logged steps (1.0: all of them)."""
        out = []
        for i in range(self.layers()):
            _, values = self.series(f"attention/{name}/layer_{i}")
            if values:
                kept = values[-max(1, round(tail * len(values))):]
                out.append(sum(kept) / len(kept))
        return sum(out) / len(out) if out else None

    def peak(self, name: str) -> float | None:
        """The largest value of attention/<name>/layer_i over all layers and logged steps."""
        values = [v for i in range(self.layers())
                  for v in self.series(f"attention/{name}/layer_{i}")[1]]
        return max(values) if values else None

    def stopped_early(self) -> bool:
        """Ended before its max_steps: a NaN stop (divergence) or an interruption."""
        steps, _ = self.series("train/loss")
        planned = self.config.trainer.max_steps if self.config is not None else None
        return bool(steps and planned and planned > 0 and
                    max(steps) + self.config.trainer.log_every_n_steps < planned)

    def head_dim(self) -> int | None:
        m = self.config.model if self.config is not None else None
        return m.emb_dim // m.n_heads if m is not None else None


def find_runs(sweep: Path) -> list[Run]:
    dirs = sorted({f.parent for f in sweep.rglob(EVENTS)})
    runs = [Run(d) for d in dirs]
    label_runs(runs)
    # Natural order, so n_heads=4 comes before n_heads=16 and a pair differing in one switch
    # sits together.
    return sorted(runs, key=lambda r: [int(t) if t.isdigit() else t
                                       for t in re.split(r"(\d+)", r.label)])


def label_runs(runs: list[Run]) -> None:
    """Label each run by its overrides minus those every run shares; keys shortened to their
    last part where that stays unambiguous (model.attention.scale=false -> scale=false). A
    run's `setting` is the same minus its seed: the runs of one setting are its seeds."""
    shared = set.intersection(*(set(r.overrides) for r in runs)) if len(runs) > 1 else set()
    keys = [o.split("=", 1)[0] for r in runs for o in r.overrides if o not in shared]
    short = {k: k.rsplit(".", 1)[-1] for k in keys}
    if len(set(short.values())) < len(set(keys)):
        short = {k: k for k in keys}
    for r in runs:
        parts = [o.split("=", 1) for o in r.overrides if o not in shared]
        r.label = " ".join(f"{short[k]}={v.lower()}" for k, v in parts) or r.path.name
        r.setting = {k: v for k, v in parts if k != "seed"}
        r.group = " ".join(f"{short[k]}={v.lower()}" for k, v in r.setting.items()) or "all"


def by_setting(runs: list[Run]) -> dict[str, list[Run]]:
    """The runs of each setting (its seeds), in the runs' order."""
    groups: dict[str, list[Run]] = {}
    for r in runs:
        groups.setdefault(r.group, []).append(r)
    return groups


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


def train_tail(run: Run, tag: str = "train/loss") -> float | None:
    _, values = run.series(tag)
    tail = values[-TRAIN_TAIL:]
    return sum(tail) / len(tail) if tail else None


def table(runs: list[Run]) -> str:
    head = ["run", "d_head", "train loss", "val loss", "train bpb", "val bpb",
            "val loss, causal eval",
            "entropy (nats)", "entropy max", "max weight", "score std", "W_q grad norm",
            "W_k grad norm"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in runs:
        d = r.head_dim()
        cells = [
            r.label, str(d) if d else "–", fmt(train_tail(r)), fmt(r.last("val/loss")),
            fmt(train_tail(r, "train/bpb")), fmt(r.last("val/bpb")),
            fmt(r.last("val/loss_causal_eval")), fmt(r.layer_mean("entropy"), 2),
            fmt(r.last("attention/entropy_uniform"), 2), fmt(r.layer_mean("max_weight"), 2),
            fmt(r.layer_mean("score_std"), 2),
            *(f"{fmt(r.layer_mean(g, 1.0), 4)} ({fmt(r.layer_mean(g, 0.25), 4)})"
              for g in ("grad_wq", "grad_wk")),
        ]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


# Columns a seeds table adds where its runs logged them: header, decimals, one run's value.
EXTRA_COLUMNS = (
    ("val bpb, 2x context", 3, lambda r: r.last("val/bpb_2x")),
    ("the same text at 1x", 3, lambda r: r.last("val/bpb_2x_ref")),
    ("largest score (peak)", 1, lambda r: r.peak("max_score")),
    ("KV cache bytes/token", 0, lambda r: r.last("attention/kv_cache_bytes_per_token")),
    ("generate tokens/s", 0, lambda r: r.last("attention/generate_tokens_per_sec")),
)


def seeds_table(runs: list[Run], compare: dict[str, str | None]) -> str:
    """Per setting over its seeds: mean ± std of the final val bpb, val loss and train bpb (and
    of the EXTRA_COLUMNS the runs logged), and Welch's t-test of the val bpb against the
    setting's baseline."""
    groups = by_setting(runs)
    settings = [g[0].setting for g in groups.values()]
    defaults = compose_train()
    extra = [c for c in EXTRA_COLUMNS if any(c[2](r) is not None for r in runs)]
    head = ["setting", "seeds", "stopped early", "val bpb", "p vs baseline", "", "val loss",
            "train bpb", *(c[0] for c in extra), "baseline"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    final = {name: Summary(tuple(r.last("val/bpb") for r in g if r.last("val/bpb") is not None))
             for name, g in groups.items()}
    for name, group in groups.items():
        base = baseline_of(group[0].setting, settings, compare, defaults)
        base_name = next((n for n, g in groups.items() if g[0].setting == base), None)
        p = None if base_name in (None, name) else welch_p(final[name], final[base_name])
        cells = [name, str(len(group)), str(sum(r.stopped_early() for r in group)),
                 str(final[name]) if final[name].n else "–",
                 "–" if p is None else format_p(p), verdict(p) if p is not None else "",
                 summary_of(group, "val/loss"), summary_of(group, "train/bpb", tail=True),
                 *(values_of(group, value, digits) for _, digits, value in extra),
                 "(itself)" if base_name == name else (base_name or "–")]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def values_of(group: list[Run], value, digits: int) -> str:
    values = tuple(v for r in group if (v := value(r)) is not None)
    return Summary(values).format(digits) if values else "–"


def summary_of(group: list[Run], tag: str, tail: bool = False) -> str:
    values = tuple(v for r in group if (v := train_tail(r, tag) if tail else r.last(tag))
                   is not None)
    return str(Summary(values)) if values else "–"


def per_layer_plot(runs: list[Run], names: list[str], ylabels: list[str], path: Path,
                   log: bool = False, uniform: bool = False) -> None:
    """One row per quantity, one column per layer, one line per run."""
    n_layers = max(r.layers() for r in runs) or 1
    fig, axes = plt.subplots(len(names), n_layers, figsize=(3.6 * n_layers, 3.0 * len(names)),
                             squeeze=False, sharex=True)
    for row, (name, ylabel) in enumerate(zip(names, ylabels, strict=True)):
        for i in range(n_layers):
            ax = axes[row][i]
            for k, r in enumerate(runs):
                ax.plot(*r.series(f"attention/{name}/layer_{i}"), color=f"C{k}", label=r.label)
                if uniform:
                    ax.plot(*r.series("attention/entropy_uniform"), color=f"C{k}", ls=":", lw=1)
            ax.set_title(f"layer {i}")
            ax.set_ylabel(ylabel if i == 0 else "")
            if log:
                ax.set_yscale("log")
            ax.grid(alpha=0.3)
        for ax in axes[-1]:
            ax.set_xlabel("step")
    axes[0][-1].legend(fontsize=7)
    save_figure(fig, path)


def save_figure(fig, path: Path) -> None:
    """Every report plot's last step: laid out, written at 80 dpi, closed."""
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def finish_bpb_plot(fig, ax, title: str, path: Path) -> None:
    """Title, axes, grid and legend of a one-panel bits-per-byte plot; saved to path."""
    ax.set_title(title)
    ax.set_xlabel("step")
    ax.set_ylabel("bits per byte")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    save_figure(fig, path)


def bpb_plot(runs: list[Run], path: Path) -> None:
    """Bits per byte, train and val: the loss that compares runs with different tokenizers."""
    fig, ax = plt.subplots(figsize=(7, 3.8))
    for k, r in enumerate(runs):
        ax.plot(*r.series("train/bpb"), color=f"C{k}", lw=0.6, alpha=0.5)
        ax.plot(*r.series("val/bpb"), color=f"C{k}", marker="o", ms=3, label=r.label)
    finish_bpb_plot(fig, ax, "bits per byte (thin: train batches; dots: validation)", path)


def loss_plot(runs: list[Run], path: Path) -> None:
    fig, (ax_t, ax_v) = plt.subplots(1, 2, figsize=(11, 3.8))
    for k, r in enumerate(runs):
        ax_t.plot(*r.series("train/loss"), color=f"C{k}", lw=0.8, label=r.label)
        ax_v.plot(*r.series("val/loss"), color=f"C{k}", marker="o", ms=3, label=r.label)
        steps, values = r.series("val/loss_causal_eval")
        if steps:
            ax_v.plot(steps, values, color=f"C{k}", ls="--", marker="x", ms=4,
                      label=f"{r.label}, causal eval")
    ax_t.set_title("train loss")
    ax_v.set_title("val loss (dashed: the same model scored with the mask)")
    for ax in (ax_t, ax_v):
        ax.set_xlabel("step")
        ax.set_ylabel("nats")
        ax.grid(alpha=0.3)
    ax_v.legend(fontsize=7)
    save_figure(fig, path)


def write_plots(runs: list[Run], out: Path) -> list[tuple[str, str]]:
    """Every plot of the report, as (title, file name) pairs."""
    loss_plot(runs, out / "loss.png")
    bpb_plot(runs, out / "bpb.png")
    per_layer_plot(runs, ["entropy"], ["entropy (nats)"], out / "entropy.png", uniform=True)
    per_layer_plot(runs, ["max_weight"], ["largest weight per row"], out / "saturation.png")
    per_layer_plot(runs, ["score_std"], ["pre-softmax score std"], out / "score_std.png",
                   log=True)
    per_layer_plot(runs, ["max_score"], ["largest pre-softmax score"], out / "max_score.png")
    per_layer_plot(runs, ["grad_wq", "grad_wk"], ["W_q grad norm", "W_k grad norm"],
                   out / "grad_qk.png", log=True)
    plots = [("losses", "loss.png"), ("bits per byte", "bpb.png"),
             ("attention entropy", "entropy.png"), ("saturation", "saturation.png"),
             ("score spread", "score_std.png"), ("largest score", "max_score.png"),
             ("W_q and W_k gradient norms", "grad_qk.png")]
    if any(len(g) > 1 for g in by_setting(runs).values()):
        seeds_plot(runs, out / "seeds.png")
        plots.insert(0, ("val bpb over seeds", "seeds.png"))
    return plots


def seeds_plot(runs: list[Run], path: Path) -> None:
    """Validation bpb per setting: the mean over its seeds, shaded between min and max."""
    fig, ax = plt.subplots(figsize=(7, 3.8))
    for k, (name, group) in enumerate(by_setting(runs).items()):
        curves = [dict(zip(*r.series("val/bpb"), strict=True)) for r in group]
        steps = sorted(set.intersection(*(set(c) for c in curves)))
        values = [[c[s] for c in curves] for s in steps]
        ax.plot(steps, [sum(v) / len(v) for v in values], color=f"C{k}", marker="o", ms=3,
                label=f"{name} ({len(group)} seeds)")
        ax.fill_between(steps, [min(v) for v in values], [max(v) for v in values],
                        color=f"C{k}", alpha=0.2)
    finish_bpb_plot(fig, ax, "validation bits per byte: mean over seeds, shaded min-max", path)


def baseline_words(compare: dict[str, str | None]) -> str:
    if not compare:
        return "every key at its default"
    return ", ".join(f"{k}={v}" if v is not None else f"{k} at its default"
                     for k, v in sorted(compare.items()))


def write_report(sweep: Path, out: Path, compare: dict[str, str | None] | None = None) -> Path:
    """Write report.md and the plots for the sweep's runs into out; returns report.md's path.
    `compare`: key -> the value that makes a setting the baseline (None: the default's; no
    keys: every key at its default)."""
    runs = find_runs(sweep)
    if not runs:
        raise UsageError(f"no TensorBoard event files under {sweep} (pass a run or sweep folder)")
    out.mkdir(parents=True, exist_ok=True)
    plots = "\n".join(f"![{title}]({name})" for title, name in write_plots(runs, out))
    seeds = ""
    if any(len(g) > 1 for g in by_setting(runs).values()):
        seeds = f"""## Across seeds

Mean ± standard deviation over each setting's seeds (final values); p: Welch's t-test of the val
bpb against the setting's baseline: the same setting with {baseline_words(compare or {})}.
"differs": p < 0.05; with 3 seeds, "no clear difference" is what a test that cannot see small
effects says, not evidence of none.

{seeds_table(runs, compare or {})}
"""
    samples = "\n\n".join(f"**{r.label}**\n\n```\n{r.sample}\n```" for r in runs if r.sample)
    text = f"""# Sweep report: {sweep}

{len(runs)} runs. Train loss and bpb: mean of the last {TRAIN_TAIL} logged values. Val loss and
bpb: the last validation. Bits per byte (bpb) are the loss over the bytes of the text, so runs
with different tokenizers compare. Causal eval: the same weights scored with the causal mask on
(non-causal runs). Entropy, max weight and score std: the final weights on a fixed validation
batch, mean over layers and heads (entropy max: uniform attention over the keys each row sees).
Gradient norms, before clipping, mean over layers: over all logged steps (over the last quarter).

{seeds}
## Every run

{table(runs)}

{plots}

## Samples at the last validation

{samples}
"""
    path = out / "report.md"
    path.write_text(text)
    return path
