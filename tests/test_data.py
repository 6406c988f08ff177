import os
import shutil

import pandas as pd
import pytest

from lib.data import DataConfig, load_split, load_splits
from lib.errors import ConfigError, DataError, DataFileNotFound
from lib.formats import read_tsv


def cfg(root, **kw):
    return DataConfig(data_root=str(root), source="local", **kw)


def test_sst2_tsv_keeps_quotes_and_strips(fixture_root):
    test = load_split("sst2", "test", cfg(fixture_root))
    assert test.to_dict("list") == {"text_a": ["splendid", "awful"], "label": [1, 0]}
    train = load_split("sst2", "train", cfg(fixture_root, dev_fraction=0.2))
    assert len(train) == 5  # 6 rows, 1 carved into dev
    full = read_tsv(fixture_root / "glue/SST-2/train.tsv")
    assert 'a "quoted fragment with no end' in full["sentence"].tolist()


def test_mrpc_bom_and_msr_columns(fixture_root):
    raw = read_tsv(fixture_root / "glue/MRPC/train.tsv")
    assert raw.columns[0] == "Quality"  # the byte-order mark is not part of the name
    test = load_split("mrpc", "test", cfg(fixture_root))
    assert test.columns.tolist() == ["text_a", "text_b", "label"]
    assert test["label"].tolist() == [1, 0] and test["text_b"][0] == "He went away ."


def test_cola_headerless(fixture_root):
    test = load_split("cola", "test", cfg(fixture_root))
    assert test.to_dict("list") == {"text_a": ["The weights made the rope stretch .", "Rope the stretch made ."],
                                    "label": [1, 0]}


def test_rte_and_qnli_string_labels(fixture_root):
    rte = load_splits("rte", cfg(fixture_root))
    assert {k: len(v) for k, v in rte.items()} == {"train": 4, "dev": 4, "test": 4}  # all three files used
    assert rte["test"]["label"].tolist() == [0, 1, 0, 1]
    with pytest.raises(DataFileNotFound, match=r"glue/QNLI/train\.tsv.*carve_train_from_test"):
        load_split("qnli", "train", cfg(fixture_root))
    carved = load_splits("qnli", cfg(fixture_root, carve_train_from_test=True, dev_fraction=0.5))
    assert {k: len(v) for k, v in carved.items()} == {"train": 1, "dev": 1, "test": 2}
    rows = pd.concat(carved.values())  # each validation row used exactly once
    assert sorted(rows["text_a"]) == sorted(load_split("qnli", "test", cfg(fixture_root))["text_a"])


def test_qqp_and_mnli_tsv(fixture_root):
    assert load_split("qqp", "test", cfg(fixture_root))["label"].tolist() == [1, 0, 1, 0]
    assert load_split("mnli", "test", cfg(fixture_root))["label"].tolist() == [0, 1, 0, 1]  # neutral dropped
    assert load_split("mnli_3way", "test", cfg(fixture_root))["label"].tolist() == [0, 1, 2, 0, 2]


def test_advglue_json(fixture_root):
    assert load_split("adv_sst2", "test", cfg(fixture_root))["label"].tolist() == [1, 0, 1]
    assert load_split("adv_mnli", "test", cfg(fixture_root))["label"].tolist() == [1, 0]
    assert load_split("adv_mnli_3way", "test", cfg(fixture_root))["label"].tolist() == [2, 0, 1]
    assert load_split("adv_mnli_mm", "test", cfg(fixture_root))["label"].tolist() == [0, 1]
    assert load_split("adv_qnli", "test", cfg(fixture_root))["text_b"][0].startswith("They tested")
    with pytest.raises(DataError, match="only a test split"):
        load_split("adv_rte", "train", cfg(fixture_root))


def test_parquet_csv_jsonl(fixture_root):
    assert load_split("imdb", "test", cfg(fixture_root))["label"].tolist() == [1, 0]
    deon = load_split("ethics_deontology", "test", cfg(fixture_root))
    assert deon["text_b"][1] == "But the car is already clean, really." and deon["label"].tolist() == [0, 1, 0, 1]
    assert load_split("ethics_justice", "test", cfg(fixture_root))["label"].tolist() == [1, 0, 1, 0]
    snli = load_split("snli", "test", cfg(fixture_root))
    assert snli["label"].tolist() == [1, 2, 0]  # '-' (no gold label) dropped


def test_dev_is_disjoint_deterministic_and_seeded(tmp_path, synth):
    task, root = synth
    a = load_splits(task, cfg(root))
    b = load_splits(task, cfg(root))
    assert all(a[s].equals(b[s]) for s in a)
    assert len(a["train"]) + len(a["dev"]) == 400 and len(a["dev"]) == 80
    from lib.formats import read_jsonl
    full = read_jsonl(root / task.local.files["train"])
    pooled = pd.concat([a["train"], a["dev"]])
    assert sorted(zip(pooled["text_a"], pooled["label"])) == sorted(zip(full["text"], full["label"]))
    c = load_splits(task, cfg(root, seed=7))
    assert not a["dev"].equals(c["dev"])
    small = load_splits(task, cfg(root, max_train=10, max_dev=5, max_test=3))
    assert [len(small[s]) for s in ("train", "dev", "test")] == [10, 5, 3]
    only_train = load_split(task, "train", cfg(root))
    assert only_train.equals(a["train"]), "train must not depend on whether dev was requested"


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(DataFileNotFound, match=str(tmp_path / "glue/SST-2/dev.tsv").replace(".", r"\.")):
        load_split("sst2", "test", cfg(tmp_path))


