"""The claims table (lib.claims): balanced thresholds, split separation, published numbers, sentences."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lib import claims
from lib.verdicts import Interval, TaskStatus


def test_type_pairs():
    within, across = claims.type_pairs({"sst2": "sentiment", "imdb": "sentiment", "qnli": "nli"})
    assert sorted(within) == [("imdb", "sst2"), ("sst2", "imdb")]
    assert sorted(across) == [("imdb", "qnli"), ("qnli", "imdb"), ("qnli", "sst2"), ("sst2", "qnli")]
    # two topic tasks about different topics: neither within (labels differ) nor across (same type)
    types = {"sst2": "sentiment", "imdb": "sentiment", "newsgroups": "topic", "reuters": "topic"}
    labels = {"sst2": ("negative", "positive"), "imdb": ("negative", "positive"),
              "newsgroups": ("science", "politics"), "reuters": ("earnings", "acquisition")}
    within, across = claims.type_pairs(types, labels)
    assert sorted(within) == [("imdb", "sst2"), ("sst2", "imdb")]
    assert ("newsgroups", "reuters") not in across and ("sst2", "reuters") in across and len(across) == 8


def test_published_transfer_gap_known_answer():
    """Su et al.'s RoBERTa table: within-type off-diagonal mean (86.1 + 73.6 + 75.5 + 47.5 + 70.0 + 66.9) / 6
    = 69.93; across-type (1625.8 - 419.6) / 24 = 50.26; gap 19.68 points."""
    assert claims.published_transfer_gap("roberta-base") == pytest.approx(419.6 / 6 - 1206.2 / 24, abs=1e-6)


def test_neurons_are_selected_on_test_and_judged_on_dev(monkeypatch):
    """Position and sign are chosen on test; the reported correctness is on dev with that rule unchanged;
    the threshold is the mean over the experiment's label-balanced train sample."""
    calls = []
    rng = np.random.default_rng(0)
    y_test, y_dev = rng.integers(0, 2, 200), rng.integers(0, 2, 120)

    def fake_values(exp, task, seed, split, layer, neuron):
        calls.append(split)
        if split == "train":
            return np.zeros((50, 3)), np.r_[np.zeros(25), np.ones(25)].astype(int)
        y = y_test if split == "test" else y_dev
        values = rng.normal(size=(len(y), 3))
        values[:, 2] = np.where(y == 1, -1.0, 1.0)  # position 2 fires for label 0: a negated rule
        return values, y

    monkeypatch.setattr(claims, "_neuron_values", fake_values)
    correct = claims.held_out_neuron(object(), "t", 0, 1, 5)
    assert calls == ["train", "test", "dev"]
    assert len(correct) == len(y_dev) and correct.mean() == 1.0  # the negated rule found on test holds on dev


def _table():
    return pd.DataFrame([
        {"claim_id": "RN1", "claim": "Within beats across", "paper": "x", "backbone": "m", "profile": "mini",
         "tasks": "", "estimate": np.nan, "lo": np.nan, "hi": np.nan, "null": 0.0, "published": "+0.197",
         "verdict": "untestable", "reason": "needs learned tasks in two types"},
        {"claim_id": "SN1", "claim": "Skill hurts more", "paper": "y", "backbone": "m", "profile": "mini",
         "tasks": "sst2", "estimate": 0.08, "lo": 0.047, "hi": 0.111, "null": 0.0, "published": "much larger",
         "verdict": "supported", "reason": "95 % interval [0.047, 0.111] lies entirely > 0"}])


def test_sentences_state_the_computed_verdict():
    t = _table()
    s = claims.claim_sentence(t, "SN1")
    assert "supported" in s and "0.047 to 0.111" in s and "sst2" in s and "profile `mini`" in s
    u = claims.claim_sentence(t, "RN1")
    assert "untestable here" in u and "two types" in u
    with pytest.raises(KeyError, match="RN9"):
        claims.claim_sentence(t, "RN9")
    md = claims.claims_markdown(t)
    assert md.count("\n|") == 3 and "+0.080 [+0.047, +0.111]" in md and "| — |" in md


