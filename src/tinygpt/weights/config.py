"""The settings of the commands that use a saved model: `tinygpt-generate` and
`tinygpt-export-hf`. Plain dataclasses, no torch: the command is checked before torch loads."""

from __future__ import annotations

from dataclasses import dataclass

from tinygpt.model.config import SampleConfig


@dataclass
class GenerateConfig(SampleConfig):
    """scripts/generate.py's settings: a checkpoint (or a Hugging Face GPT-2 directory) and how
    to sample from it."""

    ckpt: str = "???"  # required
    max_new_tokens: int = 200
    top_p: float | None = None
    seed: int = 0
    use_cache: bool = True
    device: str = "auto"


@dataclass
class ExportConfig:
    """scripts/export_hf.py's settings."""

    ckpt: str = "???"  # required: a training checkpoint
    out: str = "???"  # required: the directory to write
    overwrite: bool = False
