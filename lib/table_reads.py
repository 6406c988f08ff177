"""Which profile fields each cached table reads, so that a setting it never reads cannot recompute it.

A table's key holds its whole configuration (`lib.store.ResultsStore.table`), the profile included. A
stored table is reused when its key matches exactly, or when it was computed by the same code with the
same configuration *except* for profile fields the table does not read:

    reusable(stored, now)  <=>  code(stored) = code(now)
                                and config(stored) \\ {profile} = config(now) \\ {profile}
                                and stored.profile[f] = now.profile[f]  for every f in READS[table]

Changing `top_fraction` therefore leaves the suppression table (which selects its neurons by
`suppression_fractions`) where it is, and changing `suppression_fractions` recomputes it. A table whose
name is not listed reads every field (the safe default). The declarations are checked by
`tests/test_table_reads.py`, which computes every table of the smoke profile with a profile that records
each field read while the table (and whatever it needs: prompts, neuron scores, other tables) is
computed, and fails if a recorded field is missing here. Fields read by an upstream result count:
a table built on prompts reads what the prompts read. What the recording cannot see: fields read before a
table's computation and handed to it in an argument its key does not hold (the task statuses given to
the claims); such tables stay undeclared.
"""
from __future__ import annotations

CACHE_NEUTRAL = True  # lib.code_identity: which stored table is reused, never what one contains

import fnmatch
import json
from typing import Any, Mapping

# What a table built on the tuned prompts reads: the backbone and how it reads its input, the data, the
# prompts (tasks x seeds, each tuned by `tune` with the task's `task_tune`), and the control backbone's seed.
PROMPTS = ("model", "synthetic", "verbalizer_space", "prompt_positions", "data", "tasks", "seeds", "tune",
           "task_tune", "control_seeds")
# Neuron scores add the threshold sample's size.
NEURONS = PROMPTS + ("threshold_examples",)

# Table name (a shell pattern) -> the profile fields it reads; the first matching pattern counts. Not listed
# (every field counts): the claims (computed from many chapters' pieces at once), the transfer-study
# indicators and runs (they read nearly every field).
READS: Mapping[str, tuple[str, ...]] = {
    "prompt_tuning": PROMPTS,
    "task_status": PROMPTS,
    "transfer": PROMPTS,
    "transfer_curves": PROMPTS,
    "backbone_probe": PROMPTS,
    "adversarial": PROMPTS + ("adversarial",),
    "suppression_*": NEURONS + ("suppression_fractions", "n_random_draws"),
    "skill_neuron_controls": NEURONS + ("top_fraction",),
    "rn3-label-permutation": NEURONS,
    "projector": NEURONS,
    "pruning": NEURONS,
    "other_tuning": NEURONS,
    "model_tuning": NEURONS,
}


def reads(name: str) -> tuple[str, ...] | None:
    """The profile fields table `name` reads, or None: every field (a table not declared here)."""
    for pattern, fields in READS.items():
        if fnmatch.fnmatchcase(name, pattern):
            return fields
    return None


_ABSENT = "<field absent>"  # a field one configuration has and the other has not is a difference


def _canonical(value: Any) -> str:
    """A value as JSON text, so that a tuple here and the list it was stored as compare equal."""
    return json.dumps(value, sort_keys=True, default=str)


def same_inputs(name: str, stored: Any, config: Any) -> bool:
    """Whether a table stored with configuration `stored` answers a request with `config` (see the module
    docstring): equal outside the profile, and equal on the profile fields the table reads."""
    fields = reads(name)
    if fields is None or not (isinstance(stored, Mapping) and isinstance(config, Mapping)):
        return _canonical(stored) == _canonical(config)
    old, new = stored.get("profile"), config.get("profile")
    if not (isinstance(old, Mapping) and isinstance(new, Mapping)):
        return _canonical(stored) == _canonical(config)
    rest = lambda c: {k: v for k, v in c.items() if k != "profile"}  # noqa: E731 - one use, reads as words
    return (_canonical(rest(stored)) == _canonical(rest(config))
            and all(_canonical(old.get(f, _ABSENT)) == _canonical(new.get(f, _ABSENT)) for f in fields))
