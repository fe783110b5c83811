"""A sweep's report from its TensorBoard events: a table and plots, one line per run.

`write_report(sweep, out)` (what `tinygpt-report` runs) writes report.md (final losses,
causal-eval loss, attention entropy and saturation, W_q/W_k gradient norms, each run's last
sample) and loss.png, entropy.png, saturation.png, score_std.png, grad_qk.png. Runs are labelled
by the overrides that tell them apart.
"""

from __future__ import annotations

from pathlib import Path

from tinygpt.errors import UsageError
from tinygpt.lab.report.formation import formation_table
from tinygpt.lab.report.plots import write_plots
from tinygpt.lab.report.runs import TRAIN_TAIL, by_setting, find_runs
from tinygpt.lab.report.tables import baseline_words, phenomena_table, seeds_table, table


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
    phenomena = phenomena_table(runs, compare or {})
    if phenomena:
        seeds += f"""
## What attention does

At the end of each run (docs/attention_lab.md says how each is measured):
induction and previous-token scores on a random sequence and its copy, the in-context loss drop
(first copy minus the copy), first-token mass on validation text and the share of heads above
0.3, the residual stream's largest |activation| over its median, and the val bpb that int8
weights and inputs add. Mean ± sd over seeds; p: Welch's t-test against the baseline above.

{phenomena}
"""
    formation = formation_table(runs, compare or {})
    if formation:
        seeds += f"""
## The induction phase change

On the copy task (docs/attention_lab.md): on a fixed batch of windows built like the training
ones (random tokens, then chunks copied from them), the loss on the copied tokens and on the
rest; "formed at": the step the copy loss first fell below half its first logged value (half way
from no copying to perfect copying; never: it did not); the best head's induction score in layer
1 and previous-token score in layer 0 at the end. Mean ± sd over seeds (the step over the seeds
that formed it); p: Welch's t-test against the baseline above.

{formation}
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
