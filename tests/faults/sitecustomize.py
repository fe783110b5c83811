"""Fault injection for tests that need a real process, loaded only when a test puts this folder
on PYTHONPATH: TINYGPT_RAISE_IN_LOAD=1 makes loading the corpus raise a plain ValueError (a bug,
not bad input)."""

import os

if os.environ.get("TINYGPT_RAISE_IN_LOAD"):
    from tinygpt.data import TextDataModule

    def _broken_load(self):
        raise ValueError("injected bug")

    TextDataModule.load = _broken_load
