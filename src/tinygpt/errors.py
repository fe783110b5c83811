"""The errors a user can cause and fix, and the one way every entry point reports them: one
`error:` line on stderr and exit 2. Anything else is a bug and keeps its traceback."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from enum import Enum
from typing import NoReturn, TypeVar

E = TypeVar("E", bound=Enum)

USAGE_EXIT = 2  # what a shell sees for a mistake in the input (as argparse uses it)


class UsageError(ValueError):
    """Bad input a user can fix: a config value, a corpus, a checkpoint, a prompt. The message
    says what is wrong and, in parentheses, how to fix it."""


class RunStopped(UsageError):
    """A run that trained, then stopped on something the user can fix (a NaN loss): its folder,
    events and checkpoints stay."""


class StoppedAtOnce(BaseException):
    """A second stop signal while a run was stopping: it ends now, past Lightning's handling of
    errors (a BaseException, as KeyboardInterrupt is; Lightning turns that one into exit 1)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def unknown_choice(setting: str, valid: Iterable[str]) -> UsageError:
    """The error for `setting` (key=value, as the user wrote it) naming what it may be."""
    return UsageError(f"{setting} is unknown (use one of {', '.join(valid)})")


def missing_file(what: str, path: object) -> UsageError:
    """The error for a file the user named that is not there."""
    return UsageError(f"{what} {path} does not exist (check the path)")


def not_utf8(name: object, error: UnicodeDecodeError, offset: int = 0) -> UsageError:
    """The error for a text file that is not UTF-8 (`offset`: of the bytes `error` read)."""
    return UsageError(f"{name} is not UTF-8 text: {error.reason} at byte "
                      f"{offset + error.start} (convert it, e.g. iconv -t utf-8)")


def parse_choice(kind: type[E], value: object, key: str) -> E:
    """`value` as a member of the enum `kind`, or a UsageError that lists the valid choices."""
    try:
        return kind(value)
    except ValueError:
        raise unknown_choice(f"{key}={value!r}", (m.value for m in kind)) from None


def print_error(error: UsageError | str) -> None:
    """The one line a user sees for a mistake."""
    print(f"error: {error}", file=sys.stderr, flush=True)


def exit_usage(error: UsageError | str) -> NoReturn:
    """Print the error line and exit 2."""
    print_error(error)
    sys.exit(USAGE_EXIT)


@contextmanager
def usage_errors_exit() -> Iterator[None]:
    """Inside an entry point: a UsageError becomes the error line and exit 2."""
    try:
        yield
    except UsageError as e:
        exit_usage(e)
