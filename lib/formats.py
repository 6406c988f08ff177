"""Readers for the real file formats the data sets ship in, returning string-typed DataFrames.

Each reader knows one format's traps: GLUE TSV files hold unbalanced quotes (so no quote
processing), MRPC starts with a UTF-8 byte-order mark, CoLA has no header, AdvGLUE keeps all
tasks in one JSON object keyed by task.

A file that cannot be read as its format promises is one `DataError` naming the file, the line
(or record) and what was expected: an empty file, bytes that are not UTF-8, a row with more or
fewer fields than the header (pandas would silently pad a short row with empty text, or turn an
extra field in the first row into an index), a JSON record without a required field.
`read_local_located` also returns where each row came from, so that later checks (labels) can
name the line too. A TSV or JSONL file whose lines end in CR only (classic Mac) is refused with that
diagnosis, not read as one long line whose header swallows the data.

A data file must be a regular file (`check_data_file`): a device such as /dev/zero, a pipe or a
socket is refused, not read forever or reported as missing. Given the data root, a file that is
(or lies under) a symbolic link leading out of the root is refused before a byte of it is read, so
no error message ever echoes the content of a file outside the data root (`dev.tsv -> /etc/passwd`).
"""
from __future__ import annotations

import codecs
import csv
import io
import json
import os
import stat
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd

from .errors import DataError, DataFileNotFound

Locator = Callable[[int], str]  # row position -> 'line 7' / 'record 3'


def check_data_file(path: Path, root: Path | None = None) -> Path:
    """`path` if it is a regular file (inside `root` once links are followed, when a root is given).

    Why: a link to /dev/zero would be read forever (or called 'not found'), and a link leading out
    of the data root would have the loaders echo lines of an unrelated file in their errors.
    """
    path = Path(path)
    if not os.path.lexists(path):
        raise DataFileNotFound(f"data file not found: {path}")
    link = f" (a symbolic link to {os.readlink(path)})" if path.is_symlink() else ""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        raise DataFileNotFound(f"data file {path}{link} leads to nothing that exists; "
                               f"point it at a regular file") from None
    if stat.S_ISDIR(mode):
        raise DataFileNotFound(f"data file {path}{link} is a folder, not a file")
    if not stat.S_ISREG(mode):
        raise DataError(f"data file {path}{link} is not a regular file (a device, pipe or socket); "
                        f"point it at a regular file")
    if root is not None:
        target, base = path.resolve(), Path(root).resolve()
        if not target.is_relative_to(base):
            raise DataError(f"data file {path} leads to {target}, outside the data root {root}, through a "
                            f"symbolic link; refused, nothing of it is read: copy the file into the data root")
    return path


def _require(path: Path) -> Path:
    return check_data_file(path)


def _text(path: Path, expected: str) -> str:
    """The file decoded as UTF-8 (a leading byte-order mark dropped); one clear error if it is empty or not UTF-8."""
    raw = _require(path).read_bytes()
    if raw.startswith(codecs.BOM_UTF8):
        raw = raw[len(codecs.BOM_UTF8):]
    if not raw.strip():
        raise DataError(f"data file {path} is empty; expected {expected}")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise DataError(f"{path} line {line}: byte 0x{raw[exc.start]:02x} at column {column} is not UTF-8 text; "
                        f"save the file as UTF-8") from None


def _lines(text: str, path: Path) -> list[tuple[int, str]]:
    """(line number, line) of the non-empty lines; '\\n' or '\\r\\n' end a line (nothing else does).

    A file whose lines end in a lone CR is refused: read as one line, its header would swallow the data.
    """
    bare = text.count("\r") - text.count("\r\n")
    if bare and bare >= text.count("\n"):
        raise DataError(f"data file {path} ends its lines with CR only (classic Mac line endings, {bare} of "
                        f"them); convert them to LF, e.g. tr '\\r' '\\n' < old > new")
    out = []
    for number, line in enumerate(text.split("\n"), 1):
        if line.endswith("\r"):
            line = line[:-1]
        if line:
            out.append((number, line))
    return out


def _by_line(numbers: Sequence[int]) -> Locator:
    return lambda pos: f"line {numbers[pos]}"


def _tsv(path: Path, names: tuple[str, ...] | None) -> tuple[pd.DataFrame, Locator]:
    path = Path(path)
    lines = _lines(_text(path, "tab-separated rows" if names else "a header line and tab-separated rows"), path)
    if names:
        columns, body = list(names), lines
    else:
        columns, body = lines[0][1].split("\t"), lines[1:]
        repeated = sorted({c for c in columns if columns.count(c) > 1})
        if repeated:
            raise DataError(f"{path} line {lines[0][0]}: the header names column(s) {repeated} twice")
    rows, numbers = [], []
    for number, line in body:
        fields = line.split("\t")
        if len(fields) != len(columns):
            what = "a tab is missing or the line is cut short" if len(fields) < len(columns) else "an extra tab"
            raise DataError(f"{path} line {number}: {len(fields)} tab-separated field(s), expected {len(columns)} "
                            f"({', '.join(columns)}); {what}")
        rows.append(fields)
        numbers.append(number)
    return pd.DataFrame(rows, columns=columns, dtype=str), _by_line(numbers)


