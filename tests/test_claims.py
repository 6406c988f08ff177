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


def test_neurons_are_selected_on_dev_and_judged_on_test(monkeypatch):
    """Position and sign are chosen on dev; the reported correctness is on test with that rule unchanged;
    the threshold is the mean over the experiment's label-balanced train sample."""
    calls = []
    rng = np.random.default_rng(0)
    y_test, y_dev = rng.integers(0, 2, 200), rng.integers(0, 2, 120)

    def fake_values(exp, task, prompt, split, layer, neuron):
        calls.append(split)
        if split == "train":
            return np.zeros((50, 3)), np.r_[np.zeros(25), np.ones(25)].astype(int)
        y = y_test if split == "test" else y_dev
        values = rng.normal(size=(len(y), 3))
        values[:, 2] = np.where(y == 1, -1.0, 1.0)  # position 2 fires for label 0: a negated rule
        return values, y

    monkeypatch.setattr(claims, "_neuron_values", fake_values)
    correct = claims.held_out_neuron(object(), "t", None, 1, 5)
    assert calls == ["train", "dev", "test"]
    assert len(correct) == len(y_test) and correct.mean() == 1.0  # the negated rule found on dev holds on test


class _FakeExp:
    """Records which split each selection and evaluation reads."""

    def __init__(self, seeds=(0, 1, 2, 3, 4), draws=8):
        from types import SimpleNamespace

        self.profile = SimpleNamespace(suppression_fractions=(0.0, 0.5), seeds=seeds, n_random_draws=draws,
                                       tasks=("a",))
        self.splits_read = []

    def mean_scores(self, task, eval_task=None, split="test"):
        import torch

        self.splits_read.append(("select", split))
        return torch.arange(12, dtype=torch.float32).reshape(2, 6)


def test_suppression_selects_on_dev_and_averages_many_random_draws(monkeypatch):
    exp = _FakeExp()
    st = {"a": TaskStatus("a", Interval(0.9, 0.85, 0.95), 0.9, 0.5, True, "ok")}
    seen = []

    def fake_correct(exp_, task, seed, mask, draw_seed):
        seen.append((seed, draw_seed, int(mask.sum())))
        skill = draw_seed == seed
        return np.r_[np.ones(60), np.zeros(40)] if skill else np.r_[np.ones(90), np.zeros(10)]

    monkeypatch.setattr(claims, "suppression_correct", fake_correct)
    est, missing, tasks = claims.suppression_claim(exp, st, n_boot=200)
    assert exp.splits_read == [("select", "dev")] and missing == "" and tasks == "a"
    assert len(seen) == 5 * (1 + 8) and all(n == 6 for _, _, n in seen)  # 50 % of 6 neurons in each of 2 layers
    assert est.interval.estimate == pytest.approx(0.3) and est.interval.n_seeds == 5
    assert [t for t, _ in est.per_task] == ["a"] and est.per_task[0][1].estimate == pytest.approx(0.3)
    out = claims.per_task_outcomes(est, claims.ClaimSpec("x", "y"))
    assert out["tasks_supported"] == "1 of 1" and out["per_task"].startswith("a +0.300 [")


def test_per_task_outcomes_show_what_a_pooled_verdict_hides():
    """Pooled over two tasks the gap is positive, but one task carries it and the other reverses."""
    est = claims.Estimate(Interval(0.05, 0.01, 0.09), Interval(0.05, 0.03, 0.07),
                          (("sst2", Interval(0.12, 0.08, 0.16)), ("imdb", Interval(-0.02, -0.04, -0.01))))
    out = claims.per_task_outcomes(est, claims.ClaimSpec("x", "y"))
    assert out["tasks_supported"] == "1 of 2"
    assert out["per_task"] == "sst2 +0.120 [+0.080, +0.160] supported; imdb -0.020 [-0.040, -0.010] contradicted"


def test_the_learned_gate_reads_dev_and_reports_test(monkeypatch):
    """Dev says learned, test is poor: learned, and the reported accuracy is test's (and vice versa)."""
    from types import SimpleNamespace

    labels = np.r_[np.ones(50), np.zeros(50)].astype(int)
    good = claims.Evaluated(np.stack([(np.arange(100) < 90).astype(float)] * 5), labels, (0.9,) * 5)
    poor = claims.Evaluated(np.stack([(np.arange(100) < 50).astype(float)] * 5), labels, (0.33,) * 5)
    exp = SimpleNamespace(profile=SimpleNamespace(tasks=("a",)))
    for dev, test, learned in ((good, poor, True), (poor, good, False)):
        monkeypatch.setattr(claims, "evaluated", lambda e, t, split="test", source=None: dev if split == "dev" else test)
        st = claims.task_statuses(exp)["a"]
        assert st.learned is learned and st.gate == "dev" and st.reported == "test"
        assert st.accuracy.estimate == pytest.approx(test.correct.mean()) and st.accuracy.n_seeds == 5
        assert st.reason.startswith("dev ") or "dev" in st.reason


def test_holm_over_the_claims_table():
    """p = 0.01, 0.03, 0.04 over three tested claims: Holm 0.03, 0.06, 0.06 -> only the first stays supported;
    the untestable claim is not in the family."""
    t = _table(extra=[("RN2a", 0.03, "supported"), ("RN3", 0.04, "supported")])
    t.loc[t.claim_id == "SN1", "p"] = 0.01
    h = claims.with_holm(t).set_index("claim_id")
    assert h.loc["SN1", "p_holm"] == pytest.approx(0.03) and h.loc["SN1", "verdict_holm"] == "supported"
    assert h.loc["RN2a", "p_holm"] == pytest.approx(0.06) and h.loc["RN2a", "verdict_holm"] == "not supported"
    assert h.loc["RN3", "p_holm"] == pytest.approx(0.06) and "unadjusted: supported" in h.loc["RN3", "reason_holm"]
    assert np.isnan(h.loc["RN1", "p_holm"]) and h.loc["RN1", "verdict_holm"] == "untestable"


