"""The results cache: where each expensive result lives and the key that says what produced it.

Every cached thing is keyed by everything that determines its content:

- a prompt-tuning run (`run_dir`) by its signature: tuning configuration, backbone, task and a hash
  of the training and development data (see `lib.tuning.run_signature`). Changing any of them tunes
  a new prompt in a folder of its own beside the old one; the old one stays valid and reusable;
- a table or a tensor file (`table`, `tensors`) by its configuration *and* `code_version()`, the
  identity of the code that computes it (`lib.code_identity`), so an edit of a computation can never
  leave a stale table feeding a re-executed chapter, while moving code recomputes nothing. A table
  computed by the same code is also reused when its configuration differs only in profile fields the
  table never reads (`lib.table_reads`): an unrelated override recomputes nothing.

Every cached table and tensor file also carries a checksum, so that a file changed or cut short after
it was written is never read as a result: a table's key file (`tables/<name>.json`) holds the sha256
of the CSV's bytes, a tensor file's own metadata (safetensors header) the sha256 of its tensor data
(the bytes after the header, which the metadata does not change). A table or tensor file whose key
matches but whose bytes do not, one that is empty or unreadable, or a corrupt key file is one
`CheckpointError` naming the file and saying how to recompute it (delete it and its key file, then
re-run the chapter that computes it). Key files written before checksums existed (committed results)
carry none: they are read unchecked, and the next write of that file adds one.

Reads may fall back to read-only folders (`reuse`): a re-run into a scratch folder reuses the
committed results whose keys match, and writes only into its own folder. All writes go through
`lib.io`'s atomic writer (unique temporary name + rename), so two processes writing the same
folder never leave a torn file.
"""
from __future__ import annotations

CACHE_NEUTRAL = True  # lib.code_identity: nothing here changes what a cached result contains

import functools
import hashlib
import io
import json
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import pandas as pd
import torch

from .code_identity import version
from .errors import CheckpointError
from .io import read_json, read_tensors, write_json, write_tensors, write_text
from .progress import cache_event
from .table_reads import same_inputs

KEY_CHARS = 16


def fingerprint(obj: Any) -> str:
    """A short stable hash of a JSON-able object (dict keys sorted; other objects by `str`)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:KEY_CHARS]


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """The version of the code that computes the chapters' cached tables and tensors
    (`lib.code_identity.version`: moving code keeps it; editing a computation changes it)."""
    return version("cached results")


def data_fingerprint(frame: pd.DataFrame) -> str:
    """Hash of a data split's content (every column, row order included)."""
    values = pd.util.hash_pandas_object(frame.reset_index(drop=True), index=True).to_numpy()
    return hashlib.sha256(values.tobytes() + ",".join(map(str, frame.columns)).encode()).hexdigest()[:KEY_CHARS]


def run_finished(path: Path) -> bool:
    metrics = path / "metrics.json"
    try:
        return metrics.is_file() and bool(read_json(metrics).get("finished"))
    except Exception:  # noqa: BLE001 - a corrupt metrics file means 'not finished here'
        return False


