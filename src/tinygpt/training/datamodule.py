"""The LightningDataModule: a corpus' windows (`tinygpt.data.windows`) served to each rank in the
resumable order, with the global batch split over devices and accumulation steps."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch.utils.data import DataLoader, Dataset, Sampler

from tinygpt.data.config import DataConfig
from tinygpt.data.tokenizer import Tokenizer
from tinygpt.data.windows import ResumableSampler, TokenSplit, load_split
from tinygpt.errors import UsageError


class ResumableLoader(DataLoader):
    """A DataLoader whose place in the stream travels in Lightning's checkpoint (its stateful-
    loader interface, `state_dict` / `load_state_dict`): a resumed run goes on with the next
    sample, and Lightning knows the loader resumes exactly."""

    def __init__(self, *args, position: Callable[[], int], **kwargs):
        super().__init__(*args, **kwargs)
        self.position = position  # samples consumed so far on this rank

    def state_dict(self) -> dict[str, int]:
        return {"position": self.position()}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.sampler.start = state["position"]


class TextDataModule(L.LightningDataModule):
    """Tokenised corpus split by a contiguous fraction into training and validation windows,
    served `per_device_batch` sequences at a time: `cfg.batch_size`, the global batch, over the
    devices and accumulation steps (`split_batch`); encoded by `tokenizer` where one is given
    (a pretrained model's), else by the one cfg names."""

    def __init__(self, cfg: DataConfig, context_length: int, per_device_batch: int | None = None,
                 seed: int = 0, tokenizer: Tokenizer | None = None):
        super().__init__()
        self.cfg, self.context_length, self.seed = cfg, context_length, seed
        self.given_tokenizer = tokenizer
        self.per_device_batch = per_device_batch or cfg.batch_size  # None: one device
        self.split: TokenSplit | None = None

    def load(self) -> TokenSplit:
        """Read, tokenise (or hit the cache) and split; safe to call more than once."""
        if self.split is None:
            self.split = load_split(self.cfg, self.context_length, self.given_tokenizer)
        return self.split

    # What the split holds, as the module's own attributes (the Trainer's callbacks read them).
    name = property(lambda self: self.load().name)
    tokenizer = property(lambda self: self.load().tokenizer)
    train_ids = property(lambda self: self.load().train_ids)
    val_ids = property(lambda self: self.load().val_ids)
    train_set = property(lambda self: self.load().train_set)
    val_set = property(lambda self: self.load().val_set)

    def setup(self, stage: str | None = None) -> None:
        self.load()
        t = self.trainer
        if t is not None and (t.world_size > 1 or t.accumulate_grad_batches > 1):
            rank_zero_info(f"global batch {self.cfg.batch_size} sequences = {t.world_size} "
                           f"device(s) x {t.accumulate_grad_batches} accumulation step(s) x "
                           f"{self.per_device_batch} sequences")

    def train_dataloader(self) -> DataLoader:
        t = self.trainer
        rank, world = (t.global_rank, t.world_size) if t is not None else (0, 1)
        b = self.per_device_batch
        sampler = ResumableSampler(len(self.train_set), b, self.seed, rank, world)

        def consumed() -> int:  # the samples the finished steps took from this rank's stream
            return t.global_step * t.accumulate_grad_batches * b if t is not None else 0

        # A checkpoint from before the loader kept its own state resumes from the step count.
        sampler.start = consumed()
        return self._loader(self.train_set, sampler=sampler, position=consumed)

    def val_dataloader(self) -> DataLoader:
        # Each rank scores every world_size-th window (no padding, no duplicates): the union is
        # the whole validation set, and the token-weighted mean across ranks is exact.
        t = self.trainer
        rank, world = (t.global_rank, t.world_size) if t is not None else (0, 1)
        return self._loader(self.val_set, sampler=range(rank, len(self.val_set), world))

    def _loader(self, dataset: Dataset, sampler: Sampler | None = None,
                position: Callable[[], int] | None = None) -> DataLoader:
        on_gpu = self.trainer is not None and self.trainer.strategy.root_device.type == "cuda"
        workers = self.cfg.num_workers
        kind = DataLoader if position is None else partial(ResumableLoader, position=position)
        return kind(
            dataset, batch_size=self.per_device_batch, sampler=sampler,
            num_workers=workers, persistent_workers=workers > 0, pin_memory=on_gpu,
            # A loader of its own draws its worker seed from this, not from the global RNG,
            # which training's dropout must find in the same state after a resume.
            generator=torch.Generator().manual_seed(self.seed),
        )


def split_batch(batch_size: int, world_size: int, accumulate: int) -> int:
    """Sequences per device and micro-step for a global batch of batch_size sequences."""
    per_device, rest = divmod(batch_size, world_size * accumulate)
    if rest or per_device == 0:
        raise UsageError(
            f"data.batch_size={batch_size} (sequences per step, all devices) is not a multiple "
            f"of devices x accumulate_grad_batches = {world_size * accumulate} "
            "(change one of them)")
    return per_device