def _table(extra=()):
    base = {"paper": "x", "backbone": "m", "profile": "mini", "null": 0.0, "published_value": np.nan,
            "published_source": "a paper, Table 1", "p_holm": np.nan, "verdict_holm": "", "reason_holm": ""}
    rows = [{**base, "claim_id": "RN1", "claim": "Within beats across", "tasks": "", "estimate": np.nan, "lo": np.nan,
             "hi": np.nan, "n_seeds": np.nan, "lo_examples": np.nan, "hi_examples": np.nan, "p": np.nan,
             "published": "+0.197", "verdict": "untestable", "reason": "needs learned tasks in two types",
             "tasks_supported": "", "per_task": ""},
            {**base, "claim_id": "SN1", "claim": "Skill hurts more", "tasks": "sst2", "estimate": 0.08, "lo": 0.047,
             "hi": 0.111, "n_seeds": 5, "lo_examples": 0.061, "hi_examples": 0.099, "p": 0.001,
             "published": "much larger", "verdict": "supported", "reason": "95 % interval [0.047, 0.111] lies entirely > 0",
             "tasks_supported": "1 of 2", "per_task": "sst2 +0.120 [+0.080, +0.160] supported; imdb ..."}]
    for cid, p, label in extra:
        rows.append({**rows[1], "claim_id": cid, "p": p, "verdict": label})
    return pd.DataFrame(rows, columns=list(claims.COLUMNS))


def test_sentences_state_the_computed_verdict():
    t = _table()
    s = claims.claim_sentence(t, "SN1")
    assert "supported" in s and "0.047 to 0.111" in s and "sst2" in s and "profile `mini`" in s
    assert "5 prompts each" in s and "examples only (prompts held fixed): [0.061, 0.099]" in s
    assert "(a paper, Table 1)" in s and "holds on 1 of 2 tasks on its own" in s
    u = claims.claim_sentence(t, "RN1")
    assert "untestable here" in u and "two types" in u
    with pytest.raises(KeyError, match="RN9"):
        claims.claim_sentence(t, "RN9")
    md = claims.claims_markdown(t)
    assert md.count("\n|") == 3 and "+0.080 [+0.047, +0.111] over 5 prompts" in md and "| — |" in md
    frame = claims.claims_frame(t)
    assert list(frame.columns)[-1] == "after Holm" and len(frame) == 2


def test_status_sentence_names_learned_and_untestable_tasks():
    st = {"sst2": TaskStatus("sst2", Interval(0.75, 0.72, 0.78), 0.75, 0.514, True, "ok"),
          "mrpc": TaskStatus("mrpc", Interval(0.70, 0.66, 0.74), 0.50, 0.684, False, "mean macro-F1 0.496 < 0.60")}
    s = claims.status_sentence(st)
    assert "Learned (1 of 2):** sst2 75.0% [72.0%, 78.0%] vs majority 51.4%" in s
    assert "mrpc (mean macro-F1 0.496 < 0.60)" in s
    assert claims.learned_tasks(st) == ["sst2"]


def test_claims_stay_outside_the_cached_computation():
    """The claims are recomputed (or keyed by `evidence_version`), so they must not change `code_version`."""
    from lib import code_identity

    names = {d.where for d in code_identity.reach(code_identity.FAMILIES["cached results"])}
    assert "lib/claims.py" not in names and "lib/verdicts.py" not in names and "lib/intervals.py" in names
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


def test_recipe_search_screen_ranks_and_judges_on_dev():
    t = pd.DataFrame([
        {"task": "imdb", "best_dev_acc": 0.60, "dev_majority": 0.51, "test_acc": 0.70, "test_macro_f1": 0.70, "majority": 0.50},
        {"task": "imdb", "best_dev_acc": 0.69, "dev_majority": 0.51, "test_acc": 0.58, "test_macro_f1": 0.54, "majority": 0.50},
        {"task": "cola", "best_dev_acc": 0.66, "dev_majority": 0.70, "test_acc": 0.71, "test_macro_f1": 0.60, "majority": 0.664}])
    s = summarise_screen(t)
    assert list(s.task) == ["cola", "imdb", "imdb"]
    assert list(s.best_dev_acc) == [0.66, 0.69, 0.60]  # ranked by dev, whatever test says
    assert list(s.meets_bar) == [False, True, True]  # cola: below its dev majority although test looks fine


def summarise_screen(t):
    from lib.recipe_search import summarise

    return summarise(t)


def test_recipe_screen_sentence():
    from lib.recipe_search import screen_sentence, summarise

    t = pd.DataFrame([
        {"task": "imdb", "lr": 0.02, "max_steps": 200, "max_length": 128, "best_dev_acc": 0.6867, "dev_majority": 0.52,
         "test_acc": 0.69, "test_macro_f1": 0.6875, "majority": 0.504},
        {"task": "cola", "lr": 0.02, "max_steps": 200, "max_length": 64, "best_dev_acc": 0.69, "dev_majority": 0.70,
         "test_acc": 0.664, "test_macro_f1": 0.399, "majority": 0.664}])
    s = screen_sentence(summarise(t), {"lr": 0.02, "max_steps": 200, "max_length": 64})
    assert s.startswith("cola: best dev accuracy 69.0% (dev majority 70.0%)") and "no recipe tried beats" in s
    assert "imdb: best dev accuracy 68.7% (dev majority 52.0%) with max_length 128; beats the dev majority rate" in s