def read_tsv(path: Path, names: tuple[str, ...] | None = None) -> pd.DataFrame:
    """GLUE-style TSV: tab-separated, no quoting, optional BOM, header unless `names` is given.

    Every row must have as many fields as the header (or `names`); a ragged row is an error that
    names its line.
    """
    return _tsv(path, names)[0]


def _csv(path: Path) -> tuple[pd.DataFrame, Locator]:
    path = Path(path)
    reader = csv.reader(io.StringIO(_text(path, "a header line and comma-separated rows"), newline=""))
    try:
        columns: list[str] = []
        while not columns:
            columns = next(reader)
        rows, numbers = [], []
        start = reader.line_num + 1
        for fields in reader:
            if fields:
                if len(fields) != len(columns):
                    raise DataError(f"{path} line {start}: {len(fields)} comma-separated field(s), expected "
                                    f"{len(columns)} ({', '.join(columns)})")
                rows.append(fields)
                numbers.append(start)
            start = reader.line_num + 1
    except csv.Error as exc:
        raise DataError(f"{path} line {reader.line_num}: malformed CSV: {exc}") from None
    return pd.DataFrame(rows, columns=columns, dtype=str), _by_line(numbers)


def read_csv(path: Path) -> pd.DataFrame:
    """Standard quoted CSV with a header (ETHICS); a row with another number of fields is an error."""
    return _csv(path)[0]


def _check_record(record: object, where: str, path: Path, required: Sequence[str]) -> None:
    if not isinstance(record, dict):
        raise DataError(f"{path} {where}: expected a JSON object, got {type(record).__name__}")
    missing = [k for k in required if k not in record]
    if missing:
        raise DataError(f"{path} {where} has no field(s) {missing}; it has: {', '.join(map(str, record)) or 'none'}")


def _jsonl(path: Path, required: Sequence[str] = ()) -> tuple[pd.DataFrame, Locator]:
    path = Path(path)
    rows, numbers = [], []
    for number, line in _lines(_text(path, "one JSON object per line"), path):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"malformed JSON on line {number} of {path}: {exc.msg}") from None
        _check_record(record, f"line {number}", path, required)
        rows.append(record)
        numbers.append(number)
    return pd.DataFrame(rows), _by_line(numbers)


def read_jsonl(path: Path) -> pd.DataFrame:
    """One JSON object per line (SNLI, user data)."""
    return _jsonl(path)[0]


def _parquet(path: Path) -> tuple[pd.DataFrame, Locator]:
    path = _require(Path(path))
    if path.stat().st_size == 0:
        raise DataError(f"data file {path} is empty; expected a Parquet file")
    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises many kinds; all mean 'not readable Parquet'
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path} is not a readable Parquet file: {first}") from None
    return frame, lambda pos: f"row {pos + 1}"


def read_parquet(path: Path) -> pd.DataFrame:
    return _parquet(path)[0]


def _advglue(path: Path, key: str, required: Sequence[str] = ()) -> tuple[pd.DataFrame, Locator]:
    path = Path(path)
    try:
        obj = json.loads(_text(path, "the AdvGLUE JSON object {task: [records]}"))
    except json.JSONDecodeError as exc:
        raise DataError(f"malformed AdvGLUE JSON {path}: {exc.msg} at line {exc.lineno}") from None
    if not isinstance(obj, dict):
        raise DataError(f"AdvGLUE file {path} must hold a JSON object {{task: [records]}}, got {type(obj).__name__}")
    if key not in obj:
        raise DataError(f"AdvGLUE file {path} has no task {key!r}; it has: {', '.join(sorted(obj))}")
    records = obj[key]
    if not isinstance(records, list):
        raise DataError(f"AdvGLUE file {path}: task {key!r} must hold a list of records, got {type(records).__name__}")

    def where(pos: int) -> str:
        rec = records[pos]
        idx = f" (idx {rec['idx']})" if isinstance(rec, dict) and "idx" in rec else ""
        return f"record {pos + 1} of {key!r}{idx}"

    for pos, record in enumerate(records):
        _check_record(record, where(pos), path, required)
    return pd.DataFrame(records), where


def read_advglue_json(path: Path, key: str) -> pd.DataFrame:
    """The official AdvGLUE dev.json: {task_key: [records...]}."""
    return _advglue(path, key)[0]


def read_local_located(fmt: str, path: Path, *, names: tuple[str, ...] | None = None,
                       json_key: str | None = None, required: Sequence[str] = ()) -> tuple[pd.DataFrame, Locator]:
    """Dispatch on a LocalSource format name: the rows, and where row i came from ('line 7').

    `required`: fields every JSON record must carry (the task's text and label columns).
    """
    path = Path(path)
    if fmt == "tsv":
        return _tsv(path, names)
    if fmt == "csv":
        return _csv(path)
    if fmt == "jsonl":
        return _jsonl(path, required)
    if fmt == "parquet":
        return _parquet(path)
    if fmt == "advglue_json":
        assert json_key is not None
        return _advglue(path, json_key, required)
    raise DataError(f"unknown local format {fmt!r}; valid: advglue_json, csv, jsonl, parquet, tsv")


def read_local(fmt: str, path: Path, *, names: tuple[str, ...] | None = None,
               json_key: str | None = None) -> pd.DataFrame:
    """Dispatch on a LocalSource format name."""
    return read_local_located(fmt, path, names=names, json_key=json_key)[0]
