"""How a run looks in TensorBoard: the custom-scalars layout (losses first, one multi-line chart
per attention quantity) and the HPARAMS tab's columns (the attention maps: attention_maps.py)."""

from __future__ import annotations

import re

from lightning.pytorch.loggers import TensorBoardLogger
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams

from tinygpt import metrics as m
from tinygpt.training.config import PLUMBING, yaml_value
from tinygpt.training.settings import Settings


def exactly(*tags: str) -> list[str]:
    """Regexes that match these tags and nothing else."""
    return [f"^{re.escape(t)}$" for t in tags]


def per_layer(quantity: str) -> str:
    """A regex for <attention>/<quantity>/layer_<i>, every layer."""
    return f"^{re.escape(m.ATTENTION)}/{quantity}/layer_\\d+$"


def probe(group: str, quantity: str, heads: bool = False) -> str:
    """A regex for <group>/<quantity>/layer_<i> (or every head of every layer)."""
    head = r"/head_\d+" if heads else ""
    return rf"^{re.escape(group)}/{quantity}/layer_\d+{head}$"


def custom_scalars_layout(n_layers: int, longer_context: bool = False,
                          copies: bool = False) -> dict:
    """The Custom Scalars tab: what a run is for first (losses, bits per byte; at twice the
    context where the positions allow it), then how it trains, then what the attention does,
    each quantity one chart with a line per layer; and for a run on the copy task's windows
    (`copies`), the induction phase change."""
    def chart(*regexes: str) -> list:
        return ["Multiline", list(regexes)]

    attention = {
        "entropy per layer, nats (entropy_uniform: its maximum)": chart(
            per_layer("entropy"), *exactly(m.ENTROPY_UNIFORM)),
        "largest weight per row (1 = saturated)": chart(per_layer("max_weight")),
        "spread of the pre-softmax scores": chart(per_layer("score_std")),
        "largest pre-softmax score (attention-logit growth)": chart(per_layer("max_score")),
        "gradient norm reaching W_q": chart(per_layer("grad_wq")),
        "gradient norm reaching W_k": chart(per_layer("grad_wk")),
    }
    attention |= {f"entropy per head, layer {i}": chart(
        f"^{re.escape(m.layer_tag('entropy', i))}/head_\\d+$") for i in range(n_layers)}
    losses = {
        "loss, nats per token": chart(*exactly(m.TRAIN_LOSS, m.VAL_LOSS, m.VAL_LOSS_CAUSAL)),
        "bits per byte (comparable across tokenizers)": chart(*exactly(m.TRAIN_BPB, m.VAL_BPB)),
    }
    if longer_context:
        _, bpb_2x, bpb_2x_ref = m.long_context(2)
        losses["bits per byte at twice the context (ref: the same text at the trained one)"] = \
            chart(*exactly(bpb_2x, bpb_2x_ref))
    layout = {
        "1. losses": losses,
        "2. training": {
            "learning rate": chart(*exactly(m.TRAIN_LR)),
            "gradient norm before clipping": chart(*exactly(m.TRAIN_GRAD_NORM)),
            "tokens per second": chart(*exactly(m.TOKENS_PER_SEC)),
            "model FLOPs utilisation": chart(*exactly(m.MFU)),
        },
        "3. attention": attention,
        "4. what attention does": {
            "induction: best head's score, previous-token score": chart(
                *exactly(m.INDUCTION_MAX, m.PREVIOUS_MAX)),
            "in-context loss drop on a repeated sequence, nats": chart(
                *exactly(m.IN_CONTEXT_DROP)),
            "induction score per head": chart(probe(m.INDUCTION, "score", heads=True)),
            "first-token mass: largest head, sink rate (heads above 0.3)": chart(
                *exactly(m.FIRST_TOKEN_MASS_MAX, m.SINK_RATE)),
            "first-token mass per head": chart(probe(m.SINKS, "first_token_mass", heads=True)),
            "residual stream: largest |activation| / median, per layer": chart(
                probe(m.OUTLIERS, "ratio")),
            "residual stream kurtosis per layer": chart(probe(m.OUTLIERS, "kurtosis")),
            "int8 weights and inputs: val bpb minus float": chart(*exactly(m.INT8_DELTA_BPB)),
        },
    }
    if copies:
        layout["5. the induction phase change"] = {
            "loss on copied tokens and on the rest (the bump), nats": chart(
                *exactly(m.COPY_LOSS, m.REST_LOSS, m.TRAIN_LOSS)),
            "best induction score per layer": chart(probe(m.INDUCTION, m.COPY_SCORE)),
            "best previous-token score per layer": chart(probe(m.INDUCTION, m.COPY_PREVIOUS)),
        }
    return layout


def hyperparameters(settings: Settings, precision: str) -> dict:
    """The HPARAMS columns of a run: what its overrides set (a key's value as the run has it, a
    group's option by name: `experiment: copy_task`) and the precision it trained in. TensorBoard
    sorts the columns by name and shows the first five, then the metrics: keys nobody changed
    would crowd out the ones that tell runs apart (the whole config is in the run's
    .hydra/config.yaml). Booleans read true/false, not 1.0/0.0; numbers stay numbers."""
    columns: dict[str, object] = {}
    for word in settings.overrides:
        key, _, option = word.lstrip("+~").partition("=")
        if key in PLUMBING or key.startswith("hydra."):
            continue
        value = settings.record.get(key, option)  # a group's option is not a key of the record
        plain = isinstance(value, int | float | str) and not isinstance(value, bool)
        columns[key] = value if plain else yaml_value(value)
    return columns | {"precision": precision}


def write_hparams(logger: object, params: dict) -> None:
    """The HPARAMS tab's row for this run: its columns, and as its metrics the final values of
    the runs' own loss series (no copies of them under other names). Rank 0 only: the others
    have no writer."""
    writer = getattr(logger, "experiment", None)
    if not isinstance(writer, SummaryWriter):  # fast_dev_run's dummy logger, or another rank
        return
    for part in hparams(params, dict.fromkeys(m.HPARAM_METRICS, 0.0)):
        writer.file_writer.add_summary(part)


class RunLogger(TensorBoardLogger):
    """Lightning's TensorBoard logger, events straight into the run directory, without the
    `epoch` series Lightning adds for convenience: the runs count steps, and an `epoch` group
    would sort before the losses and take one of the groups the Time Series tab opens."""

    def __init__(self, run_dir: str) -> None:
        super().__init__(save_dir=run_dir, name="", version="", default_hp_metric=False)

    def log_metrics(self, metrics: dict, step: int | None = None) -> None:
        super().log_metrics({k: v for k, v in metrics.items() if k != "epoch"}, step)
