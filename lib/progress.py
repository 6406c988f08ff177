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
# Where the results store notes each table or tensor file it reused or computed; the runner sets it per
# chapter and prints the counts, so a re-run says how much of it came from the cache.
CACHE_ENV = "COMPENDIUM_CACHE_LOG"
CACHE_OUTCOMES = ("reused", "computed")


def _append(variable: str, line: str) -> None:
    """Append one line to the file named by the environment `variable`; without it, nothing. A courtesy:
    never fail the work because the file cannot be written."""
    path = os.environ.get(variable)
    if not path:
        return
    try:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
    except OSError:
        pass


def report(message: str) -> None:
    """Append `message` (one line, timestamped) to the progress log named by $COMPENDIUM_PROGRESS_LOG."""
    _append(ENV, f"{time.strftime('%H:%M:%S')} {message.strip()}")


def cache_event(outcome: str, what: str) -> None:
    """Note that the results store `outcome` ('reused' or 'computed') `what` (a table, a tensor file), in the
    file named by $COMPENDIUM_CACHE_LOG; without the variable, nothing."""
    if outcome not in CACHE_OUTCOMES:
        raise ValueError(f"cache outcome must be one of {', '.join(CACHE_OUTCOMES)}, got {outcome!r}")
    _append(CACHE_ENV, f"{outcome}\t{what}")


def cache_counts(path: str | os.PathLike) -> dict[str, int]:
    """How many events of each outcome the file holds ({'reused': n, 'computed': m})."""
    counts = dict.fromkeys(CACHE_OUTCOMES, 0)
    try:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                outcome = line.split("\t", 1)[0]
                if outcome in counts:
                    counts[outcome] += 1
    except OSError:
        pass
    return counts
