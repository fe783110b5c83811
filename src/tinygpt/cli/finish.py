"""How a training process ends: without tearing the interpreter down."""

from __future__ import annotations

import atexit
import os
import sys
from typing import NoReturn


def exit_now(code: int | str | None = 0) -> NoReturn:
    """Exit with `code` as sys.exit would (None: 0, a message: printed, 1), after flushing and
    running the atexit handlers, but without Python freeing every module one by one, with
    nothing left to write by then."""
    # Python's teardown of torch, Lightning and Hydra's modules: 1.1-1.2 s at every exit, against
    # 0.02-0.04 s this way (a process that imports them and exits, timed from its last line).
    if code is not None and not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    atexit._run_exitfuncs()  # logging's final flush, weakref finalizers, child processes
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(code or 0)
