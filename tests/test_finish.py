"""tinygpt.cli.finish: the exit code and what still runs, across a process boundary."""

import subprocess
import sys

import pytest

PROGRAM = """
import atexit, sys
from tinygpt.cli.finish import exit_now
atexit.register(lambda: print("atexit ran", flush=True))
print("partial line", end="")  # unflushed output still reaches the pipe
exit_now({code!r})
print("never")
"""


@pytest.mark.parametrize("code,rc", [(None, 0), (0, 0), (3, 3), ("error: bad (fix it)", 1)])
def test_exit_now_exits_as_sys_exit_would_after_the_atexit_handlers(code, rc):
    proc = subprocess.run([sys.executable, "-c", PROGRAM.format(code=code)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == rc
    assert proc.stdout == "partial lineatexit ran\n"
    assert proc.stderr == (f"{code}\n" if isinstance(code, str) else "")
