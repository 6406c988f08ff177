"""The results cache: runs keyed by configuration and data, tables by configuration and code,
read-only reuse of another results folder, and atomic writes that survive concurrent writers."""
from __future__ import annotations

import json
import multiprocessing as mp
from pathlib import Path

import pandas as pd
import pytest
import torch

from lib import chapters, store
from lib.experiments import Experiment
from lib.io import write_json
from lib.store import ResultsStore, code_version, data_fingerprint, fingerprint


def small_smoke(**tune):
    return Experiment("smoke").profile.replace(tasks=["synthetic"], seeds=[0],
                                               tune={"max_steps": 20, "eval_every": 10, **tune})


def test_fingerprint_is_order_free_and_value_sensitive():
    assert fingerprint({"a": 1, "b": [1, 2]}) == fingerprint({"b": [1, 2], "a": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 2})
    a = pd.DataFrame({"text": ["x", "y"], "label": [0, 1]})
    assert data_fingerprint(a) == data_fingerprint(a.copy())
    assert data_fingerprint(a) != data_fingerprint(a.iloc[::-1])
    assert data_fingerprint(a) != data_fingerprint(a.assign(label=[1, 1]))


def test_changed_tuning_setting_tunes_a_new_prompt_beside_the_old(tmp_path):
    exp = Experiment(small_smoke(), tmp_path, progress=False)
    first = exp.tune("synthetic", 0)
    old_dir = exp.prompt_dir("synthetic", 0)
    changed = Experiment(small_smoke(max_steps=30), tmp_path, progress=False)
    second = changed.tune("synthetic", 0)  # once: CheckpointError 'made with another configuration'
    new_dir = changed.prompt_dir("synthetic", 0)
    assert new_dir != old_dir and new_dir.parent == old_dir.parent
    assert second.steps == 30 and first.steps == 20
    assert torch.equal(Experiment(small_smoke(), tmp_path, progress=False).prompt("synthetic", 0), first.prompt)


def test_changed_data_is_another_run(tmp_path):
    exp = Experiment(small_smoke(), tmp_path, progress=False)
    other = Experiment(small_smoke().replace(data={"seed": 7}), tmp_path, progress=False)
    assert exp.prompt_dir("synthetic", 0) != other.prompt_dir("synthetic", 0)
    assert exp.run_signature("synthetic", 0)["data"] != other.run_signature("synthetic", 0)["data"]


def test_table_is_recomputed_when_code_or_config_changes(tmp_path, monkeypatch):
    s = ResultsStore(tmp_path)
    calls = []

    def compute():
        calls.append(1)
        return pd.DataFrame({"x": [len(calls)]})

    assert s.table("t", {"a": 1}, compute).x[0] == 1
    assert s.table("t", {"a": 1}, compute).x[0] == 1 and len(calls) == 1, "same key: read from disk"
    assert s.table("t", {"a": 2}, compute).x[0] == 2, "another configuration"
    monkeypatch.setattr(store, "code_version", lambda: "edited-lib")
    assert s.table("t", {"a": 2}, compute).x[0] == 3, "same configuration, other code"
    meta = json.loads((tmp_path / "tables" / "t.json").read_text())
    assert meta["code"] == "edited-lib" and meta["config"] == {"a": 2}


def test_code_version_covers_the_code_the_chapters_tables_reach():
    from lib import code_identity

    names = {d.where.removeprefix("lib/") for d in code_identity.reach(code_identity.FAMILIES["cached results"])}
    assert {"chapters.py", "transfer_study.py", "experiments.py", "skill_neurons.py", "analyses.py", "hooks.py",
            "models.py", "tuning.py", "data.py", "formats.py", "indicators.py", "projector.py"} <= names
    assert not names & {"runner.py", "notebook.py", "book_config.py", "tiny.py", "validation.py", "store.py"}
    assert len(code_version()) == store.KEY_CHARS


