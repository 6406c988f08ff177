"""Computed verdicts for the chapters whose units are runs or seeds rather than test examples.

The claims table (`lib.claims`) resamples test examples. Some chapters compare quantities that exist
once per run (a transfer run's test accuracy, an indicator's rank correlation over pairs, a
specificity per seed); there the random unit is the run or the seed, and with a handful of them the
percentile bootstrap is unreliable, so the interval is Student's t over the n independent values:

    mean +- t_{n-1, 0.975} * sd / sqrt(n)        (`mean_interval`)

Each function returns (interval or None, Verdict); `lib.verdicts.describe` turns them into the
chapter's sentence. Tasks whose prompts did not learn are left out, and too few values left make the
verdict *untestable*. Not part of `lib.store.code_version()`.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from .intervals import Interval, bootstrap_interval
from .verdicts import Verdict, verdict


def mean_interval(values: Sequence[float] | np.ndarray, alpha: float = 0.05) -> Interval | None:
    """Mean with its Student-t interval over independent values; None with fewer than two."""
    x = np.asarray([v for v in values if np.isfinite(v)], dtype=float)
    if len(x) < 2:
        return None
    half = stats.t.ppf(1 - alpha / 2, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x))
    return Interval(float(x.mean()), float(x.mean() - half), float(x.mean() + half))


def _runs_verdict(values: Iterable[float], what: str, direction: str = "greater", null: float = 0.0,
                  bounds: tuple[float, float] | None = None) -> tuple[Interval | None, Verdict]:
    """`bounds`: the values the statistic can take (a percentile lies in [0, 100]); the t interval is cut to them."""
    values = [float(v) for v in values if np.isfinite(v)]
    iv = mean_interval(values)
    if iv is None:
        return None, verdict(None, missing=f"needs at least two {what}, has {len(values)}")
    if bounds is not None:
        iv = replace(iv, lo=max(iv.lo, bounds[0]), hi=min(iv.hi, bounds[1]))
    iv = replace(iv, n_seeds=len(values), p=t_p_value(values, null))
    return iv, verdict(iv, direction=direction, null=null)


def t_p_value(values: Sequence[float], null: float = 0.0) -> float:
    """Two-sided p of Student's one-sample t test of mean = `null` (the test `mean_interval` inverts):
    t = (mean - null) / (sd / sqrt(n)), p = 2 P(T_{n-1} > |t|); 1.0 where all values equal the null,
    0.0 where they all equal another value (a zero-width interval that excludes the null)."""
    x = np.asarray(values, dtype=float)
    sd = x.std(ddof=1)
    if not sd > 0:
        return 1.0 if np.isclose(x.mean(), null) else 0.0
    t = (x.mean() - null) / (sd / np.sqrt(len(x)))
    return float(2 * stats.t.sf(abs(t), len(x) - 1))


def gain_verdict(gains: pd.Series | Sequence[float], what: str = "runs") -> tuple[Interval | None, Verdict]:
    """A method's gain over its comparison, one value per (pair, seed) run: supported when > 0."""
    return _runs_verdict(gains, what)


# --- which runs a transfer-method verdict counts (a run counts only where its tasks' prompts learned) ------
def learned_same_type_runs(runs: pd.DataFrame, learned: set[str], task_type: Mapping[str, str],
                           label_names: Mapping[str, tuple]) -> pd.DataFrame:
    """The initialisation chapter's runs (columns source, target) whose source and target prompts both learned
    and whose tasks share a type and a label set: where Su et al. expect a same-type prompt to help."""
    keep = [s in learned and t in learned and task_type[s] == task_type[t] and tuple(label_names[s]) == tuple(label_names[t])
            for s, t in zip(runs.source, runs.target)]
    return runs[keep]


def learned_pair_runs(comparison: pd.DataFrame, learned: set[str]) -> pd.DataFrame:
    """PANDA's comparison rows (index source, target, seed) whose source and target prompts both learned."""
    return comparison[[s in learned and t in learned for s, t, _ in comparison.index]]