def test_empty_dataset_and_bad_labels(tmp_path, fixture_root):
    shutil.copytree(fixture_root / "glue", tmp_path / "glue")
    (tmp_path / "glue/SST-2/dev.tsv").write_text("sentence\tlabel\n")
    with pytest.raises(DataError, match="no usable examples"):
        load_split("sst2", "test", cfg(tmp_path))
    (tmp_path / "glue/SST-2/dev.tsv").write_text("sentence\tlabel\nfine\t1\nodd\t3\n")
    with pytest.raises(DataError, match=r"label '3' is not a label of task 'sst2'"):
        load_split("sst2", "test", cfg(tmp_path))


def test_bad_config_and_split():
    with pytest.raises(ConfigError, match="unknown data source 'web'; valid: auto, hub, local"):
        DataConfig(source="web")
    with pytest.raises(ConfigError, match="dev_fraction"):
        DataConfig(dev_fraction=1.5)
    with pytest.raises(ConfigError, match="unknown split 'validation'; valid: dev, test, train"):
        load_splits("sst2", DataConfig(data_root="."), ("validation",))


def test_hub_failure_is_one_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(DataError, match=r"could not load task 'adv_rte' split 'test' from the hub .*data root"):
        load_split("adv_rte", "test", DataConfig(source="hub"))


def test_auto_source_prefers_local_root_from_env(monkeypatch, fixture_root):
    monkeypatch.setenv("COMPENDIUM_DATA_ROOT", str(fixture_root))
    df = load_split("adv_sst2", "test", DataConfig())
    assert df.attrs["source"] == "local" and len(df) == 3


# --- the real copies in ../shared/data (skipped when absent) ----------------------------------
REAL_COUNTS = [  # (task, split, rows in the file, per the data README)
    ("sst2", "train", 67349), ("sst2", "test", 872), ("mrpc", "train", 3668), ("mrpc", "test", 408),
    ("rte", "train", 1244), ("rte", "dev", 139), ("rte", "test", 1384), ("qnli", "test", 5463),
    ("cola", "train", 8551), ("cola", "test", 1043), ("imdb", "train", 24996), ("imdb", "test", 24996),
    ("ethics_deontology", "train", 18164), ("ethics_deontology", "test", 3596),
    ("ethics_justice", "train", 21791), ("ethics_justice", "test", 2704),
    ("adv_sst2", "test", 148), ("adv_qqp", "test", 78), ("adv_mnli_3way", "test", 121),
    ("adv_mnli_mm_3way", "test", 162), ("adv_qnli", "test", 148), ("adv_rte", "test", 81),
]


@pytest.mark.parametrize("task,split,rows", REAL_COUNTS)
def test_real_files_row_counts(shared_root, task, split, rows):
    if split == "train":  # train is split into train + dev; together they are the file
        parts = load_splits(task, cfg(shared_root), ("train", "dev"))
        n = len(parts["train"]) + (len(parts["dev"]) if task != "rte" else 0)
    else:
        n = len(load_split(task, split, cfg(shared_root)))
    assert n == rows


def test_real_label_balance(shared_root):
    sst = load_split("sst2", "test", cfg(shared_root))
    assert sst["label"].value_counts().to_dict() == {1: 444, 0: 428}
    qnli = load_split("qnli", "test", cfg(shared_root))
    assert qnli["label"].value_counts().to_dict() == {1: 2761, 0: 2702}
    assert len(load_split("adv_mnli", "test", cfg(shared_root))) == 121 - 39  # neutral dropped
    assert os.path.isfile(shared_root / "advglue/dev.json")


def test_balanced_sample_is_balanced_random_and_seeded():
    from lib.data import balanced_sample

    # IMDB-like: the file starts with every negative review, then every positive one
    df = pd.DataFrame({"text_a": [f"t{i}" for i in range(1000)], "label": [0] * 500 + [1] * 500})
    assert df["label"].iloc[:200].mean() == 0.0  # what "the first rows" used to give
    sample = balanced_sample(df, 200, seed=0)
    assert len(sample) == 200 and sample["label"].value_counts().to_dict() == {0: 100, 1: 100}
    assert sample["text_a"].tolist() != df["text_a"].iloc[:100].tolist() + df["text_a"].iloc[500:600].tolist()
    assert sample.equals(balanced_sample(df, 200, seed=0)) and not sample.equals(balanced_sample(df, 200, seed=1))
    skewed = pd.DataFrame({"text_a": list("abcdefghij"), "label": [0] * 8 + [1] * 2})
    assert balanced_sample(skewed, 10, seed=0)["label"].value_counts().to_dict() == {0: 2, 1: 2}
    with pytest.raises(ConfigError, match="at least 1 row"):
        balanced_sample(df, 0, seed=0)


def test_drop_overlap_removes_rows_sharing_any_text():
    from lib.data import drop_overlap

    adversarial = pd.DataFrame({"text_a": ["What is X?", "Who wrote Y?"], "text_b": ["X is z (perturbed).", "Q wrote Y."],
                                "label": [0, 1]})
    train = pd.DataFrame({"text_a": ["what is  x?", "Where is W?", "Who?"],
                          "text_b": ["X is z.", "W is here.", "Q wrote Y."], "label": [0, 1, 1]})
    kept, removed = drop_overlap(train, adversarial)
    assert removed == 2 and kept["text_a"].tolist() == ["Where is W?"], "case/space-folded question; shared sentence"
    single = pd.DataFrame({"text_a": ["fine film", "X is z (perturbed)."], "label": [1, 0]})
    assert drop_overlap(single, adversarial)[1] == 1
