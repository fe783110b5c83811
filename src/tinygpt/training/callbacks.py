"""What a run logs beside its losses, at each validation or every few steps: text samples,
attention maps, the longer-context score, attention statistics, the custom-scalars layout."""

from __future__ import annotations

import time

import lightning as L
import torch
from lightning.pytorch.strategies import FSDPStrategy
from lightning.pytorch.utilities import rank_zero_only, rank_zero_warn
from torch.utils.tensorboard import SummaryWriter

from tinygpt import metrics
from tinygpt.data.config import SyntheticKind
from tinygpt.data.windows import TokenSplit
from tinygpt.errors import UsageError
from tinygpt.metrics import layer_tag
from tinygpt.model.config import SampleConfig
from tinygpt.model.generate import generate
from tinygpt.model.gpt import attention_overrides, evaluating
from tinygpt.probes.attention import (
    attention_stats,
    qk_grad_norms,
    uniform_entropy,
    with_weights,
)
from tinygpt.probes.evaluate import longer_context
from tinygpt.training.attention_maps import HeatmapFrame, image_summary, token_label
from tinygpt.training.tensorboard_layout import custom_scalars_layout


def writes_now(trainer: L.Trainer, pl_module: L.LightningModule) -> bool:
    """Whether a measurement made now belongs in the run's events: a logger to write it, not the
    sanity check before training, and a model that has not stopped on a NaN loss."""
    return not (trainer.sanity_checking or trainer.logger is None or pl_module.stopped_on_nan)


def readable_prompt(prompt: str, data: TokenSplit) -> str:
    """The prompt the run samples from: `prompt` where this run's tokenizer can read it, else the
    start of the validation text (said once, as training starts, not found out after it)."""
    try:
        data.tokenizer.encode(prompt)
        return prompt
    except UsageError as e:
        reason = str(e).split(" (")[0]
    start = data.tokenizer.decode(data.val_ids[:24].tolist())
    fallback = start.split("\n")[0] or start
    rank_zero_print(f"sample.prompt={prompt!r} cannot be read by this run's tokenizer ({reason}); "
                    f"sampling from the validation text's start, {fallback!r}, instead")
    return fallback


@rank_zero_only
def rank_zero_print(text: str) -> None:
    """A line for the user, once per run (rank 0)."""
    print(text, flush=True)


class SampleText(L.Callback):
    """At each validation, logs a continuation of a fixed prompt under `samples/` (`prompt`: the
    one it samples from, once the data is known; `last`: the latest continuation)."""

    def __init__(self, cfg: SampleConfig, seed: int = 0):
        self.cfg, self.seed = cfg, seed
        self.prompt = cfg.prompt
        self.last: str | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.prompt = readable_prompt(self.cfg.prompt, trainer.datamodule.load())

    @rank_zero_only
    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not writes_now(trainer, pl_module):
            return
        tok, c = pl_module.tokenizer, self.cfg
        prompt_ids = tok.encode(self.prompt) or [tok.eot_token or 0]
        idx = torch.tensor([prompt_ids], device=pl_module.device)
        gen = torch.Generator(device=pl_module.device).manual_seed(self.seed)
        out = generate(pl_module.model, idx, c.max_new_tokens, c.temperature, c.top_k,
                       generator=gen)
        self.last = tok.decode(out[0].tolist())
        # Markdown would eat the text's newlines and indentation: show it as a code block.
        text = "    " + self.last.replace("\n", "\n    ")
        trainer.logger.experiment.add_text(metrics.SAMPLES, text, trainer.global_step)


class AttentionMaps(L.Callback):
    """At each validation, logs the first and last layer's attention weights for a fixed input
    as labelled heatmaps, one per head (`attention/layer_<i>`: the tag names the layer, the
    step is TensorBoard's, so every map shares one frame, drawn at the first validation)."""

    def __init__(self, num_tokens: int = 32):
        self.num_tokens = num_tokens
        self.frame: HeatmapFrame | None = None

    @rank_zero_only
    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        writer = getattr(trainer.logger, "experiment", None)
        # not under fast_dev_run's dummy logger, which writes nothing
        if (not self.num_tokens or not writes_now(trainer, pl_module)
                or not isinstance(writer, SummaryWriter)):
            return
        x = trainer.datamodule.val_set[0][0][: self.num_tokens][None].to(pl_module.device)
        model = pl_module.model
        with evaluating(model), torch.no_grad(), attention_overrides(model, backend="manual"):
            _, weights = with_weights(model, x)
        tok = pl_module.tokenizer
        labels = [token_label(tok.decode([t])) for t in x[0].tolist()]
        if self.frame is None:
            self.frame = HeatmapFrame(weights[0].shape[1], labels)
        for i in sorted({0, len(weights) - 1}):
            summary = image_summary(metrics.attention_map_tag(i), self.frame.paint(weights[i][0]))
            writer.file_writer.add_summary(summary, trainer.global_step)