def projector_gains(projected: pd.DataFrame, learned: set[str], method: str = "B task projector",
                    reference: str = "B init") -> pd.DataFrame:
    """Per (held-out task, seed) of a learned task: `method`'s accuracy minus `reference`'s on backbone B
    (columns task, seed, gain), from the projector table's long rows (task, seed, method, accuracy)."""
    wide = projected.pivot_table(index=["task", "seed"], columns="method", values="accuracy").reset_index()
    wide = wide[[t in learned for t in wide.task]]
    return pd.DataFrame({"task": wide.task, "seed": wide.seed, "gain": wide[method] - wide[reference]}).reset_index(drop=True)


def indicator_verdict(table: pd.DataFrame, indicator: str, rivals: Sequence[str], learned: set[str],
                      target_column: str = "relative_transfer") -> tuple[Interval | None, Verdict]:
    """Is `indicator` a better predictor of transfer than the best rival? Per seed, over the ordered
    pairs of learned tasks: rho_S(indicator, transfer) - max_r rho_S(rival r, transfer); t over seeds."""
    part = table[table.source.isin(learned) & table.target.isin(learned)]
    if part[["source", "target"]].drop_duplicates().shape[0] < 3:
        return None, verdict(None, missing=f"needs 3 ordered pairs of learned tasks, has "
                                           f"{part[['source', 'target']].drop_duplicates().shape[0]}")
    diffs = []
    for _, g in part.groupby("seed"):
        rho = lambda c: stats.spearmanr(g[c], g[target_column]).statistic  # noqa: E731
        diffs.append(rho(indicator) - max(rho(r) for r in rivals))
    return _runs_verdict(diffs, "seeds")


def specificity_verdict(per_seed: pd.DataFrame) -> tuple[Interval | None, Verdict]:
    """Same-type minus cross-type mean Spearman of predictivities, per seed (columns seed, same_type,
    spearman over pairs of learned tasks); t over seeds."""
    if per_seed.empty or not per_seed.same_type.any() or per_seed.same_type.all():
        return None, verdict(None, missing="needs pairs of learned tasks both within a type and across types")
    diffs = [g[g.same_type].spearman.mean() - g[~g.same_type].spearman.mean() for _, g in per_seed.groupby("seed")]
    return _runs_verdict(diffs, "seeds")


def specificity_by_seed(exp, tasks: Sequence[str]) -> pd.DataFrame:
    """Mean per-layer Spearman of two tasks' predictivities, per seed, for unordered pairs of `tasks`."""
    from .analyses import task_specificity

    rows = []
    for seed in exp.profile.seeds:
        for i, a in enumerate(tasks):
            for b in tasks[i + 1:]:
                spec = task_specificity(exp.neuron_scores(a, seed), exp.neuron_scores(b, seed))
                rows.append({"seed": seed, "task_a": a, "task_b": b, "spearman": spec.attrs["mean"],
                             "same_type": exp.task(a).task_type == exp.task(b).task_type})
    return pd.DataFrame(rows, columns=["seed", "task_a", "task_b", "spearman", "same_type"])


def percentile_verdict(adv_neurons: pd.DataFrame, learned: set[str]) -> tuple[Interval | None, Verdict]:
    """Do clean skill neurons stay above a typical neuron (percentile 50) on adversarial data? The mean
    adversarial percentile over layers and learned tasks, per seed; t over seeds against 50."""
    part = adv_neurons[adv_neurons.task.isin(learned)]
    if part.empty:
        return None, verdict(None, missing="no learned task has an adversarial set")
    return _runs_verdict(part.groupby("seed")["adv_percentile"].mean(), "seeds", null=50.0, bounds=(0.0, 100.0))


def pretrained_vs_random(pretrained: np.ndarray, random_init: np.ndarray, **boot) -> tuple[Interval, Verdict]:
    """Test accuracy of the pretrained backbone's prompts minus the randomly initialised backbone's, on the
    same test examples (paired example resampling): supported when > 0."""
    iv = bootstrap_interval({"pre": pretrained, "rnd": random_init}, lambda a: a["pre"] - a["rnd"],
                            groups={"pre": "test", "rnd": "test"}, **{"bounds": (-1.0, 1.0), "null": 0.0, **boot})
    return iv, verdict(iv)
