"""How a run uses the CPU's cores: torch's thread count and how its idle threads wait.

torch's OpenMP threads spin while they wait for the next piece of work. Alone, spinning saves
the wake-up between the many small operations of a step; beside another busy process on the
same cores, spinning threads take the time the other one needs and both crawl (two equal runs
at once: 4.4x their solo time; docs/results/benchmarks.md). So an idle thread spins a little
(`thread_spin` times) and then sleeps: as fast as spinning alone, and runs share the cores.
OpenMP reads this once, when torch loads, so the entry point sets it before that.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import Enum

from tinygpt.errors import UsageError

WAIT_ENV = "OMP_WAIT_POLICY"  # every OpenMP: how an idle thread waits
SPIN_ENV = "GOMP_SPINCOUNT"  # GNU OpenMP (torch's Linux builds): spins before it sleeps


class ThreadWait(str, Enum):
    """How torch's idle threads wait for work."""

    passive = "passive"  # sleep (after thread_spin spins): runs share the cores (the default)
    active = "active"  # spin on: a stall beside any other busy process


@dataclass
class CpuConfig:
    """How a run uses a CPU's cores (`cpu.*`)."""

    threads: int | None = None  # torch's threads (null: one per core)
    # How idle threads wait: spin this many times, then sleep, so a run alone keeps its speed and
    # runs beside other work share the cores (spin null: OpenMP's own)
    wait: ThreadWait = ThreadWait.passive
    spin: int | None = 3000

    def validate(self) -> None:
        if self.threads is not None and self.threads < 1:
            raise UsageError(f"cpu.threads={self.threads} must be at least 1 (or null: one per "
                             "core)")
        if self.spin is not None and self.spin < 0:
            raise UsageError(f"cpu.spin={self.spin} must be at least 0 (0: sleep at once; null: "
                             "OpenMP's own)")


def apply_wait_policy(wait: ThreadWait | str, spin: int | None) -> None:
    """Set OpenMP's wait policy for the torch this process (and its DDP ranks) will load."""
    os.environ[WAIT_ENV] = ThreadWait(wait).value.upper()
    if spin is None:
        os.environ.pop(SPIN_ENV, None)
    else:
        os.environ[SPIN_ENV] = str(spin)


def describe(threads: int) -> str:
    """The thread line of a run's summary: how many, how they wait, and the settings behind it."""
    wait, spin = os.environ.get(WAIT_ENV, "unset"), os.environ.get(SPIN_ENV)
    how = f"{wait.lower()} wait" + (f" after {spin} spins" if spin else "")
    settings = f"{WAIT_ENV}={wait}" + (f" {SPIN_ENV}={spin}" if spin else "")
    return f"{threads} torch threads, {how} ({settings})"