def test_reuse_reads_matching_results_and_writes_only_into_its_own_folder(tmp_path):
    committed, scratch = tmp_path / "committed", tmp_path / "scratch"
    base = Experiment(small_smoke(), committed, progress=False)
    table = chapters.tuning_table(base)
    before = sorted(p.relative_to(committed) for p in committed.rglob("*") if p.is_file())
    mtimes = {p: p.stat().st_mtime_ns for p in committed.rglob("*") if p.is_file()}

    reuse = Experiment(small_smoke(), scratch, progress=False, reuse=[committed])
    pd.testing.assert_frame_equal(chapters.tuning_table(reuse), table)
    assert reuse.prompt_dir("synthetic", 0).is_relative_to(committed), "the finished run is read where it is"
    assert not (scratch / "smoke" / "main" / "prompts").exists() and not (scratch / "smoke" / "main" / "tables").exists()

    changed = Experiment(small_smoke(max_steps=30), scratch, progress=False, reuse=[committed])
    chapters.tuning_table(changed)
    assert changed.prompt_dir("synthetic", 0).is_relative_to(scratch)
    assert sorted(p.relative_to(committed) for p in committed.rglob("*") if p.is_file()) == before
    assert all(p.stat().st_mtime_ns == t for p, t in mtimes.items()), "nothing in the reused folder changed"


def test_unfinished_run_in_reuse_folder_is_copied_before_resuming(tmp_path):
    committed, scratch = tmp_path / "committed", tmp_path / "scratch"
    exp = Experiment(small_smoke(), committed, progress=False)
    sig = exp.run_signature("synthetic", 0)
    unfinished = ResultsStore(committed / "smoke" / "main").run_dir("prompts/synthetic/seed0", sig)
    unfinished.mkdir(parents=True)
    (unfinished / "state.pt").write_bytes(b"x")
    write_json(unfinished / "metrics.json", {"finished": False})
    got = ResultsStore(scratch, [committed / "smoke" / "main"]).run_dir("prompts/synthetic/seed0", sig)
    assert got.is_relative_to(scratch) and (got / "state.pt").read_bytes() == b"x"


def _hammer(path: str, worker: int) -> None:
    from lib.io import write_json as w
    for i in range(40):
        w(Path(path), {"worker": worker, "i": i, "payload": "x" * 20_000})


def test_concurrent_writers_never_leave_a_torn_file(tmp_path):
    target = tmp_path / "shared.json"
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_hammer, args=(str(target), w)) for w in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    data = json.loads(target.read_text())
    assert data["i"] == 39 and len(data["payload"]) == 20_000
    assert not list(tmp_path.glob(".*.tmp")), "no temporary left behind"


def test_written_files_follow_the_umask(tmp_path):
    write_json(tmp_path / "a.json", {})
    mode = (tmp_path / "a.json").stat().st_mode & 0o777
    import os
    mask = os.umask(0)
    os.umask(mask)
    assert mode == 0o666 & ~mask


@pytest.mark.slow  # one fresh interpreter per module; make test-fast leaves it out
@pytest.mark.parametrize("module", ["lib.experiments", "lib.chapters", "lib.transfer_study", "lib.notebook"])
def test_test_bed_is_not_imported_by_production_code(module):
    import subprocess
    import sys
    code = f"import sys, {module}; print('lib.tiny' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(store.__file__).parents[1])
    assert out.stdout.strip() == "False", out.stderr


def test_code_text_ignores_documentation_but_not_code():
    from lib.code_identity import code_text

    src = '"""Module doc."""\n\ndef f(x):\n    """Doc: p = x + 1."""\n    # a comment\n    return x + 1  # trailing\n'
    documented = src.replace("Doc: p = x + 1.", "Doc with a formula: $p = x + 1$, longer.\n    Two lines.")
    assert code_text(src) == code_text(documented) == "def f(x):\nreturn x + 1"
    assert code_text(src) != code_text(src.replace("x + 1  #", "x + 2  #"))
    method = '    def g(self):\n        """Doc."""\n        return 1  # c\n'
    assert code_text(method) == "def g(self):\nreturn 1", "an indented method parses as a block"


def test_profile_catalog_is_data_not_code():
    """Adding a profile must not invalidate every cached table: its values are in the keys instead."""
    from lib import code_identity

    for roots in code_identity.FAMILIES.values():
        assert "lib/catalog.py" not in {d.where for d in code_identity.reach(roots)}


