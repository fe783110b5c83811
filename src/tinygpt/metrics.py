"""The one home of every metric's name (TensorBoard tags, report columns) and of bits per byte.

Tags are what the README documents and what TensorBoard, `report.py` and the tests read back, so
each is spelt once, here. The losses are `train/` and `val/`; everything else a run logs sits under
`watch/`, which sorts after them: TensorBoard's Time Series tab orders its groups by name and opens
the first two, so it opens on the losses.
"""

from __future__ import annotations

import math

TRAIN_LOSS = "train/loss"
TRAIN_BPB = "train/bpb"
TRAIN_LR = "train/lr"
TRAIN_GRAD_NORM = "train/grad_norm"  # the 2-norm of all gradients, before clipping
TOKENS_PER_SEC = "train/tokens_per_sec"
MFU = "train/mfu"
SKIPPED_BATCHES = "train/skipped_batches"
VAL_PREFIX = "val/"
VAL_LOSS = f"{VAL_PREFIX}loss"
VAL_PPL = "val/ppl"
VAL_BPB = "val/bpb"
VAL_LOSS_CAUSAL = "val/loss_causal_eval"  # a model trained without the mask, scored with it
WATCH = "watch"  # what to watch besides the losses
GRAD_NORM = f"{WATCH}/grad_norm"  # .../<parameter path>: each parameter's, now and then
# The HPARAMS tab's metric columns: the final values of these series.
HPARAM_METRICS = (VAL_BPB, VAL_LOSS, TRAIN_LOSS)
SAMPLES = "samples/text"
ATTENTION = f"{WATCH}/attention"  # .../<quantity>/layer_<i>[/head_<j>] and the maps
ENTROPY_UNIFORM = f"{ATTENTION}/entropy_uniform"
KV_CACHE_BYTES = f"{ATTENTION}/kv_cache_bytes_per_token"
GENERATE_TOKENS_PER_SEC = f"{ATTENTION}/generate_tokens_per_sec"


def long_context(factor: int) -> tuple[str, str, str]:
    """Loss and bpb at `factor` times the context, and the same text's bpb at 1x."""
    return f"val/loss_{factor}x", f"val/bpb_{factor}x", f"val/bpb_{factor}x_ref"


def layer_tag(quantity: str, layer: int, head: int | None = None) -> str:
    """attention/<quantity>/layer_<i>, or .../head_<j> for one head."""
    tag = f"{ATTENTION}/{quantity}/layer_{layer}"
    return tag if head is None else f"{tag}/head_{head}"


def attention_map_tag(layer: int) -> str:
    return f"{ATTENTION}/layer_{layer}"


def bits_per_byte(nats: float, nbytes: int) -> float:
    """A summed loss in nats over the bytes of the text it predicted: comparable across
    tokenizers, unlike nats per token."""
    return nats / nbytes / math.log(2)

# What attention does (tinygpt.probes.induction, .first_token, .quantize)
INDUCTION = f"{WATCH}/induction"  # .../score/layer_<i>/head_<j>, .../score_max, ...
INDUCTION_MAX = f"{INDUCTION}/score_max"
PREVIOUS_MAX = f"{INDUCTION}/previous_token_max"
IN_CONTEXT_DROP = f"{INDUCTION}/in_context_drop"  # nats per token: first copy minus the copy
# The induction circuit on the copy task's windows (tinygpt.probes.circuit)
COPY_LOSS = f"{INDUCTION}/copy_loss"  # nats per copied token (from the segment's second occurrence)
REST_LOSS = f"{INDUCTION}/rest_loss"  # nats per token of each segment's first occurrence
COPY_SCORE = "copy_score_max"  # .../layer_<i>: the layer's best induction score on those windows
COPY_PREVIOUS = "copy_previous_max"  # .../layer_<i>: its best previous-token score
SINKS = f"{WATCH}/sinks"  # .../first_token_mass/layer_<i>/head_<j>, .../rate
FIRST_TOKEN_MASS_MAX = f"{SINKS}/first_token_mass_max"
SINK_RATE = f"{SINKS}/rate"
OUTLIERS = f"{WATCH}/outliers"  # .../ratio/layer_<i>, .../kurtosis/layer_<i>
OUTLIER_RATIO_MAX = f"{OUTLIERS}/ratio_max"
INT8_DELTA_BPB = f"{WATCH}/quantisation/int8_delta_bpb"  # val bpb with int8 minus in float


def probe_tag(group: str, quantity: str, layer: int, head: int | None = None) -> str:
    """<group>/<quantity>/layer_<i>[/head_<j>], e.g. watch/sinks/first_token_mass/layer_0."""
    tag = f"{group}/{quantity}/layer_{layer}"
    return tag if head is None else f"{tag}/head_{head}"
