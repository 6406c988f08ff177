"""Error types with one-line messages that say what was wrong and what is valid.

Users of the compendium re-run notebooks with new parameters; a typo should produce a message
they can act on, not a stack of library internals.
"""
from __future__ import annotations

CACHE_NEUTRAL = True  # lib.code_identity: nothing here changes what a cached result contains

from typing import Iterable


class CompendiumError(Exception):
    """Base class: every error raised on purpose by `lib`."""


class ConfigError(CompendiumError, ValueError):
    """A parameter is out of range, unknown, or inconsistent with another."""


class DataError(CompendiumError, ValueError):
    """Input data is missing, empty, or carries labels the task does not define."""


class DataFileNotFound(DataError, FileNotFoundError):
    """A data file that a loader needs is not on disk."""


class CheckpointError(CompendiumError, RuntimeError):
    """A checkpoint is missing, corrupt, or belongs to another configuration."""


class ModelLoadError(CompendiumError):
    """A backbone could not be found or is of an unsupported kind."""


class DivergenceError(CompendiumError, FloatingPointError):
    """Training produced a non-finite loss or prompt; the run stopped and nothing of it was saved as finished."""


def unknown(kind: str, value: object, valid: Iterable[str]) -> ConfigError:
    """Build the standard 'unknown X; valid: ...' error."""
    return ConfigError(f"unknown {kind} {value!r}; valid: {', '.join(sorted(valid))}")