def test_cached_only_reads_a_cached_table_and_refuses_to_compute_one(tmp_path):
    from lib.notebook import NotCached, cached_only

    st = ResultsStore(tmp_path)
    calls = []

    def compute():
        calls.append(1)
        return pd.DataFrame({"a": [1, 2]})

    with cached_only(st), pytest.raises(NotCached, match="'t'"):
        st.table("t", {"k": 1}, compute)
    assert calls == [] and not (tmp_path / "tables" / "t.csv").exists()
    st.table("t", {"k": 1}, compute)  # outside: computed and cached as usual
    with cached_only(st):
        assert st.table("t", {"k": 1}, compute)["a"].tolist() == [1, 2]
        with pytest.raises(NotCached):
            st.table("t", {"k": 2}, compute)  # another key is another table
    assert calls == [1] and "table" not in vars(st), "the store is restored"


def test_the_store_notes_what_it_reused_and_computed_where_the_runner_asks(tmp_path, monkeypatch):
    from lib.progress import CACHE_ENV, cache_counts, cache_event

    log = tmp_path / "cache.log"
    s = ResultsStore(tmp_path / "r")
    s.table("t", {"a": 1}, lambda: pd.DataFrame({"x": [1]}))  # no variable: nothing noted anywhere
    monkeypatch.setenv(CACHE_ENV, str(log))
    s.table("t", {"a": 1}, lambda: pd.DataFrame({"x": [1]}))
    s.table("t", {"a": 2}, lambda: pd.DataFrame({"x": [2]}))
    s.tensors("n/x.safetensors", {"b": 1}, lambda: {"w": torch.ones(2)})
    s.tensors("n/x.safetensors", {"b": 1}, lambda: {"w": torch.zeros(2)})
    assert log.read_text().splitlines() == ["reused\ttable t", "computed\ttable t", "computed\ttensors n/x.safetensors",
                                            "reused\ttensors n/x.safetensors"]
    assert cache_counts(log) == {"reused": 2, "computed": 2}
    assert cache_counts(tmp_path / "missing.log") == {"reused": 0, "computed": 0}
    with pytest.raises(ValueError, match="cache outcome must be one of reused, computed, got 'hit'"):
        cache_event("hit", "table t")


# --- resumable table computations (ResultsStore.part) ------------------------------------------------------
def _three_parts(store: store.ResultsStore, computed: list[str], config: dict, fail_at: str | None = None):
    """A table of three pieces; `fail_at` raises inside that piece (an interruption)."""
    def piece(label: str) -> pd.DataFrame:
        computed.append(label)
        if label == fail_at:
            raise KeyboardInterrupt
        i = "abc".index(label)
        return pd.DataFrame({"piece": [label] * 2, "x": [i / 3, float("nan")], "n": [i, i + 1], "ok": [True, False]})

    return store.table("demo", config, lambda: pd.concat([store.part(p, lambda p=p: piece(p)) for p in "abc"],
                                                         ignore_index=True))


def test_an_interrupted_table_resumes_from_its_finished_pieces_and_writes_the_same_bytes(tmp_path):
    whole = store.ResultsStore(tmp_path / "whole")
    _three_parts(whole, [], {"v": 1})
    resumed, computed = store.ResultsStore(tmp_path / "resumed"), []
    with pytest.raises(KeyboardInterrupt):
        _three_parts(resumed, computed, {"v": 1}, fail_at="c")
    assert computed == ["a", "b", "c"] and sorted(p.name for p in (tmp_path / "resumed/tables/demo.parts").iterdir()) == [
        "a.csv", "a.json", "b.csv", "b.json"]
    computed.clear()
    _three_parts(resumed, computed, {"v": 1})
    assert computed == ["c"]  # a and b came from disk
    assert (tmp_path / "resumed/tables/demo.csv").read_bytes() == (tmp_path / "whole/tables/demo.csv").read_bytes()
    assert not (tmp_path / "resumed/tables/demo.parts").exists()  # the table holds them now


def test_pieces_of_another_configuration_are_not_reused_and_a_piece_outside_a_table_is_not_stored(tmp_path):
    s, computed = store.ResultsStore(tmp_path), []
    with pytest.raises(KeyboardInterrupt):
        _three_parts(s, computed, {"v": 1}, fail_at="b")
    computed.clear()
    _three_parts(s, computed, {"v": 2})
    assert computed == ["a", "b", "c"]
    assert s.part("loose", lambda: pd.DataFrame({"x": [1]})).x.tolist() == [1]
    assert not list(tmp_path.rglob("loose*"))
