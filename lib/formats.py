"""Readers for the real file formats the data sets ship in, returning string-typed DataFrames.

Each reader knows one format's traps: GLUE TSV files hold unbalanced quotes (so no quote
processing), MRPC starts with a UTF-8 byte-order mark, CoLA has no header, AdvGLUE keeps all
tasks in one JSON object keyed by task.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pandas as pd

from .errors import DataError, DataFileNotFound


def _require(path: Path) -> Path:
    if not path.is_file():
        raise DataFileNotFound(f"data file not found: {path}")
    return path


def read_tsv(path: Path, names: tuple[str, ...] | None = None) -> pd.DataFrame:
    """GLUE-style TSV: tab-separated, no quoting, optional BOM, header unless `names` is given."""
    _require(path)
    try:
        return pd.read_csv(path, sep="\t", quoting=csv.QUOTE_NONE, encoding="utf-8-sig", dtype=str,
                           keep_default_na=False, header=None if names else 0,
                           names=list(names) if names else None)
    except pd.errors.ParserError as exc:
        raise DataError(f"malformed TSV file {path}: {str(exc).splitlines()[0]}") from None


def read_csv(path: Path) -> pd.DataFrame:
    """Standard quoted CSV with a header (ETHICS)."""
    _require(path)
    return pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")


def read_jsonl(path: Path) -> pd.DataFrame:
    """One JSON object per line (SNLI, user data)."""
    _require(path)
    rows = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise DataError(f"malformed JSON on line {lineno} of {path}: {exc.msg}") from None
    return pd.DataFrame(rows)


def read_parquet(path: Path) -> pd.DataFrame:
    _require(path)
    return pd.read_parquet(path)


def read_advglue_json(path: Path, key: str) -> pd.DataFrame:
    """The official AdvGLUE dev.json: {task_key: [records...]}."""
    _require(path)
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"malformed AdvGLUE JSON {path}: {exc.msg}") from None
    if key not in obj:
        raise DataError(f"AdvGLUE file {path} has no task {key!r}; it has: {', '.join(sorted(obj))}")
    return pd.DataFrame(obj[key])


def read_local(fmt: str, path: Path, *, names: tuple[str, ...] | None = None,
               json_key: str | None = None) -> pd.DataFrame:
    """Dispatch on a LocalSource format name."""
    if fmt == "tsv":
        return read_tsv(path, names)
    if fmt == "csv":
        return read_csv(path)
    if fmt == "jsonl":
        return read_jsonl(path)
    if fmt == "parquet":
        return read_parquet(path)
    if fmt == "advglue_json":
        assert json_key is not None
        return read_advglue_json(path, json_key)
    raise DataError(f"unknown local format {fmt!r}; valid: advglue_json, csv, jsonl, parquet, tsv")
