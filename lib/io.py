"""Atomic file writes: a run interrupted mid-write never leaves a half-written checkpoint.

Every file the project writes goes through `_atomic`: a temporary file with a unique name in the
target folder, then `os.replace`. Two processes writing the same path each write their own
temporary and the last rename wins whole; a reader never sees a torn file.

A writer killed mid-write (SIGKILL, a crash, power loss) cannot remove its temporary
`.<name>.XXXXXXXX.tmp`; the next write of the same target removes such leftovers. A writer holds
an exclusive `flock` on its temporary while it writes, so a leftover is told from another
process's write in progress by whether its lock can be taken (where `fcntl` is missing: by age).
The pattern is git-ignored (`.*.tmp`).
"""
from __future__ import annotations

import json
import os
import pickle
import re
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    import torch

from .errors import CheckpointError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: stale temporaries are told by age only
    fcntl = None  # type: ignore[assignment]

# A temporary younger than this is never removed: it may have been created a moment ago by a writer
# that has not taken its lock yet. Without fcntl, a temporary is stale only after STALE_AGE_NO_LOCK.
STALE_GRACE_SECONDS = 2.0
STALE_AGE_NO_LOCK = 3600.0


def _file_mode() -> int:
    """What `open()` would give a new file under the user's umask (mkstemp always gives 0600)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


FILE_MODE = _file_mode()


def _temporary_pattern(name: str) -> re.Pattern[str]:
    """Names `tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp")` gives: 8 characters of [a-z0-9_]."""
    return re.compile(re.escape(f".{name}.") + r"[a-z0-9_]{8}\.tmp\Z")


def _is_stale(tmp: str) -> bool:
    """True when no live writer holds the temporary (its lock can be taken), and it is not brand new."""
    try:
        age = time.time() - os.stat(tmp).st_mtime
    except FileNotFoundError:
        return False
    if age < STALE_GRACE_SECONDS:
        return False
    if fcntl is None:
        return age > STALE_AGE_NO_LOCK
    try:
        fd = os.open(tmp, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # held: a write in progress in another process
        return False
    finally:
        os.close(fd)  # releases the lock if it was taken
    return True


def clean_stale_temporaries(path: Path) -> list[Path]:
    """Remove the leftover temporaries of interrupted writes of `path` (same folder, same name); return them."""
    path = Path(path)
    pattern = _temporary_pattern(path.name)
    removed = []
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return removed
    for entry in entries:
        if pattern.match(entry.name) and entry.is_file(follow_symlinks=False) and _is_stale(entry.path):
            try:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
            except FileNotFoundError:
                pass
    return removed


def _atomic(path: Path, write: Callable[[str], None]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)  # 'in use' for clean_stale_temporaries in other processes
        write(tmp)
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    finally:
        os.close(fd)


def write_json(path: Path, obj: Any) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(obj, fh, indent=2, sort_keys=True, default=str)
            fh.write("\n")
    _atomic(path, write)


def write_text(path: Path, text: str) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
    _atomic(path, write)


def read_json(path: Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"file not found: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"corrupt JSON file {path}: {exc.msg} at line {exc.lineno}") from None


def write_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    from safetensors.torch import save_file  # here, not at import: the runner's CLI imports this module

    cpu = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    _atomic(path, lambda tmp: save_file(cpu, tmp, metadata=metadata))


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"corrupt checkpoint {path}: {str(exc).splitlines()[0]}") from None


def write_torch(path: Path, obj: Any) -> None:
    import torch

    _atomic(path, lambda tmp: torch.save(obj, tmp))


def read_torch(path: Path) -> Any:
    """A torch checkpoint holding tensors and plain data, loaded with `weights_only=True`.

    A file that pickles code or objects (a hand-made or foreign `adapter_model.bin`, say) is refused
    for safety; the message never suggests `weights_only=False`, which is the exploit. Any
    `UnpicklingError` of the weights-only loader counts, whatever torch's wording of the day.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        found = re.search(r"GLOBAL\s+([\w.]+)", text)  # 'Unsupported global: GLOBAL x.y', 'unsupported GLOBAL x.y'
        if found:
            raise CheckpointError(f"checkpoint {path} holds pickled Python code or objects ({found.group(1)}), "
                                  f"refused for safety: checkpoints are read with torch.load(weights_only=True) and "
                                  f"may hold tensors and plain data only; this file was not written by lib.io, "
                                  f"so take the checkpoint from its source again or use a .safetensors file") from None
        raise CheckpointError(f"corrupt checkpoint {path}: not a file of tensors and plain data "
                              f"({_unpickling_detail(text)}); refused for safety, not loaded") from None
    except Exception as exc:  # noqa: BLE001 - pickle/zip errors of every kind mean 'corrupt'
        first = re.split(r"(?<=\.)\s", str(exc).strip(), maxsplit=1)[0] if str(exc).strip() else ""
        raise CheckpointError(f"corrupt checkpoint {path}: {type(exc).__name__}: {first}") from None


def _unpickling_detail(text: str) -> str:
    """What the weights-only unpickler objected to, without torch's advice to load with weights_only=False."""
    detail = re.search(r"WeightsUnpickler error:\s*(.+?)\s*(?:\n\n|$)", text, re.S)
    if detail and detail.group(1).strip():
        return " ".join(detail.group(1).split())
    lines = [line.strip() for line in text.splitlines()
             if line.strip() and "weights_only" not in line and "load failed" not in line.lower()
             and "documentation" not in line]
    return lines[0] if lines else "refused by the weights-only unpickler"
