"""Settings an entry point cannot run without (`???` in its config), asked for by name."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from tinygpt.errors import UsageError


def require(cfg: DictConfig, *keys: str, example: str) -> None:
    """A UsageError naming each required setting left unset, with an example command line."""
    missing = [k for k in keys if OmegaConf.is_missing(cfg, k)]
    if missing:
        raise UsageError(f"{' and '.join(missing)} must be given (e.g. {example})")
