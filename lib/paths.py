"""Where the repository is, so that relative paths mean the same from any working directory.

A notebook opened where it lies (`book/experiments/` in JupyterLab, Binder or Colab) runs with its
own folder as working directory; resolving `results/` and `../shared/data` against the repository
instead lets it reuse the committed cache rather than re-tune every prompt.
"""
from __future__ import annotations

CACHE_NEUTRAL = True  # lib.code_identity: nothing here changes what a cached result contains

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def from_repo(path: str | Path) -> Path:
    """An absolute path: `path` itself if absolute, else relative to the repository root."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else (REPO / p).resolve()


def portable(path: str | Path) -> str:
    """A path inside the repository as a relative string (stable across clones), any other as absolute."""
    resolved = Path(path).resolve()
    try:
        return str(resolved.relative_to(REPO))
    except ValueError:
        return str(resolved)
