"""A sweep report's plots, one line per run (or per setting over its seeds): losses, bits per
byte, and each attention quantity per layer."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from tinygpt import metrics as m
from tinygpt.lab.report.runs import Run, by_setting


def subplots(*grid: int, figsize: tuple[float, float], **kw: object) -> tuple[Figure, object]:
    """A figure of its own and its axes: pyplot's subplots without pyplot's global state (its
    backend stays whatever the caller's is, a notebook's included)."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(*grid, **kw)


def per_layer_plot(runs: list[Run], names: list[str], ylabels: list[str], path: Path,
                   log: bool = False, uniform: bool = False) -> None:
    """One row per quantity, one column per layer, one line per run."""
    n_layers = max(r.layers() for r in runs) or 1
    fig, axes = subplots(len(names), n_layers, figsize=(3.6 * n_layers, 3.0 * len(names)),
                             squeeze=False, sharex=True)
    for row, (name, ylabel) in enumerate(zip(names, ylabels, strict=True)):
        for i in range(n_layers):
            ax = axes[row][i]
            for k, r in enumerate(runs):
                ax.plot(*r.series(m.layer_tag(name, i)), color=f"C{k}", label=r.label)
                if uniform:
                    ax.plot(*r.series(m.ENTROPY_UNIFORM), color=f"C{k}", ls=":", lw=1)
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
    fig, ax = subplots(figsize=(7, 3.8))
    for k, r in enumerate(runs):
        ax.plot(*r.series(m.TRAIN_BPB), color=f"C{k}", lw=0.6, alpha=0.5)
        ax.plot(*r.series(m.VAL_BPB), color=f"C{k}", marker="o", ms=3, label=r.label)
    finish_bpb_plot(fig, ax, "bits per byte (thin: train batches; dots: validation)", path)


def loss_plot(runs: list[Run], path: Path) -> None:
    fig, (ax_t, ax_v) = subplots(1, 2, figsize=(11, 3.8))
    for k, r in enumerate(runs):
        ax_t.plot(*r.series(m.TRAIN_LOSS), color=f"C{k}", lw=0.8, label=r.label)
        ax_v.plot(*r.series(m.VAL_LOSS), color=f"C{k}", marker="o", ms=3, label=r.label)
        steps, values = r.series(m.VAL_LOSS_CAUSAL)
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
    if any(r.series(m.INDUCTION_MAX)[0] for r in runs):
        panels_plot(runs, PHENOMENA_PANELS, out / "phenomena.png")
        plots.insert(0, ("what attention does", "phenomena.png"))
    if any(r.series(m.COPY_LOSS)[0] for r in runs):
        panels_plot(runs, PHASE_PANELS, out / "phase_change.png")
        plots.insert(0, ("the induction phase change", "phase_change.png"))
    return plots


# The copy task's quantities: the phase change is the copy loss's sudden fall, the circuit's scores
# rising with it.
PHASE_PANELS = ((m.COPY_LOSS, "loss on copied tokens (nats)"),
                (m.REST_LOSS, "loss on the rest (nats)"),
                (m.probe_tag(m.INDUCTION, m.COPY_SCORE, 1), "induction score, layer 1"),
                (m.probe_tag(m.INDUCTION, m.COPY_PREVIOUS, 0), "previous-token score, layer 0"))
PHENOMENA_PANELS = ((m.INDUCTION_MAX, "induction score, best head"),
                    (m.IN_CONTEXT_DROP, "in-context loss drop (nats)"),
                    (m.FIRST_TOKEN_MASS_MAX, "first-token mass, largest head"),
                    (m.OUTLIER_RATIO_MAX, "outlier ratio, largest layer"))


def panels_plot(runs: list[Run], panels: tuple[tuple[str, str], ...], path: Path) -> None:
    """A panel per quantity over training, a line per setting: the mean over its seeds, shaded
    between min and max (a phase change shows as a step); runs that did not log a quantity (a
    one-layer model has no layer 1) are left out of its panel."""
    fig, axes = subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6))
    for ax, (tag, title) in zip(axes, panels, strict=True):
        for k, (name, group) in enumerate(by_setting(runs).items()):
            logged = [r for r in group if r.series(tag)[0]]
            if logged:
                mean_band(ax, logged, tag, f"C{k % 10}", name)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[-1].legend(fontsize=6)
    save_figure(fig, path)


def seeds_plot(runs: list[Run], path: Path) -> None:
    """Validation bpb per setting: the mean over its seeds, shaded between min and max."""
    fig, ax = subplots(figsize=(7, 3.8))
    for k, (name, group) in enumerate(by_setting(runs).items()):
        mean_band(ax, group, m.VAL_BPB, f"C{k}", f"{name} ({len(group)} seeds)", marker="o",
                  ms=3)
    finish_bpb_plot(fig, ax, "validation bits per byte: mean over seeds, shaded min-max", path)


def mean_band(ax, group: list[Run], tag: str, color: str, label: str, **style) -> None:
    """One setting's series: the mean over its seeds, shaded between their min and max, at the
    steps every seed logged."""
    curves = [dict(zip(*r.series(tag), strict=True)) for r in group]
    steps = sorted(set.intersection(*(set(c) for c in curves)))
    values = [[c[s] for c in curves] for s in steps]
    ax.plot(steps, [sum(v) / len(v) for v in values], color=color, label=label, **style)
    ax.fill_between(steps, [min(v) for v in values], [max(v) for v in values], color=color,
                    alpha=0.2)