class ResultsStore:
    """One results folder (written) plus read-only folders to reuse (never written)."""

    def __init__(self, root: str | Path, reuse: Sequence[str | Path] = ()) -> None:
        self.root = Path(root)
        self.reuse = tuple(Path(r) for r in reuse if Path(r).resolve() != self.root.resolve())
        self._computing: list[tuple[str, str]] = []  # (name, key) of the tables being computed, innermost last

    def _candidates(self, rel: Path) -> list[Path]:
        return [self.root / rel] + [r / rel for r in self.reuse]

    # --- prompt-tuning runs ---------------------------------------------------------------------
    def run_dir(self, rel: str | Path, signature: dict[str, Any]) -> Path:
        """The checkpoint folder of one tuning run: `<root>/<rel>/<key of signature>`.

        A finished run in a reuse folder is returned as it is (tune_prompt only reads a finished run);
        an unfinished one there is copied here first, so that resuming writes only into `root`.
        """
        key_rel = Path(rel) / fingerprint(signature)
        own = self.root / key_rel
        if own.is_dir():
            return own
        for other in self.reuse:
            found = other / key_rel
            if run_finished(found):
                return found
            if (found / "state.pt").is_file():
                shutil.copytree(found, own)
                return own
        return own

    # --- tables ---------------------------------------------------------------------------------
    def table(self, name: str, config: Any, compute: Callable[[], pd.DataFrame]) -> pd.DataFrame:
        """`tables/<name>.csv`, recomputed unless its key (config + code version) matches, or differs only in
        profile fields the table does not read (`lib.table_reads`)."""
        stamp = fingerprint({"config": config, "code": code_version()})
        for csv in self._candidates(Path("tables") / f"{name}.csv"):
            meta = csv.with_suffix(".json")
            if csv.is_file() and meta.is_file():
                key = _table_key(csv, meta)
                if key.get("key") == stamp or (key.get("code") == code_version()
                                               and same_inputs(name, key.get("config"), config)):
                    table = _read_table(csv, meta, key.get("sha256"))
                    cache_event("reused", f"table {name}")
                    return table
        t0 = time.perf_counter()
        self._computing.append((name, stamp))
        try:
            table = compute()
        finally:
            self._computing.pop()
        csv = self.root / "tables" / f"{name}.csv"
        write_text(csv, table.to_csv(index=False))
        write_json(csv.with_suffix(".json"), {"key": stamp, "code": code_version(), "sha256": _sha256(csv.read_bytes()),
                                              "seconds": round(time.perf_counter() - t0, 1), "config": config})
        shutil.rmtree(self._parts(name), ignore_errors=True)  # the table holds them now
        cache_event("computed", f"table {name}")
        return table

    def part(self, label: str, compute: Callable[[], pd.DataFrame]) -> pd.DataFrame:
        """One finished piece (e.g. one task and seed) of the table being computed, kept on disk until the
        table is written, so that an interrupted computation resumes from its finished pieces instead of
        starting over. A piece counts only for the same table key (configuration and code); outside a
        table's computation this is `compute()`."""
        if not self._computing:
            return compute()
        name, stamp = self._computing[-1]
        csv = self._parts(name) / f"{label}.csv"
        meta = csv.with_suffix(".json")
        if csv.is_file() and meta.is_file():
            key = _table_key(csv, meta)
            if key.get("key") == stamp:
                return _read_table(csv, meta, key.get("sha256"))
        frame = compute()
        write_text(csv, frame.to_csv(index=False))
        write_json(meta, {"key": stamp, "sha256": _sha256(csv.read_bytes())})
        return frame

    def _parts(self, name: str) -> Path:
        return self.root / "tables" / f"{name}.parts"

    # --- tensor files (neuron scores) -------------------------------------------------------------
    def tensors(self, rel: str | Path, config: Any,
                compute: Callable[[], dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """A safetensors file, recomputed unless its stored key (config + code version) matches."""
        stamp = fingerprint({"config": config, "code": code_version()})
        for path in self._candidates(Path(rel)):
            if path.is_file():
                raw = path.read_bytes()
                meta, data = _safetensors_parts(path, raw)
                if meta.get("key") == stamp:
                    if "sha256" in meta and _sha256(data) != meta["sha256"]:
                        raise CheckpointError(f"cached tensor file {path} does not match the checksum in its "
                                              f"metadata (changed or cut short since it was written); "
                                              f"{_recompute(path)}")
                    try:
                        tensors = read_tensors(path)
                    except CheckpointError as exc:
                        raise CheckpointError(f"{exc}; {_recompute(path)}") from None
                    cache_event("reused", f"tensors {Path(rel).as_posix()}")
                    return tensors
        tensors = compute()
        from safetensors.torch import save

        cpu = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
        _, data = _safetensors_parts(self.root / rel, save(cpu))  # the data bytes do not depend on the metadata
        write_tensors(self.root / rel, cpu, metadata={"key": stamp, "code": code_version(), "sha256": _sha256(data)})
        cache_event("computed", f"tensors {Path(rel).as_posix()}")
        return tensors


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _recompute(path: Path, key: Path | None = None) -> str:
    """How to recompute a cached file that cannot be used (the chapter would read it again otherwise)."""
    files = f"{path} and its key file {key}" if key is not None else str(path)
    return f"delete {files}, then re-run the chapter that computes it"


def _table_key(csv: Path, meta: Path) -> dict[str, Any]:
    """A table's key file, or one `CheckpointError` that says how to recompute the table."""
    try:
        key = read_json(meta)
    except CheckpointError as exc:
        raise CheckpointError(f"{exc}: it is the key file of the cached table {csv}; {_recompute(csv, meta)}") from None
    if not isinstance(key, dict):
        raise CheckpointError(f"key file {meta} of the cached table {csv} holds {type(key).__name__}, not a JSON "
                              f"object; {_recompute(csv, meta)}")
    return key


def _read_table(csv: Path, meta: Path, sha256: str | None) -> pd.DataFrame:
    """The cached table, checked against its key's checksum when the key has one (older keys have none)."""
    raw = csv.read_bytes()
    if not raw.strip():
        raise CheckpointError(f"cached table {csv} is empty; {_recompute(csv, meta)}")
    if sha256 is not None and _sha256(raw) != sha256:
        raise CheckpointError(f"cached table {csv} does not match the checksum in its key file (changed or cut "
                              f"short since it was written); {_recompute(csv, meta)}")
    try:
        return pd.read_csv(io.BytesIO(raw))
    except ValueError as exc:  # pandas' EmptyDataError and ParserError, UnicodeDecodeError
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"cached table {csv} is unreadable ({first}); {_recompute(csv, meta)}") from None


def _safetensors_parts(path: Path, raw: bytes) -> tuple[dict[str, str], bytes]:
    """(metadata, tensor data) of a safetensors file's bytes: an 8-byte header length, a JSON header, the data.

    A file that is not one (empty, cut inside its header) is one `CheckpointError`: it lies where a
    cached result belongs, so it was one.
    """
    size = int.from_bytes(raw[:8], "little") if len(raw) >= 8 else -1
    try:
        if not 0 < size <= len(raw) - 8:
            raise ValueError("too short for its header")
        header = json.loads(raw[8:8 + size])
        meta = header.get("__metadata__") or {}
        if not isinstance(meta, dict):
            raise ValueError("metadata is not a JSON object")
    except (ValueError, AttributeError) as exc:
        raise CheckpointError(f"cached tensor file {path} is not a readable safetensors file ({exc}); "
                              f"{_recompute(path)}") from None
    return meta, raw[8 + size:]
