"""Load a task's train / dev / test splits from local files or the Hugging Face hub.

Splits follow the references: dev is carved out of train with a fixed seed, the official
validation set serves as test. Every split comes back in one canonical shape, a DataFrame with
columns `text_a`, `text_b` (pair tasks only) and `label` (canonical index), so that nothing
downstream needs to know where the data came from.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import ConfigError, DataError, DataFileNotFound, unknown
from .formats import read_local
from .tasks import SPLITS, Task, get_task

DATA_ROOT_ENV = "COMPENDIUM_DATA_ROOT"
SOURCES = ("auto", "local", "hub")


@dataclass(frozen=True)
class DataConfig:
    """How to find and split a task's data.

    data_root: folder with local copies (e.g. ``../shared/data``); None reads ``$COMPENDIUM_DATA_ROOT``.
    source: 'local' (files only), 'hub' (datasets.load_dataset), or 'auto' (local when the root
        holds the task's test file, else hub).
    dev_fraction: share of train carved out as dev when the source has no dev split.
    carve_train_from_test: when the train file is absent (offline QNLI has only its validation
        set), split the test file in half, one half for train+dev and one for test.
    max_*: subsample each split (seeded) for quick runs.
    """

    data_root: str | None = None
    source: str = "auto"
    dev_fraction: float = 0.2
    seed: int = 42
    carve_train_from_test: bool = False
    max_train: int | None = None
    max_dev: int | None = None
    max_test: int | None = None

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise unknown("data source", self.source, SOURCES)
        if not 0.0 < self.dev_fraction < 1.0:
            raise ConfigError(f"dev_fraction must be in (0, 1), got {self.dev_fraction}")
        for name in ("max_train", "max_dev", "max_test"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be a positive number of examples or None, got {value}")

    @property
    def root(self) -> Path | None:
        root = self.data_root if self.data_root is not None else os.environ.get(DATA_ROOT_ENV)
        return Path(root).expanduser() if root else None


def text_columns(task: Task) -> list[str]:
    """Canonical text columns of a task's DataFrames."""
    return ["text_a", "text_b"][: len(task.text_fields)]


def _canonicalise(task: Task, raw: pd.DataFrame, text_cols: tuple[str, ...], label_col: str,
                  origin: str) -> pd.DataFrame:
    missing = [c for c in (*text_cols, label_col) if c not in raw.columns]
    if missing:
        raise DataError(f"{origin} lacks column(s) {missing}; it has: {list(raw.columns)}")
    out = pd.DataFrame({name: raw[col].astype(str).str.strip().to_numpy()
                        for name, col in zip(text_columns(task), text_cols)})
    mapping = {value: task.canonical_label(value) for value in pd.unique(raw[label_col])}
    labels = raw[label_col].map(mapping)
    keep = labels.notna().to_numpy()
    out = out[keep].reset_index(drop=True)
    out["label"] = labels[keep].astype(int).to_numpy()
    if out.empty:
        raise DataError(f"{origin} has no usable examples for task {task.name!r}")
    return out


def _read_local(task: Task, split: str, root: Path) -> pd.DataFrame:
    src = task.local
    assert src is not None
    path = root / src.files[split]
    raw = read_local(src.format, path, names=src.names, json_key=src.json_key)
    return _canonicalise(task, raw, src.text_columns, src.label_column, f"file {path}")


def _read_hub(task: Task, split: str) -> pd.DataFrame:
    src = task.hub
    assert src is not None
    try:
        import datasets

        ds = datasets.load_dataset(src.path, src.config, split=src.splits[split])
    except Exception as exc:  # noqa: BLE001 - any hub failure becomes one clear message
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"could not load task {task.name!r} split {split!r} from the hub "
                        f"({src.path}{'/' + src.config if src.config else ''}): {first}; "
                        f"offline, pass a data root with local files (DataConfig(data_root=...) "
                        f"or ${DATA_ROOT_ENV})") from None
    return _canonicalise(task, ds.to_pandas(), src.text_columns, src.label_column,
                         f"hub data set {src.path} split {src.splits[split]}")


