"""Progress lines for long work running inside a notebook kernel.

Inside papermill the kernel's output goes into the notebook, not to the console of the person who
started the run. When the runner sets $COMPENDIUM_PROGRESS_LOG, `report` appends one line per
event to that file, and the runner echoes new lines to its console while the notebook runs.
Without the variable `report` does nothing (library use, tests, the book build).
"""
from __future__ import annotations

CACHE_NEUTRAL = True  # lib.code_identity: nothing here changes what a cached result contains

import os
import time

ENV = "COMPENDIUM_PROGRESS_LOG"


def report(message: str) -> None:
    """Append `message` (one line, timestamped) to the progress log named by $COMPENDIUM_PROGRESS_LOG."""
    path = os.environ.get(ENV)
    if not path:
        return
    try:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(f"{time.strftime('%H:%M:%S')} {message.strip()}\n")
    except OSError:  # progress is a courtesy; never fail the work because the log cannot be written
        pass
