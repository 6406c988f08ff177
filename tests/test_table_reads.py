"""A cached table is reused across changes of profile fields it does not read, and only those (lib.table_reads).

The declarations are checked against what the code really reads: every table of the smoke profile is
computed with a profile that records each field read while a table (and what it needs) is computed.
"""
from __future__ import annotations

import dataclasses
import weakref
from pathlib import Path

import pandas as pd
import pytest

from lib import table_reads
from lib.catalog import PROFILES
from lib.experiments import Experiment
from lib.profiles import LABELS, Profile
from lib.store import ResultsStore

FIELDS = tuple(f.name for f in dataclasses.fields(Profile) if f.name not in LABELS)


def _config(profile: dict, **args) -> dict:
    """A table configuration as `lib.chapters.cached` builds it."""
    return {"profile": profile, "control": False, "args": args or "v1"}


def _counting(store: ResultsStore, name: str, config: dict) -> int:
    """1 when `store.table` computed `name` for `config`, 0 when it reused a stored table."""
    calls = []
    store.table(name, config, lambda: calls.append(1) or pd.DataFrame({"x": [1]}))
    return len(calls)


@pytest.mark.parametrize("name", ["prompt_tuning", "task_status", "transfer", "transfer_curves", "backbone_probe",
                                  "adversarial", "suppression_zero", "suppression_mean", "skill_neuron_controls",
                                  "rn3-label-permutation", "projector", "pruning", "other_tuning", "model_tuning",
                                  "claim-SN1", "indicators", "transfer_runs"])
def test_changing_each_profile_field_in_turn_recomputes_exactly_the_tables_that_read_it(tmp_path, name):
    base = PROFILES["smoke"].as_dict()
    store = ResultsStore(tmp_path)
    assert _counting(store, name, _config(base)) == 1
    assert _counting(store, name, _config(base)) == 0
    read = table_reads.reads(name)
    for field in FIELDS:
        changed = {**base, field: ["changed"]}
        missed = _counting(ResultsStore(tmp_path / "scratch", reuse=[tmp_path]), name, _config(changed))
        assert missed == (read is None or field in read), (name, field)
    # a label of the profile and the chapter's own arguments always count
    assert _counting(ResultsStore(tmp_path / "other", reuse=[tmp_path]), name, _config(base, tasks=["x"])) == 1


def test_an_unrelated_override_reuses_the_suppression_table_and_a_related_one_recomputes_it(tmp_path):
    base = PROFILES["smoke"]
    store = ResultsStore(tmp_path)
    assert _counting(store, "suppression_zero", _config(base.as_dict())) == 1
    assert _counting(store, "suppression_zero", _config(base.replace(top_fraction=0.05).as_dict())) == 0
    assert _counting(store, "suppression_zero",
                     _config(base.replace(suppression_fractions=(0.0, 0.1)).as_dict())) == 1


def test_a_table_computed_by_other_code_is_never_reused_for_an_unread_field(tmp_path, monkeypatch):
    base = PROFILES["smoke"]
    store = ResultsStore(tmp_path)
    _counting(store, "suppression_zero", _config(base.as_dict()))
    monkeypatch.setattr("lib.store.code_version", lambda: "another code")
    assert _counting(store, "suppression_zero", _config(base.replace(top_fraction=0.05).as_dict())) == 1


def test_same_inputs_known_answers():
    p = {"tasks": ["a"], "top_fraction": 0.01, "suppression_fractions": [0.0, 0.01]}
    assert table_reads.same_inputs("suppression_zero", {"profile": p, "args": 1},
                                   {"profile": {**p, "top_fraction": 0.5}, "args": 1})
    assert not table_reads.same_inputs("suppression_zero", {"profile": p, "args": 1},
                                       {"profile": {**p, "top_fraction": 0.5}, "args": 2})
    # a tuple now equals the list it was stored as; a field missing on one side is a difference
    assert table_reads.same_inputs("transfer", {"profile": {**p, "tasks": ["a"]}}, {"profile": {**p, "tasks": ("a",)}})
    assert not table_reads.same_inputs("transfer", {"profile": {}}, {"profile": {"tasks": ["a"]}})
    assert not table_reads.same_inputs("undeclared", {"profile": p}, {"profile": {**p, "top_fraction": 0.5}})
    assert table_reads.reads("suppression_mean") == table_reads.reads("suppression_zero")
    assert table_reads.reads("claim-SN1") is None  # not declared: every field counts