def resolve_source(task: Task, cfg: DataConfig) -> str:
    """'local' or 'hub' for this task under this configuration."""
    root = cfg.root
    if cfg.source == "local":
        if task.local is None:
            raise DataError(f"task {task.name!r} has no local source; use source='hub'")
        if root is None:
            raise ConfigError(f"source='local' needs a data root: DataConfig(data_root=...) or ${DATA_ROOT_ENV}")
        return "local"
    if cfg.source == "hub":
        if task.hub is None:
            raise DataError(f"task {task.name!r} has no hub source; use source='local'")
        return "hub"
    if task.local is not None and root is not None and (root / task.local.files["test"]).is_file():
        return "local"
    if task.hub is not None:
        return "hub"
    where = root / task.local.files["test"] if (root and task.local) else "no data root set"
    raise DataFileNotFound(f"task {task.name!r}: no local file ({where}) and no hub source")


def _available(task: Task, source: str) -> tuple[str, ...]:
    src = task.local if source == "local" else task.hub
    assert src is not None
    mapping = src.files if source == "local" else src.splits
    return tuple(s for s in SPLITS if s in mapping)


def _subsample(df: pd.DataFrame, n: int | None, seed: int) -> pd.DataFrame:
    if n is None or len(df) <= n:
        return df
    idx = np.sort(np.random.default_rng(seed).permutation(len(df))[:n])
    return df.iloc[idx].reset_index(drop=True)


def _split_off(df: pd.DataFrame, fraction: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Deterministically split `df` into (rest, carved) with `fraction` of the rows carved."""
    perm = np.random.default_rng(seed).permutation(len(df))
    n_carve = max(1, int(round(fraction * len(df))))
    carved, rest = np.sort(perm[:n_carve]), np.sort(perm[n_carve:])
    if len(rest) == 0:
        raise DataError(f"cannot carve {fraction:.0%} out of {len(df)} examples and keep any")
    return df.iloc[rest].reset_index(drop=True), df.iloc[carved].reset_index(drop=True)


def load_splits(task: str | Task, cfg: DataConfig = DataConfig(),
                splits: tuple[str, ...] = SPLITS) -> dict[str, pd.DataFrame]:
    """Load the requested logical splits ('train', 'dev', 'test') of a task in canonical form."""
    task = get_task(task)
    for s in splits:
        if s not in SPLITS:
            raise unknown("split", s, SPLITS)
    source = resolve_source(task, cfg)
    available = _available(task, source)

    def read(split: str) -> pd.DataFrame:
        if source == "hub":
            return _read_hub(task, split)
        assert cfg.root is not None
        return _read_local(task, split, cfg.root)

    needs_train = any(s in ("train", "dev") for s in splits)
    if needs_train and "train" not in available:
        raise DataError(f"task {task.name!r} has only a test split (adversarial sets are for evaluation); "
                        f"requested: {', '.join(splits)}")
    out: dict[str, pd.DataFrame] = {}
    test = None
    train = None
    if needs_train:
        try:
            train = read("train")
        except DataFileNotFound:
            if not cfg.carve_train_from_test:
                raise DataFileNotFound(
                    f"train file for task {task.name!r} not found: {cfg.root / task.local.files['train']}; "  # type: ignore[union-attr,operator]
                    f"set carve_train_from_test=True to split its test file instead") from None
            train, test = _split_off(read("test"), 0.5, cfg.seed)
        # Dev is always carved before train is used, so train never overlaps dev.
        if "dev" in available and test is None:
            dev = read("dev") if "dev" in splits else None
        else:
            train, dev = _split_off(train, cfg.dev_fraction, cfg.seed + 1)
        if "dev" in splits:
            out["dev"] = _subsample(dev, cfg.max_dev, cfg.seed + 2)
        if "train" in splits:
            out["train"] = _subsample(train, cfg.max_train, cfg.seed + 3)
    if "test" in splits:
        if test is None:
            test = read("test")
        out["test"] = _subsample(test, cfg.max_test, cfg.seed + 4)
    for name, df in out.items():
        df.attrs.update(task=task.name, split=name, source=source)
    return {s: out[s] for s in splits}


def load_split(task: str | Task, split: str, cfg: DataConfig = DataConfig()) -> pd.DataFrame:
    """One logical split; see `load_splits`."""
    return load_splits(task, cfg, (split,))[split]
