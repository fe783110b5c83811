"""How a training process ends: without tearing the interpreter down."""

from __future__ import annotations

import atexit
import os
import sys
from typing import NoReturn


def exit_now(code: int | str | None = 0) -> NoReturn:
    """Exit with `code` as sys.exit would (None: 0, a message: printed, 1), after flushing and
    running the atexit handlers, but without Python freeing every module one by one: about a
    second once torch and Lightning are loaded, with nothing left to write by then."""
    if code is not None and not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    atexit._run_exitfuncs()  # logging's final flush, weakref finalizers, child processes
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(code or 0)
