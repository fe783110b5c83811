"""A quiet start: a run prints the project's lines, not its dependencies' advice. Installed by the
entry point where a run starts (`tinygpt-train`), so a library user keeps every warning."""

from __future__ import annotations

import logging
import re
import warnings

# Deprecations raised inside these packages are for their own maintainers, not for a user.
DEPENDENCIES = r"(lightning|lightning_fabric|pytorch_lightning|torch|torchmetrics|tensorboard" \
               r"|hydra|omegaconf)(\.|$)"
# Lightning's info lines a user cannot act on: an advertisement, devices this machine does not
# have, why fit stopped and which precision it uses (the run's own lines say both).
LIGHTNING_CHATTER = re.compile(r"💡 Tip|\w+ available: False|`Trainer\.fit` stopped: `max_steps="
                               r"|Using \w+ Automatic Mixed Precision")


class _DropChatter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not LIGHTNING_CHATTER.match(record.getMessage())


_DROP_CHATTER = _DropChatter()
_PLAIN = logging.StreamHandler()  # to stderr, as Lightning's own
_PLAIN.setFormatter(logging.Formatter("%(message)s"))


def quiet_dependencies() -> None:
    """Silence the dependencies' deprecations and chatter; the project's own warnings stay."""
    for category in (DeprecationWarning, FutureWarning):
        warnings.filterwarnings("ignore", category=category, module=DEPENDENCIES)
    # The summary still counts every parameter; only its size estimate assumes 32 bits.
    warnings.filterwarnings("ignore", message=r"Precision .* is not supported by the model summ")
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logging.getLogger(name).addFilter(_DROP_CHATTER)
    # Lightning's lines through one plain handler of their own: passed on to Hydra's as well,
    # each came out twice (once under Hydra's date-and-name prefix). After Lightning loads,
    # which gives its logger a handler of its own where the root logger has none.
    import lightning.pytorch  # noqa: F401

    for name in ("lightning.pytorch", "lightning.fabric"):
        logger = logging.getLogger(name)
        logger.handlers, logger.propagate = [_PLAIN], False