# --- the declarations against what the code reads ----------------------------------------------------------
_ACTIVE: list[set[str]] = []  # the recorders of the computations running now (a table's, and those around it)
_TRACED = frozenset(FIELDS)


class RecordingProfile(Profile):
    """A profile that notes every field read into the recorders of the computations running now."""

    def __getattribute__(self, name: str):
        if name in _TRACED:
            for recorder in _ACTIVE:
                recorder.add(name)
        return object.__getattribute__(self, name)


def _recording(profile: Profile) -> Profile:
    return RecordingProfile(**{f.name: getattr(profile, f.name) for f in dataclasses.fields(profile)})


@pytest.fixture
def observed(tmp_path, monkeypatch) -> dict[str, set[str]]:
    """name -> profile fields read while computing that table, its upstream results included."""
    seen: dict[str, set[str]] = {}
    experiments: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
    init, table = Experiment.__init__, ResultsStore.table

    def register(self, *args, **kwargs):
        init(self, *args, **kwargs)
        experiments[id(self.store)] = self

    def recording_table(self, name, config, compute):
        computed = []

        def traced():
            exp = experiments.get(id(self))
            if exp is not None:  # forget what the experiment derived from its profile before: read it again
                exp._splits.clear(), exp._overlap.clear(), exp._encoded.clear(), exp.__dict__.pop("backbone", None)
            recorder: set[str] = set()
            _ACTIVE.append(recorder)
            try:
                return compute()
            finally:
                _ACTIVE.remove(recorder)
                seen.setdefault(name, set()).update(recorder)
                computed.append(name)

        result = table(self, name, config, traced)
        if not computed:  # reused: what it read is read by whatever uses it
            for recorder in _ACTIVE:
                recorder.update(seen.get(name, _TRACED))
        return result

    monkeypatch.setattr(Experiment, "__init__", register)
    monkeypatch.setattr(ResultsStore, "table", recording_table)
    return seen


@pytest.mark.slow
def test_every_smoke_table_declares_every_profile_field_its_computation_reads(tmp_path, observed):
    from lib import applications, chapters, claims, label_permutation
    from lib.controls import skill_neuron_controls
    from lib.probe import probe_table
    from lib.transfer_study import TransferMethods, get_study

    def exp(**kw) -> Experiment:  # a fresh experiment per chapter, as each notebook opens its own
        return Experiment(_recording(PROFILES["smoke"]), tmp_path, progress=False, **kw)

    chapters.tuning_table(exp())
    statuses = claims.statuses_cached(exp())
    chapters.transfer_table(exp())
    chapters.adversarial_table(exp())
    chapters.suppression_table(exp())
    claims.claims_cached(exp(), statuses)
    label_permutation.rn3_permutation_table(exp(), statuses)
    learned = tuple(t for t, s in statuses.items() if s.learned)
    skill_neuron_controls(exp(), learned)
    probe_table(exp())
    chapters.tuning_table(exp(control=True), (PROFILES["smoke"].tasks[0],))
    tm = TransferMethods(exp(), get_study("smoke", {"seeds": [0], "steps": 10, "eval_every": 5}))
    tm.indicator_table(), tm.runs_table(), tm.projector_table()
    cfg = applications.get_applications("smoke")
    for table in (applications.pruning_table, applications.other_tuning_table, applications.model_tuning_table):
        table(exp(), cfg)

    assert {"prompt_tuning", "task_status", "transfer", "suppression_zero", "pruning"} <= set(observed)
    undeclared = {name: sorted(fields - set(table_reads.reads(name) or _TRACED))
                  for name, fields in observed.items()}
    assert not {k: v for k, v in undeclared.items() if v}, (
        f"tables read profile fields lib.table_reads does not declare: {undeclared}; observed: "
        f"{ {k: sorted(v) for k, v in observed.items()} }")
