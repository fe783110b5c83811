"""The errors a user can cause and fix: entry points print them as one `error:` line and exit 2;
anything else is a bug and keeps its traceback."""

from __future__ import annotations

from enum import Enum
from typing import TypeVar

E = TypeVar("E", bound=Enum)


class UsageError(ValueError):
    """Bad input a user can fix: a config value, a corpus, a checkpoint, a prompt. The message
    says what is wrong and, in parentheses, how to fix it."""


def parse_choice(kind: type[E], value: object, key: str) -> E:
    """`value` as a member of the enum `kind`, or a UsageError that lists the valid choices."""
    try:
        return kind(value)
    except ValueError:
        valid = ", ".join(m.value for m in kind)
        raise UsageError(f"{key}={value!r} is unknown (use one of {valid})") from None
