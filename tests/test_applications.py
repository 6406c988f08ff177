"""The application chapters' tables (pruning, other tuning methods, model tuning) on the smoke profile,
their configuration's validation and the verdicts read from them (known answers)."""
from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("peft")

from lib.applications import (ALL, APPLICATIONS, ApplicationsConfig, _across_tasks, get_applications,  # noqa: E402
                              model_tuning_table, model_tuning_verdicts, other_tuning_table, other_tuning_verdicts,
                              pruning_table, pruning_verdict, reversal_sentence, reversals,
                              speedup_at_kept_accuracy)
from lib.errors import ConfigError  # noqa: E402
from lib.experiments import Experiment  # noqa: E402
from lib.verdicts import NOT_SUPPORTED, SUPPORTED, UNTESTABLE  # noqa: E402


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    exp = Experiment("smoke", tmp_path_factory.mktemp("apps"), progress=False)
    return exp, APPLICATIONS["smoke"]


def test_every_profile_has_a_valid_configuration():
    from lib.catalog import PROFILES

    assert set(APPLICATIONS) == set(PROFILES)
    assert get_applications("mini", '{"steps": 10, "methods": ["lora"]}').methods == ("lora",)


@pytest.mark.parametrize("overrides, message", [
    ({"kept_fractions": [0.5, 1.0]}, "kept_fractions must be non-empty shares in (0, 1)"),
    ({"verdict_fraction": 0.3}, "verdict_fraction 0.3 must be one of kept_fractions"),
    ({"methods": ["houlsby"]}, "unknown weight-tuning method 'houlsby'"),
    ({"steps": 0}, "steps must be at least 1"),
    ({"lr_full": -1.0}, "lr_full must be positive"),
    ({"stepz": 3}, "stepz"),
])
def test_bad_configuration_is_one_clear_line(overrides, message):
    with pytest.raises(ConfigError, match=re.escape(message)) as err:
        get_applications("mini", overrides)
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="unknown profile"):
        get_applications("nope")


def test_across_tasks_known_answer():
    """Task a: top always right, random right half the time (gap 0.5); task b: both always right (gap 0):
    mean gap 0.25, and with no variance within a task's columns the interval is a point."""
    per_task = {"a": {"top": np.ones(40), "random": np.tile([1.0, 0.0], 20) * 0 + 0.5},
                "b": {"top": np.ones(30), "random": np.ones(30)}}
    iv = _across_tasks(per_task, "top", "random", ApplicationsConfig(n_boot=200))
    assert iv.estimate == pytest.approx(0.25) and iv.lo == pytest.approx(0.25) and iv.hi == pytest.approx(0.25)


def _table(rows):
    return pd.DataFrame(rows)


def test_verdicts_read_the_all_learned_row():
    cfg = ApplicationsConfig()
    prune = _table([{"task": "sst2", "kept": 0.2, "kind": "top", "gap_vs_random": 0.3, "gap_vs_random_lo": 0.2,
                     "gap_vs_random_hi": 0.4},
                    {"task": ALL, "kept": 0.2, "kind": "top", "gap_vs_random": 0.1, "gap_vs_random_lo": 0.05,
                     "gap_vs_random_hi": 0.2},
                    {"task": ALL, "kept": 0.2, "kind": "top_retuned", "gap_vs_random": -0.01, "gap_vs_random_lo": -0.03,
                     "gap_vs_random_hi": 0.02},
                    {"task": ALL, "kept": 0.5, "kind": "top", "gap_vs_random": -0.1, "gap_vs_random_lo": -0.2,
                     "gap_vs_random_hi": 0.0}])
    iv, v = pruning_verdict(prune, cfg)
    assert v.label == SUPPORTED and iv.estimate == pytest.approx(0.1)
    iv, v = pruning_verdict(prune, cfg, arm="top_retuned")
    assert v.label == NOT_SUPPORTED and iv.estimate == pytest.approx(-0.01), "each arm reads its own row"
    iv, v = pruning_verdict(prune[prune.task != ALL], cfg)
    assert iv is None and v.label == UNTESTABLE
    _, v = pruning_verdict(prune[prune.kind == "top"], cfg, arm="top_retuned")
    assert v.label == UNTESTABLE and "retune_steps = 0" in v.reason
    with pytest.raises(ConfigError, match="unknown pruning arm 'random'"):
        pruning_verdict(prune, cfg, arm="random")
    other = _table([{"task": ALL, "method": "bitfit", "gap": 0.01, "gap_lo": -0.02, "gap_hi": 0.04}])
    out = other_tuning_verdicts(other, ["bitfit", "lora"])
    assert out["bitfit"][1].label == NOT_SUPPORTED and out["lora"][1].label == UNTESTABLE
    mt = _table([{"task": "sst2", "method": "prompt"},
                 {"task": ALL, "method": "full", "vs_prompt": 0.1, "vs_prompt_lo": 0.02, "vs_prompt_hi": 0.2}])
    assert model_tuning_verdicts(mt)["full"][1].label == SUPPORTED


