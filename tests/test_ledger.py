"""The profile's verdict family (lib.ledger), the t-test p of the run-level verdicts and RN3's
label-permutation null (lib.label_permutation): known answers."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from lib import label_permutation as lp
from lib import ledger
from lib.chapter_verdicts import gain_verdict, t_p_value
from lib.verdicts import Interval, Verdict

from test_claims import _table


def test_p_from_the_interval_or_its_normal_approximation():
    assert ledger.p_value(Interval(0.1, 0.0, 0.2, 5, 0.012)) == (0.012, "interval")
    # estimate 1.96 se from the null, se = (hi - lo) / (2 * 1.96) = 0.1: two-sided p = 0.05
    p, source = ledger.p_value(Interval(0.196, 0.0, 0.392), null=0.0)
    assert p == pytest.approx(0.05, abs=1e-4) and source == "normal approximation"
    assert ledger.p_value(Interval(0.5, 0.5, 0.5), null=0.5)[0] == 1.0
    assert ledger.p_value(None) == (None, "")


def test_t_p_value_is_the_one_sample_t_test_the_interval_inverts():
    x = [1.0, 2.0, 3.0]
    assert t_p_value(x, 0.0) == pytest.approx(stats.ttest_1samp(x, 0.0).pvalue)
    assert t_p_value(x, 0.0) == pytest.approx(0.0742, abs=1e-4)
    assert t_p_value([0.2, 0.2], 0.0) == 0.0 and t_p_value([0.0, 0.0], 0.0) == 1.0
    iv, v = gain_verdict([0.01, 0.03, 0.02, 0.04])
    # the p-value and the interval agree: the interval excludes 0 exactly when p < 0.05
    assert iv.p == pytest.approx(stats.ttest_1samp([0.01, 0.03, 0.02, 0.04], 0.0).pvalue) and iv.p < 0.05
    assert v.label == "supported" and iv.n_seeds == 4


def _entry(name, p, label="supported", chapter="c"):
    iv = None if p is None else Interval(0.1, 0.05, 0.15, 5, p)
    return ledger.entry(chapter, name, iv, Verdict(label, "r"))


def test_holm_over_the_whole_family_known_answer():
    """p = 0.01, 0.04, 0.03 and an untestable verdict: m = 3, Holm 0.03, 0.06, 0.06."""
    fam = ledger.family([_entry("a", 0.01), _entry("b", 0.04), _entry("c", 0.03), _entry("d", None, "untestable")])
    fam = fam.set_index("name")
    assert fam.loc["a", "p_holm"] == pytest.approx(0.03) and fam.loc["a", "verdict_holm"] == "supported"
    assert fam.loc["b", "p_holm"] == pytest.approx(0.06) and fam.loc["b", "verdict_holm"] == "not supported"
    assert fam.loc["c", "p_holm"] == pytest.approx(0.06) and "unadjusted: supported" in fam.loc["c", "reason_holm"]
    assert np.isnan(fam.loc["d", "p_holm"]) and fam.loc["d", "verdict_holm"] == "untestable"
    shown = ledger.family_frame(fam.reset_index()).set_index("verdict of")
    assert list(shown.columns) == ["chapter", "estimate [95 % interval]; p", "verdict"]
    assert shown.loc["a", "estimate [95 % interval]; p"] == "0.100 [0.050, 0.150]; p = 0.01 (after Holm 0.03)"
    assert shown.loc["b", "verdict"] == "supported; after Holm: not supported" and shown.loc["d", "verdict"] == "untestable"
    assert ledger.holm_changes(fam.reset_index()) == ["c: b (supported → not supported)",
                                                      "c: c (supported → not supported)"]


def _exp(tmp_path, lr=0.3):
    return SimpleNamespace(shared=tmp_path / "mini", profile=SimpleNamespace(as_dict=lambda: {"name": "mini", "lr": lr}))


def test_chapters_recorded_under_other_settings_are_left_out(tmp_path):
    exp, other = _exp(tmp_path), _exp(tmp_path, lr=0.1)
    ledger.record(exp, "pruning", [_entry("keep top", 0.02, chapter="pruning")])
    ledger.record(other, "panda", [_entry("panda gain", 0.2, "not supported", chapter="panda")])
    rows, left_out = ledger.read_chapters(exp)
    assert list(rows.name) == ["keep top"] and left_out == ["panda"]
    with pytest.raises(Exception, match="must name that chapter"):
        ledger.record(exp, "pruning", [_entry("x", 0.1, chapter="panda")])


def test_the_claims_table_takes_its_holm_columns_from_the_family(tmp_path):
    """Alone, SN1 (p 0.001) and RN2a (p 0.03) survive Holm over two; with four chapter verdicts at p 0.01 the
    family has m = 6: sorted p .001 .01 .01 .01 .01 .03 -> Holm .006 .05 .05 .05 .05 .05 (running maximum), so
    RN2a's adjusted p is 0.05, not below 0.05, and it is no longer supported."""
    exp = _exp(tmp_path)
    claims = _table(extra=[("RN2a", 0.03, "supported")])
    ledger.record(exp, "task_specificity", [_entry(f"v{i}", 0.01, chapter="task_specificity") for i in range(4)])
    fam, left_out = ledger.profile_family(exp, claims)
    assert left_out == [] and fam.p_holm.notna().sum() == 6
    out = ledger.with_family_holm(claims, fam).set_index("claim_id")
    assert out.loc["SN1", "verdict_holm"] == "supported" and out.loc["RN2a", "verdict_holm"] == "not supported"
    assert out.loc["RN2a", "p_holm"] == pytest.approx(0.05) and out.loc["SN1", "p_holm"] == pytest.approx(0.006)
    md = ledger.claims_markdown(out.reset_index(), fam)
    assert "every tested verdict of this profile" in md and "6 in all" in md
    paths = ledger.write_claims(out.reset_index(), fam, exp.shared)
    assert [p.name for p in paths] == ["claims.csv", "claims.md", "verdicts.csv"]
    assert "profile_key" not in pd.read_csv(paths[2]).columns