def test_status_sentence_names_learned_and_untestable_tasks():
    st = {"sst2": TaskStatus("sst2", Interval(0.75, 0.72, 0.78), 0.75, 0.514, True, "ok"),
          "mrpc": TaskStatus("mrpc", Interval(0.70, 0.66, 0.74), 0.50, 0.684, False, "mean macro-F1 0.496 < 0.60")}
    s = claims.status_sentence(st)
    assert "Learned (1 of 2):** sst2 75.0% [72.0%, 78.0%] vs majority 51.4%" in s
    assert "mrpc (mean macro-F1 0.496 < 0.60)" in s
    assert claims.learned_tasks(st) == ["sst2"]


def test_claims_stay_outside_the_cached_computation():
    """The claims are recomputed (or keyed by `evidence_version`), so they must not change `code_version`."""
    from lib.store import computing_modules

    names = {p.name for p in computing_modules()}
    assert "claims.py" not in names and "verdicts.py" not in names and "intervals.py" in names
    assert len(claims.evidence_version()) == 16


def test_each_claim_is_cached_on_its_own(tmp_path, monkeypatch):
    """A chapter computes only its claims; the claims chapter reuses them; nothing learned -> untestable."""
    from types import SimpleNamespace

    from lib.profiles import get_profile
    from lib.store import ResultsStore

    exp = SimpleNamespace(profile=get_profile("mini"), control=False, store=ResultsStore(tmp_path))
    none_learned = {"mrpc": TaskStatus("mrpc", Interval(0.70, 0.66, 0.74), 0.50, 0.684, False, "below")}
    calls = []
    real = claims.claims_table
    monkeypatch.setattr(claims, "claims_table", lambda *a, **k: calls.append(k["only"]) or real(*a, **k))
    t = claims.claims_cached(exp, none_learned, only=["RN4", "RN1"])
    assert list(t.claim_id) == ["RN4", "RN1"] and set(t.verdict) == {"untestable"}
    assert "all-MiniLM-L6-v2" in t.set_index("claim_id").loc["RN4", "reason"]
    assert "learned: none" in t.set_index("claim_id").loc["RN1", "reason"]
    assert sorted(calls) == [("RN1",), ("RN4",)]
    assert sorted(p.name for p in (tmp_path / "tables").glob("*.csv")) == ["claim-RN1.csv", "claim-RN4.csv"]
    again = claims.claims_cached(exp, none_learned, only=["RN1"])
    assert len(calls) == 2 and again.equals(t[t.claim_id == "RN1"].reset_index(drop=True))
    with pytest.raises(KeyError, match="RN7"):
        claims.claims_cached(exp, none_learned, only=["RN7"])


def test_recipe_search_screen():
    from lib.recipe_search import summarise

    t = pd.DataFrame([
        {"task": "imdb", "test_acc": 0.58, "test_macro_f1": 0.54, "majority": 0.50},
        {"task": "imdb", "test_acc": 0.69, "test_macro_f1": 0.69, "majority": 0.50},
        {"task": "cola", "test_acc": 0.664, "test_macro_f1": 0.40, "majority": 0.664},
        {"task": "mrpc", "test_acc": 0.66, "test_macro_f1": 0.61, "majority": 0.684}])
    s = summarise(t)
    assert list(s.task) == ["cola", "imdb", "imdb", "mrpc"]
    assert list(s.meets_bar) == [False, True, False, False]  # mrpc: F1 fine but below its majority rate


def test_recipe_screen_sentence():
    from lib.recipe_search import screen_sentence, summarise

    t = pd.DataFrame([
        {"task": "imdb", "lr": 0.02, "max_steps": 200, "max_length": 128, "test_acc": 0.69, "test_macro_f1": 0.6875,
         "majority": 0.504},
        {"task": "cola", "lr": 0.02, "max_steps": 200, "max_length": 64, "test_acc": 0.664, "test_macro_f1": 0.399,
         "majority": 0.664}])
    s = screen_sentence(summarise(t), {"lr": 0.02, "max_steps": 200, "max_length": 64})
    assert s.startswith("cola: best macro-F1 0.399") and "no recipe tried meets the bar (1 recipe(s) tried)" in s
    assert "imdb: best macro-F1 0.688 (accuracy 69.0%, majority 50.4%) with max_length 128; meets the bar" in s
