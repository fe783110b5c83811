"""The callback that logs the probes (`tinygpt.probes`) as a run trains, every `probes.every`
steps: induction scores and the in-context loss drop, the copy losses and circuit scores on the
copy task's windows, first-token mass and the sink rate, residual-stream outliers, and at the end
the int8 quantisation sensitivity (on the first `probes.int8_windows` validation windows, where
the lab asks for it), all under `watch/`."""

from __future__ import annotations

from dataclasses import dataclass

import lightning as L
import torch
from lightning.pytorch.strategies import FSDPStrategy
from lightning.pytorch.utilities import rank_zero_only
from torch.utils.data import Subset

from tinygpt import metrics as m
from tinygpt.data.config import SyntheticKind, repeat_length
from tinygpt.model.gpt import GPT
from tinygpt.probes.circuit import circuit, copy_losses, copy_windows
from tinygpt.probes.first_token import activation_outliers, first_token_mass, sink_rate
from tinygpt.probes.induction import induction_scores, repeated_tokens
from tinygpt.probes.quantize import int8_sensitivity
from tinygpt.training.callbacks import first_windows, writes_now

INDUCTION_SEED = 12_345  # the fixed repeated batch: not one any training window could be


@dataclass
class ProbeInputs:
    """The fixed inputs the probes read, built once per run: a random sequence and its copy,
    validation windows, and (where the run trains on the copy task's windows) windows built like
    those, with which of their tokens are copies."""

    repeated: torch.Tensor
    text: torch.Tensor
    copies: tuple[torch.Tensor, torch.Tensor] | None

    def to(self, device: torch.device) -> ProbeInputs:
        copies = None if self.copies is None else (self.copies[0].to(device), self.copies[1])
        return ProbeInputs(self.repeated.to(device), self.text.to(device), copies)


def probe_metrics(model: GPT, probes: ProbeInputs) -> dict[str, float]:
    """What attention does in the model, as tags: induction on `repeated` (a sequence and its
    copy), first-token mass and outliers on `text` (validation windows); and the copy task's losses
    and circuit scores per layer on the copy windows."""
    with torch.autocast(probes.text.device.type, enabled=False):
        ind = induction_scores(model, probes.repeated)
        mass = first_token_mass(model, probes.text)
        outliers = activation_outliers(model, probes.text)
    out = {m.INDUCTION_MAX: ind.induction.max().item(), m.PREVIOUS_MAX: ind.previous.max().item(),
           m.IN_CONTEXT_DROP: ind.in_context_drop, m.FIRST_TOKEN_MASS_MAX: mass.max().item(),
           m.SINK_RATE: sink_rate(mass),
           m.OUTLIER_RATIO_MAX: max(o.ratio for o in outliers)}
    for i, o in enumerate(outliers):
        out |= {m.probe_tag(m.OUTLIERS, "ratio", i): o.ratio,
                m.probe_tag(m.OUTLIERS, "kurtosis", i): o.kurtosis}
    for (group, name), values in (((m.INDUCTION, "score"), ind.induction),
                                  ((m.SINKS, "first_token_mass"), mass)):
        for i, layer in enumerate(values.tolist()):
            out |= {m.probe_tag(group, name, i, h): v for h, v in enumerate(layer)}
    if probes.copies is not None:
        losses = copy_losses(model, *probes.copies)
        induction, previous = circuit(model, *probes.copies)
        out |= {m.COPY_LOSS: losses.copy, m.REST_LOSS: losses.rest}
        for i in range(len(induction)):
            out |= {m.probe_tag(m.INDUCTION, m.COPY_SCORE, i): induction[i].max().item(),
                    m.probe_tag(m.INDUCTION, m.COPY_PREVIOUS, i): previous[i].max().item()}
    return out


class Probes(L.Callback):
    """Every `every_n_steps` optimizer steps, and at the end, logs `probe_metrics`; at the end
    also how much int8 weights and inputs cost in val bpb on `int8_windows` windows (0: not)."""

    def __init__(self, every_n_steps: int = 50, int8_windows: int = 0, num_sequences: int = 4):
        self.every_n_steps, self.num_sequences = every_n_steps, num_sequences
        self.int8_windows = int8_windows
        self.probes: ProbeInputs | None = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if isinstance(trainer.strategy, FSDPStrategy):  # sharded weights: no lone forward pass
            self.every_n_steps = 0

    def batches(self, trainer: L.Trainer, pl_module: L.LightningModule) -> ProbeInputs:
        """The fixed probes, built once, on the module's device."""
        if self.probes is None:
            model, data = pl_module.model, trainer.datamodule
            bos = data.tokenizer.eot_token if data.cfg.bos else None
            length = repeat_length(data.cfg, model.cfg.context_length)
            repeated = repeated_tokens(model.cfg.vocab_size, length, seed=INDUCTION_SEED, bos=bos)
            text = first_windows(data.val_set, self.num_sequences)
            copies = None
            if data.cfg.synthetic.kind == SyntheticKind.copies:  # built as the training ones
                copies = copy_windows(model.cfg.vocab_size, model.cfg.context_length + 1,
                                      data.cfg.synthetic)
            self.probes = ProbeInputs(repeated, text, copies)
        return self.probes.to(pl_module.device)

    @rank_zero_only
    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        step = trainer.global_step  # the weights after `step` updates, as AttentionStats
        if not self.every_n_steps or step % self.every_n_steps or trainer.logger is None:
            return
        trainer.logger.log_metrics(probe_metrics(pl_module.model,
                                                     self.batches(trainer, pl_module)), step)

    @rank_zero_only
    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.every_n_steps or not writes_now(trainer, pl_module) or trainer.fast_dev_run:
            return
        model, data = pl_module.model, trainer.datamodule
        out = probe_metrics(model, self.batches(trainer, pl_module))
        if self.int8_windows:
            token_bytes = torch.tensor(data.tokenizer.token_bytes())
            windows = Subset(data.val_set, range(min(self.int8_windows, len(data.val_set))))
            exact, rounded = int8_sensitivity(model, windows, token_bytes)
            out[m.INT8_DELTA_BPB] = rounded.bpb - exact.bpb
        trainer.logger.log_metrics(out, step=trainer.global_step)