def test_permutation_null_known_answers():
    y = np.r_[np.ones(50), np.zeros(50)].astype(int)
    perfect = np.stack([y, y])  # two seeds, both rules exact
    constant = np.ones((2, 100), dtype=int)  # says 1 always: the majority rate under every permutation
    t = lp.permutation_null({"a": perfect, "b": constant}, {"a": y, "b": y}, n_permutations=200).set_index("task")
    assert t.loc["a", "observed"] == 1.0 and t.loc["a", "p"] == pytest.approx(1 / 201)
    assert t.loc["a", "null_mean"] == pytest.approx(0.5, abs=0.02)
    assert t.loc["b", "observed"] == 0.5 and t.loc["b", "null_mean"] == 0.5 and t.loc["b", "p"] == 1.0
    assert t.loc["all", "observed"] == pytest.approx(0.75) and t.loc["all", "p"] == pytest.approx(1 / 201)
    assert t.loc["all", "n_examples"] == 200 and t.loc["all", "n_seeds"] == 2
    with pytest.raises(Exception, match="do not match"):
        lp.permutation_null({"a": perfect[:, :10]}, {"a": y})


def test_a_label_blind_rule_is_not_supported_and_a_good_one_is():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 300)
    blind = rng.integers(0, 2, (5, 300))
    good = np.where(rng.random((5, 300)) < 0.7, y, 1 - y)
    for preds, label in ((blind, "not supported"), (good, "supported")):
        table = lp.permutation_null({"a": preds}, {"a": y}, n_permutations=300)
        e = lp.ledger_entry(table)
        assert e.verdict == label and e.chapter == "claims" and e.name == lp.PERMUTATION_NAME
        assert ("supported" if label == "supported" else "not supported") in lp.permutation_sentence(table)
    assert lp.ledger_entry(pd.DataFrame(columns=list(lp.COLUMNS))).verdict == "untestable"


def test_rule_predictions_are_recovered_from_correctness(monkeypatch):
    """held_out_neuron gives 1[r = y]; the rule's prediction is y where correct, else 1 - y."""
    import torch

    from lib import claims

    y = np.array([1, 0, 1, 0])
    correct = {0: np.array([1.0, 1.0, 0.0, 0.0]), 1: np.array([0.0, 1.0, 1.0, 1.0])}
    monkeypatch.setattr(claims, "held_out_neuron", lambda exp, t, prompt, layer, neuron: correct[prompt])
    exp = SimpleNamespace(mean_scores=lambda t, split: torch.zeros(2, 3), encoded=lambda t, s: SimpleNamespace(labels=y),
                          prompt=lambda t, s: s, profile=SimpleNamespace(seeds=(0, 1)))
    preds, labels = lp.rule_predictions(exp, "a")
    assert preds.tolist() == [[1, 0, 0, 1], [0, 0, 1, 0]] and labels.tolist() == y.tolist()


def test_every_chapter_that_prints_a_verdict_records_it_and_claims_runs_last():
    """The family is complete only if each template that prints a verdict (`describe(`, `..._verdict(`) also records it, and
    the Claims chapter, which reads the records, runs after every other chapter."""
    from lib.runner import NOTEBOOKS, TEMPLATES

    import re

    printing = [n for n in NOTEBOOKS if re.search(r"describe\(|_verdicts?\(", (TEMPLATES / f"{n}.ipynb").read_text())]
    assert len(printing) >= 10
    missing = [n for n in printing if n != "claims" and f'ledger.record(exp, \\"{n}\\"' not in (TEMPLATES / f"{n}.ipynb").read_text()]
    assert missing == []
    assert sorted(n for n in printing if n != "claims") == sorted(ledger.VERDICT_CHAPTERS)
    assert NOTEBOOKS[-1] == "claims"


def test_a_partial_family_says_which_chapters_it_lacks(tmp_path):
    exp = _exp(tmp_path)
    claims = _table()
    fam, left_out = ledger.profile_family(exp, claims)
    text = ledger.coverage_sentence(fam, left_out)
    assert text.startswith("The family is partial") and "pruning" in text and "task_specificity" in text
    for chapter in ledger.VERDICT_CHAPTERS:
        ledger.record(exp, chapter, [_entry("v", 0.2, "not supported", chapter=chapter)])
    fam, left_out = ledger.profile_family(exp, claims)
    assert ledger.coverage_sentence(fam, left_out).startswith("The family holds the verdicts of all 10 chapters")


def test_a_percentile_interval_stays_within_0_and_100():
    """Three seeds at percentiles 99, 60 and 100: the t interval's upper end (about 154) is cut to 100; the
    p-value is the t test's, unchanged by the cut."""
    from lib.chapter_verdicts import percentile_verdict

    adv = pd.DataFrame({"task": ["a"] * 3, "seed": [0, 1, 2], "adv_percentile": [99.0, 60.0, 100.0]})
    iv, v = percentile_verdict(adv, {"a"})
    assert iv.hi == 100.0 and iv.lo > 0 and iv.p == pytest.approx(stats.ttest_1samp([99, 60, 100], 50).pvalue)