def test_a_pooled_verdict_names_its_tasks():
    """G(0.2) pooled over two tasks is supported, but only newsgroups carries it; imdb reverses."""
    cfg = ApplicationsConfig()
    prune = _table([
        {"task": "newsgroups", "kept": 0.2, "kind": "top", "gap_vs_random": 0.3, "gap_vs_random_lo": 0.2,
         "gap_vs_random_hi": 0.4},
        {"task": "imdb", "kept": 0.2, "kind": "top", "gap_vs_random": -0.03, "gap_vs_random_lo": -0.05,
         "gap_vs_random_hi": -0.01},
        {"task": ALL, "kept": 0.2, "kind": "top", "gap_vs_random": 0.13, "gap_vs_random_lo": 0.1,
         "gap_vs_random_hi": 0.16}])
    _, v = pruning_verdict(prune, cfg)
    assert v.label == SUPPORTED
    assert v.reason.endswith("per task: newsgroups +0.300 [+0.200, +0.400] supported; imdb -0.030 [-0.050, -0.010] "
                             "contradicted (holds on 1 of 2 tasks)")


def test_reversals_at_small_shares_are_named():
    """reuters reverses at 10 % and the pooled gap at 5 % (whole interval below 0); a gap whose interval
    touches 0 is not a reversal, and the re-tuned arm's rows are not read."""
    prune = _table([
        {"task": "reuters", "kept": 0.2, "kind": "top", "gap_vs_random": 0.12, "gap_vs_random_lo": 0.05,
         "gap_vs_random_hi": 0.2},
        {"task": "reuters", "kept": 0.1, "kind": "top", "gap_vs_random": -0.05, "gap_vs_random_lo": -0.09,
         "gap_vs_random_hi": -0.01},
        {"task": "imdb", "kept": 0.1, "kind": "top", "gap_vs_random": -0.02, "gap_vs_random_lo": -0.05,
         "gap_vs_random_hi": 0.0},
        {"task": "imdb", "kept": 0.1, "kind": "random", "gap_vs_random": None, "gap_vs_random_lo": None,
         "gap_vs_random_hi": None},
        {"task": "imdb", "kept": 0.2, "kind": "top_retuned", "gap_vs_random": -0.3, "gap_vs_random_lo": -0.4,
         "gap_vs_random_hi": -0.2},
        {"task": ALL, "kept": 0.05, "kind": "top", "gap_vs_random": -0.013, "gap_vs_random_lo": -0.022,
         "gap_vs_random_hi": -0.003}])
    assert [(t, k) for t, k, _ in reversals(prune)] == [("reuters", 0.1), (ALL, 0.05)]
    assert reversal_sentence(prune) == ("Reversed (random neurons kept do better than the most predictive ones, whole "
                                        "interval below 0): reuters at ρ = 10%: -0.050 [-0.090, -0.010]; all learned at "
                                        "ρ = 5%: -0.013 [-0.022, -0.003].")
    assert reversal_sentence(prune[prune.task == "imdb"]).endswith("no reversal.")