class LongContextEval(L.Callback):
    """At each validation, for positions that are not a learned table (rope, alibi, none): the
    validation text in windows `factor` times the training context (`val/loss_2x`, `val/bpb_2x`)
    and the same tokens in windows of the training context (`val/bpb_2x_ref`). Does the model
    use the longer context, or break?"""

    def __init__(self, factor: int = 2):
        self.factor = factor

    @rank_zero_only
    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        model = pl_module.model
        if (not writes_now(trainer, pl_module) or not model.reaches_beyond_context
                or isinstance(trainer.strategy, FSDPStrategy)):
            return
        with torch.autocast(pl_module.device.type, enabled=False):
            scores = longer_context(model, trainer.datamodule.val_ids,
                                    pl_module.token_bytes.cpu(), self.factor)
        if scores is None:
            return
        long, ref = scores
        tags = metrics.long_context(self.factor)
        trainer.logger.log_metrics(dict(zip(tags, (long.nats_per_token, long.bpb, ref.bpb),
                                            strict=True)), step=trainer.global_step)


class TensorBoardLayout(L.Callback):
    """Writes the Custom Scalars layout (`tensorboard_layout`) once, when training starts."""

    @rank_zero_only
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        writer = getattr(trainer.logger, "experiment", None)
        if hasattr(writer, "add_custom_scalars"):  # not under fast_dev_run's dummy logger
            model = pl_module.model
            writer.add_custom_scalars(custom_scalars_layout(
                len(model.blocks), longer_context=model.reaches_beyond_context,
                copies=trainer.datamodule.cfg.synthetic.kind == SyntheticKind.copies))


def generation_speed(model: torch.nn.Module, new_tokens: int = 64, batch: int = 4) -> float:
    """Tokens per second of greedy generation with the KV cache, from a one-token prompt."""
    idx = torch.zeros(batch, 1, dtype=torch.long, device=next(model.parameters()).device)
    with torch.autocast(idx.device.type, enabled=False):
        start = time.perf_counter()
        generate(model, idx, new_tokens, temperature=0)
        return batch * new_tokens / (time.perf_counter() - start)


def first_windows(windows, n: int) -> torch.Tensor:
    """The inputs of the first n windows (fewer if there are fewer): a fixed probe batch."""
    return torch.stack([windows[i][0] for i in range(min(n, len(windows)))])


class AttentionStats(L.Callback):
    """Every `every_n_steps`, logs how each layer's attention behaves on a fixed validation
    batch, and the gradient that reaches its W_q and W_k (before clipping), all under
    `attention/`: entropy/layer_i (nats; entropy_uniform is its maximum) and
    entropy/layer_i/head_j, max_weight/layer_i (1.0 = saturated), score_std/layer_i (spread
    of the pre-softmax scores), grad_wq/layer_i, grad_wk/layer_i."""

    def __init__(self, every_n_steps: int = 50, num_sequences: int = 4):
        self.every_n_steps, self.num_sequences = every_n_steps, num_sequences
        self._idx: torch.Tensor | None = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.every_n_steps and isinstance(trainer.strategy, FSDPStrategy):
            # Sharded weights: a forward pass on one rank alone would wait for the others.
            rank_zero_warn("attention statistics are off under FSDP (probes.every=0)")
            self.every_n_steps = 0
        if trainer.is_global_zero and trainer.logger is not None:  # a constant of the shape
            cfg = pl_module.model.cfg
            trainer.logger.log_metrics(
                {metrics.KV_CACHE_BYTES: cfg.kv_cache_bytes_per_token()}, step=0)

    @rank_zero_only
    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        step = trainer.global_step  # the weights these gradients belong to: `step` updates done
        if not self.every_n_steps or step % self.every_n_steps or trainer.logger is None:
            return
        out: dict[str, float] = {}
        for i, (g_q, g_k) in enumerate(qk_grad_norms(pl_module.model) or []):
            out |= {layer_tag("grad_wq", i): g_q, layer_tag("grad_wk", i): g_k}
        trainer.logger.log_metrics(out | self._attention_metrics(trainer, pl_module), step)

    @rank_zero_only
    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # The final weights too, so a run's last point describes the model it ends with; and
        # how fast they generate with their KV cache (what fewer kv heads should buy). Not in a
        # fast_dev_run, whose logger keeps nothing.
        if self.every_n_steps and writes_now(trainer, pl_module) and not trainer.fast_dev_run:
            out = self._attention_metrics(trainer, pl_module)
            out[metrics.GENERATE_TOKENS_PER_SEC] = generation_speed(pl_module.model)
            trainer.logger.log_metrics(out, step=trainer.global_step)

    def _attention_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict:
        if self._idx is None:
            self._idx = first_windows(trainer.datamodule.val_set, self.num_sequences)
        model = pl_module.model
        with torch.autocast(pl_module.device.type, enabled=False):  # statistics in full precision
            stats = attention_stats(model, self._idx.to(pl_module.device))
        causal = model.blocks[0].attn.switches.causal
        out = {metrics.ENTROPY_UNIFORM: uniform_entropy(self._idx.shape[1], causal)}
        for i, st in enumerate(stats):
            out |= {
                layer_tag("entropy", i): st.entropy.mean().item(),
                layer_tag("max_weight", i): st.max_weight.mean().item(),
                layer_tag("score_std", i): st.score_std.mean().item(),
                layer_tag("max_score", i): st.max_score,
            }
            out |= {layer_tag("entropy", i, h): e for h, e in enumerate(st.entropy.tolist())}
        return out