def test_a_speed_up_counts_only_where_the_pruned_model_keeps_its_accuracy():
    speed = pd.DataFrame({"fraction": [1.0, 0.5, 0.2, 0.1], "speedup": [1.0, 1.3, 1.8, 2.0],
                          "accuracy_top": [0.80, 0.78, 0.70, 0.51], "accuracy_retuned": [None, None, 0.75, 0.60]})
    kept = speedup_at_kept_accuracy(speed, accuracy_full=0.80)
    assert list(kept.fraction) == [0.5, 0.2], "100 % is the noise row; 10 % keeps 0.75 of the accuracy"
    assert kept.kept_accuracy.tolist() == pytest.approx([0.975, 0.9375]), "the re-tuned accuracy counts where measured"


@pytest.mark.slow  # tunes and prunes on the smoke profile; make test-fast leaves it out
def test_pruning_table_on_the_smoke_profile(smoke):
    exp, cfg = smoke
    table = pruning_table(exp, cfg)
    tasks = set(table.task) - {ALL}
    assert tasks, "the smoke prompts learn their synthetic tasks"
    for task in tasks:
        part = table[table.task == task]
        full = part[part.kind == "full"].iloc[0]
        assert full.kept == 1.0 and full.n_per_layer == exp.neuron_scores(task, 0, split="dev").shape[1]
        for rho in cfg.kept_fractions:
            top = part[(part.kind == "top") & (part.kept == rho)].iloc[0]
            assert top.parameters < full.parameters and top.accuracy_lo <= top.accuracy <= top.accuracy_hi
            assert top.gap_vs_random_lo <= top.gap_vs_random <= top.gap_vs_random_hi
    assert set(table[table.task == ALL].kept) == set(cfg.kept_fractions)
    # prune, then re-tune: at rho* only, both arms, the pooled row, and a verdict of its own
    retuned = table[table.kind.isin(["top_retuned", "random_retuned"])]
    assert set(retuned.kept) == {cfg.verdict_fraction} and set(retuned.task) == tasks | {ALL}
    assert (retuned[retuned.kind == "top_retuned"].gap_vs_random.notna()).all()
    assert pruning_verdict(table, cfg, arm="top_retuned")[0] is not None
    folders = sorted(p.parent.parent.name for p in (exp.root / "pruning_retune").rglob("metrics.json"))
    assert folders == sorted(f"{kind}{cfg.verdict_fraction:g}" for _ in tasks for _ in exp.profile.seeds
                             for kind in ("random", "top")), "one re-tuned prompt per task, seed and arm"
    again = pruning_table(exp, cfg)  # cached: read back from the store
    pd.testing.assert_frame_equal(table.reset_index(drop=True), again, check_dtype=False)


@pytest.mark.slow  # tunes weights three ways; make test-fast leaves it out
def test_weight_tuning_tables_on_the_smoke_profile(smoke):
    exp, cfg = smoke
    mt = model_tuning_table(exp, cfg)
    per_task = mt[mt.task != ALL]
    assert set(per_task.method) == {"prompt", *cfg.methods}
    assert set(per_task.task) == set(exp.profile.tasks)
    full = per_task[per_task.method == "full"]
    bitfit = per_task[per_task.method == "bitfit"]
    assert (full.trainable_parameters > bitfit.trainable_parameters.max()).all()
    assert (per_task.accuracy_lo <= per_task.accuracy).all() and (per_task.accuracy <= per_task.accuracy_hi).all()
    ot = other_tuning_table(exp, cfg)
    rows = ot[ot.task != ALL]
    assert set(rows.method) == {"prompt", *cfg.methods}
    assert (rows.gap_lo <= rows.gap).all() and (rows.gap <= rows.gap_hi).all()
    assert set(other_tuning_verdicts(ot, cfg.methods)) == set(cfg.methods)
