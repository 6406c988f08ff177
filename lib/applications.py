"""What skill neurons are good for besides analysis: the tables of the pruning, other-tuning and
model-tuning chapters (Wang et al. 2022, sec. 7; PANDA and Su et al. for model tuning).

- **Pruning** (`pruning_table`): per learned task and prompt seed, neurons are selected on the dev
  split (`Experiment.neuron_scores(..., split='dev')`), each layer keeps its top share rho of neurons
  (or the same number drawn at random), the FFN matrices are sliced (`lib.pruning.prune_ffn`) and the
  smaller model is scored on the test split. The statistic is the paired gap
  G(rho) = Acc_top(rho) - Acc_random(rho) on the same test examples.
- **Other tuning methods** (`other_tuning_table`): the backbone is tuned with BitFit, LoRA or in full
  (`lib.weight_tuning`), then the *prompt-tuning* skill neurons S_l(q) of the task (dev-selected) or
  as many random neurons are zeroed in the tuned model; the gap Delta = Acc_random - Acc_skill on test.
- **Model tuning** (`model_tuning_table`): the same methods' test accuracy beside prompt tuning's,
  with the paired difference Acc_method - Acc_prompt, trainable parameters and seconds.

Every interval resamples test examples (seeds averaged per example, `lib.intervals`); the rows
`task == 'all learned'` average the per-task statistic over the learned tasks, resampled per task
with shared indices for paired quantities. Only tasks whose prompts learned (`lib.claims`) enter.

The tables are cached in the results store under a key of the profile, the `ApplicationsConfig`, the
learned tasks and the version of the code reachable from the three table functions
(`applications_version`, `lib.code_identity`): nothing the other chapters compute reaches this module,
so adding it did not invalidate their results.
"""
from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from .analyses import random_per_layer
from .code_identity import version
from .errors import ConfigError, unknown
from .evaluation import evaluate
from .hooks import intervene_ffn
from .intervals import Interval, accuracy_interval, bootstrap_interval, majority_rate
from .models import Backbone
from .pruning import count_parameters, keep_mask, prune_ffn
from .skill_neurons import top_per_layer
from .validation import check_fields, check_overrides
from .verdicts import Verdict, task_status, verdict
from .weight_tuning import METHODS, WeightTuneConfig, WeightTuneResult, slot_prompt, tune_weights, weight_signature

if TYPE_CHECKING:
    from .experiments import Experiment

ALL = "all learned"


@dataclass(frozen=True)
class ApplicationsConfig:
    """Budgets of the application chapters (per profile in `APPLICATIONS`; overridable)."""

    kept_fractions: tuple[float, ...] = (0.5, 0.2, 0.1, 0.05)  # share rho of each layer's neurons kept
    verdict_fraction: float = 0.2  # the rho whose gap G(rho) is the pruning verdict, fixed in advance
    pruning_draws: int = 2  # random selections per rho
    # prune, then re-tune: at rho* the prompt is tuned again on each pruned network (top, and the first random
    # draw) for this many steps from the frozen prompt, as Skeleton tunes its prompt on the localized network;
    # 0 = the frozen-prompt arm only
    retune_steps: int = 50
    methods: tuple[str, ...] = ("bitfit", "adapter", "lora", "full")  # adapter: Houlsby bottleneck (lib.adapters)
    weight_seeds: tuple[int, ...] = (0, 1, 2)  # runs are random draws too: intervals need several
    # the weight-tuning budget: None = the profile's prompt-tuning steps, batch size and evaluation
    # interval, so every method sees the same training examples in the same order
    steps: int | None = None
    eval_every: int | None = None
    batch_size: int | None = None
    lr_bitfit: float = 5e-3
    lr_adapter: float = 5e-3
    lr_lora: float = 5e-3
    lr_full: float = 5e-5
    suppression_fraction: float = 0.05  # q: share of each layer's neurons zeroed in the tuned models
    suppression_draws: int = 2
    n_boot: int = 2000

    def __post_init__(self) -> None:
        check_fields(self)
        if not self.kept_fractions or any(not 0 < f < 1 for f in self.kept_fractions):
            raise ConfigError(f"kept_fractions must be non-empty shares in (0, 1), got {list(self.kept_fractions)}")
        if self.verdict_fraction not in self.kept_fractions:
            raise ConfigError(f"verdict_fraction {self.verdict_fraction} must be one of kept_fractions "
                              f"{list(self.kept_fractions)}")
        for m in self.methods:
            if m not in METHODS:
                raise unknown("weight-tuning method", m, METHODS)
        if not self.weight_seeds or any(s < 0 for s in self.weight_seeds):
            raise ConfigError(f"weight_seeds must be non-negative seeds, at least one; got {list(self.weight_seeds)}")
        if self.retune_steps < 0:
            raise ConfigError(f"retune_steps must be 0 (no re-tuning) or more, got {self.retune_steps}")
        for name in ("pruning_draws", "steps", "eval_every", "batch_size", "suppression_draws"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("lr_bitfit", "lr_adapter", "lr_lora", "lr_full"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if not 0 < self.suppression_fraction < 1:
            raise ConfigError(f"suppression_fraction must lie in (0, 1), got {self.suppression_fraction}")
        if self.n_boot < 100:
            raise ConfigError(f"n_boot must be at least 100, got {self.n_boot}")

    def lr(self, method: str) -> float:
        return {"bitfit": self.lr_bitfit, "adapter": self.lr_adapter, "lora": self.lr_lora, "full": self.lr_full}[method]


_TINY = dict(kept_fractions=(0.5, 0.2), verdict_fraction=0.2, pruning_draws=1, retune_steps=10, steps=60, eval_every=20,
             batch_size=16, lr_bitfit=1e-2, lr_adapter=1e-2, lr_lora=1e-2, lr_full=1e-3, suppression_fraction=0.1,
             suppression_draws=1, n_boot=500, weight_seeds=(0,))
APPLICATIONS: Mapping[str, ApplicationsConfig] = {
    "smoke": ApplicationsConfig(**_TINY),
    "class": ApplicationsConfig(kept_fractions=(0.5, 0.2, 0.1), verdict_fraction=0.2, pruning_draws=1, retune_steps=20,
                                methods=("bitfit", "full"), suppression_draws=1, weight_seeds=(0,)),
    "mini": ApplicationsConfig(),
    "paper": ApplicationsConfig(retune_steps=1000, steps=30000, eval_every=1000, lr_bitfit=1e-3, lr_adapter=1e-4, lr_lora=5e-4, lr_full=2e-5,
                                weight_seeds=(0, 1, 2), suppression_fraction=0.01, suppression_draws=5),
    "paper_t5": ApplicationsConfig(retune_steps=1000, methods=("adapter", "lora", "full"), steps=30000, eval_every=1000, lr_adapter=1e-4,
                                   lr_lora=5e-4,
                                   lr_full=1e-4, weight_seeds=(0, 1, 2), suppression_fraction=0.01,
                                   suppression_draws=5),
}


def get_applications(profile: str, overrides: Mapping[str, Any] | str | None = None) -> ApplicationsConfig:
    """The profile's `ApplicationsConfig`, with `overrides` (a dict or its JSON) validated field by field."""
    if profile not in APPLICATIONS:
        raise unknown("profile", profile, tuple(APPLICATIONS))
    if isinstance(overrides, str):
        try:
            overrides = json.loads(overrides) if overrides.strip() else {}
        except json.JSONDecodeError as exc:
            raise ConfigError(f"application overrides are not valid JSON ({exc.msg}): {overrides!r}") from None
    changes = check_overrides(ApplicationsConfig, dict(overrides or {}))
    for name in ("kept_fractions", "methods", "weight_seeds"):
        if name in changes:
            changes[name] = tuple(changes[name])
    return replace(APPLICATIONS[profile], **changes)


@functools.lru_cache(maxsize=1)
def applications_version() -> str:
    """The version of the code reachable from the three table functions (part of every key here)."""
    return version("applications")


# --- inputs ---------------------------------------------------------------------------------------------
def learned(exp: Experiment) -> list[str]:
    """The profile's tasks whose prompts learned (`lib.claims.statuses_cached`): the only ones analysed."""
    from .claims import learned_tasks, statuses_cached

    return learned_tasks(statuses_cached(exp))


def _key(exp: Experiment, cfg: ApplicationsConfig, **extra: Any) -> dict[str, Any]:
    return {"profile": exp.profile.as_dict(), "control": exp.control, "applications": asdict(cfg),
            "code": applications_version(), **extra}


def methods_for(exp: Experiment, cfg: ApplicationsConfig) -> list[str]:
    """The configured methods this backbone has (T5 has no bias terms, hence no BitFit)."""
    return [m for m in cfg.methods if not (m == "bitfit" and not exp.backbone.rules.has_bias)]


def weight_config(exp: Experiment, cfg: ApplicationsConfig, method: str, task: str, seed: int) -> WeightTuneConfig:
    """The run's configuration: the budget of `cfg`, or where unset the task's prompt-tuning budget."""
    tune = exp.profile.tune_for(task)
    return WeightTuneConfig(method=method, lr=cfg.lr(method), batch_size=cfg.batch_size or tune.batch_size,
                            max_steps=cfg.steps or tune.max_steps, eval_every=cfg.eval_every or tune.eval_every,
                            max_length=exp.max_length(task), seed=seed, device=tune.device)


def tuned(exp: Experiment, cfg: ApplicationsConfig, method: str, task: str, seed: int) -> WeightTuneResult:
    """Tune (or load, or resume) the backbone with `method` on `task`: results/<profile>/main/weight_tuning/
    <method>/<task>/seed<s>/<key>. Full model tuning keeps only its best weights (its resumable state is
    four times the model), and its folders are not committed (.gitignore): the chapter tables are."""
    sp = exp.splits(task)
    wcfg = weight_config(exp, cfg, method, task, seed)
    out = exp.store.run_dir(Path("weight_tuning") / method / task / f"seed{seed}",
                            weight_signature(wcfg, exp.backbone, exp.task(task), sp["train"], sp["dev"]))
    result = tune_weights(exp.backbone, exp.task(task), sp["train"], sp["dev"], wcfg, out, progress=exp.progress)
    if method == "full":
        (out / "state.pt").unlink(missing_ok=True)
    return result


def _correct(backbone: Backbone, prompt: torch.Tensor, exp: Experiment, task: str,
             mask: torch.Tensor | None = None, draw_seed: int = 0) -> np.ndarray:
    """Per-example 0/1 correctness on the test split, with `mask`'s neurons zeroed when given."""
    def run() -> np.ndarray:
        r = evaluate(backbone, prompt, exp.task(task), exp.encoded(task, "test"), max_length=exp.max_length(task))
        return (r.predictions == r.labels).astype(float)
    if mask is None:
        return run()
    with intervene_ffn(backbone, mask, "zero", seed=draw_seed):
        return run()


def _paired(columns: dict[str, np.ndarray], statistic: Callable, cfg: ApplicationsConfig) -> Interval:
    """Bootstrap interval of a statistic of columns measured on the same test examples (one group)."""
    return bootstrap_interval(columns, statistic, groups={k: "test" for k in columns}, n_boot=cfg.n_boot,
                              bounds=(-1.0, 1.0))


def _across_tasks(per_task: dict[str, dict[str, np.ndarray]], a: str, b: str, cfg: ApplicationsConfig) -> Interval:
    """Mean over tasks of Acc_a - Acc_b, each task's columns resampled together (paired), tasks independently."""
    columns, groups = {}, {}
    for t, cols in per_task.items():
        for name in (a, b):
            columns[f"{name}:{t}"] = cols[name]
            groups[f"{name}:{t}"] = t
    tasks = list(per_task)
    return bootstrap_interval(columns, lambda acc: sum(acc[f"{a}:{t}"] - acc[f"{b}:{t}"] for t in tasks) / len(tasks),
                              groups=groups, n_boot=cfg.n_boot, bounds=(-1.0, 1.0))


def _interval_columns(prefix: str, iv: Interval) -> dict[str, float]:
    return {prefix: iv.estimate, f"{prefix}_lo": iv.lo, f"{prefix}_hi": iv.hi}


# --- pruning ---------------------------------------------------------------------------------------------
RETUNED = {"top": "top_retuned", "random": "random_retuned"}


def retuned_prompt(exp: Experiment, cfg: ApplicationsConfig, task: str, seed: int, kind: str, rho: float,
                   keep: torch.Tensor, pruned: Backbone) -> torch.Tensor:
    """The prompt of (task, seed) tuned again for `cfg.retune_steps` on the network pruned to `keep`, starting
    from the frozen prompt, with the task's recipe otherwise (best on dev; resumable):
    results/<profile>/main/pruning_retune/<task>/seed<s>/<kind><rho>/<key>. The key adds the kept neurons
    (a digest of the mask) to the usual prompt signature, since the pruned network keeps the backbone's name."""
    from .tuning import run_signature, tune_prompt

    sp = exp.splits(task)
    tune = exp.profile.tune_for(task)
    rcfg = replace(tune, seed=seed, init="source", max_steps=cfg.retune_steps,
                   eval_every=min(tune.eval_every, cfg.retune_steps), patience=None)
    source = exp.prompt(task, seed)
    signature = run_signature(rcfg, exp.backbone, exp.task(task), sp["train"], sp["dev"], source_prompt=source)
    signature["pruned"] = {"kind": kind, "kept": rho, "mask": hashlib.sha256(
        keep.to(torch.uint8).cpu().numpy().tobytes()).hexdigest()[:16]}
    out = exp.store.run_dir(Path("pruning_retune") / task / f"seed{seed}" / f"{kind}{rho:g}", signature)
    return tune_prompt(pruned, exp.task(task), sp["train"], sp["dev"], rcfg, out, source_prompt=source,
                       progress=exp.progress).prompt


def pruning_rows(exp: Experiment, cfg: ApplicationsConfig, task: str) -> tuple[list[dict], dict[float, dict]]:
    """Rows of one task (full model; top and random at each kept share; at rho* with `retune_steps`, the same
    two networks with their prompt re-tuned) and its correctness columns."""
    seeds = exp.profile.seeds
    full = np.stack([_correct(exp.backbone, exp.prompt(task, s), exp, task) for s in seeds])
    params_full = count_parameters(exp.backbone)
    acc = accuracy_interval(full, n_boot=cfg.n_boot)
    width = exp.neuron_scores(task, seeds[0], split="dev").shape[1]
    rows = [{"task": task, "kept": 1.0, "kind": "full", "n_per_layer": width, "parameters": params_full,
             **_interval_columns("accuracy", acc)}]
    columns: dict[float, dict] = {}
    for rho in cfg.kept_fractions:
        retune = cfg.retune_steps > 0 and rho == cfg.verdict_fraction
        top, rnd, top_re, rnd_re = [], [], [], []
        for s in seeds:
            scores = exp.neuron_scores(task, s, split="dev")  # selected on dev, scored on test
            keep = keep_mask(scores, rho, "top")
            pruned = prune_ffn(exp.backbone, keep)
            top.append(_correct(pruned, exp.prompt(task, s), exp, task))
            random_keeps = [keep_mask(scores, rho, "random", seed=1000 * s + d) for d in range(cfg.pruning_draws)]
            draws = [_correct(prune_ffn(exp.backbone, k), exp.prompt(task, s), exp, task) for k in random_keeps]
            rnd.append(np.mean(draws, axis=0))
            if retune:
                top_re.append(_correct(pruned, retuned_prompt(exp, cfg, task, s, "top", rho, keep, pruned), exp, task))
                first = prune_ffn(exp.backbone, random_keeps[0])
                rnd_re.append(_correct(first, retuned_prompt(exp, cfg, task, s, "random", rho, random_keeps[0], first),
                                       exp, task))
        n_kept = int(keep_mask(scores, rho, "top")[0].sum())
        cols = {"top": np.stack(top), "random": np.stack(rnd), "full": full}
        if retune:
            cols.update({RETUNED["top"]: np.stack(top_re), RETUNED["random"]: np.stack(rnd_re)})
        columns[rho] = cols
        arms = [("top", "random")] + ([(RETUNED["top"], RETUNED["random"])] if retune else [])
        for kept_arm, random_arm in arms:
            gap = _paired(cols, lambda a, x=kept_arm, y=random_arm: a[x] - a[y], cfg)
            loss = _paired(cols, lambda a, x=kept_arm: a[x] - a["full"], cfg)
            for kind in (kept_arm, random_arm):
                row = {"task": task, "kept": rho, "kind": kind, "n_per_layer": n_kept,
                       "parameters": count_parameters(pruned),
                       **_interval_columns("accuracy", accuracy_interval(cols[kind], n_boot=cfg.n_boot))}
                if kind == kept_arm:
                    row.update(_interval_columns("gap_vs_random", gap), **_interval_columns("change_vs_full", loss))
                rows.append(row)
    return rows, columns


def pruning_table(exp: Experiment, cfg: ApplicationsConfig) -> pd.DataFrame:
    """Test accuracy of the structurally pruned backbone per learned task and kept share rho (top-predictive
    vs random neurons kept), with example-resampled intervals; rows 'all learned' average the gap
    G(rho) = Acc_top - Acc_random and the change Acc_top - Acc_full over tasks."""
    tasks = learned(exp)

    def compute() -> pd.DataFrame:
        rows, per_rho = [], {rho: {} for rho in cfg.kept_fractions}
        for task in tasks:
            task_rows, columns = pruning_rows(exp, cfg, task)
            rows += task_rows
            for rho, cols in columns.items():
                per_rho[rho][task] = cols
        if tasks:
            for rho, per_task in per_rho.items():
                for kept_arm, random_arm in (("top", "random"), (RETUNED["top"], RETUNED["random"])):
                    if kept_arm not in next(iter(per_task.values())):
                        continue
                    rows.append({"task": ALL, "kept": rho, "kind": kept_arm,
                                 **_interval_columns("gap_vs_random", _across_tasks(per_task, kept_arm, random_arm, cfg)),
                                 **_interval_columns("change_vs_full", _across_tasks(per_task, kept_arm, "full", cfg))})
        return pd.DataFrame(rows, columns=_PRUNING_COLUMNS)
    return exp.store.table("pruning", _key(exp, cfg, tasks=tasks), compute)


_PRUNING_COLUMNS = ["task", "kept", "kind", "n_per_layer", "parameters", "accuracy", "accuracy_lo", "accuracy_hi",
                    "gap_vs_random", "gap_vs_random_lo", "gap_vs_random_hi", "change_vs_full", "change_vs_full_lo",
                    "change_vs_full_hi"]


def pruning_verdict(table: pd.DataFrame, cfg: ApplicationsConfig, arm: str = "top") -> tuple[Interval | None, Verdict]:
    """Do the most predictive neurons carry the task? Supported when G(rho*) > 0 over the learned tasks,
    rho* = `cfg.verdict_fraction` (declared before the run).

    `arm` 'top' (the verdict): the prompt stays as tuned on the full network, so the gap measures which
    neurons that prompt relies on (Wang et al.'s question). 'top_retuned': the prompt re-tuned on each
    pruned network (Skeleton's setting, the one its speed-up at kept accuracy refers to)."""
    if arm not in ("top", RETUNED["top"]):
        raise unknown("pruning arm", arm, ("top", RETUNED["top"]))
    rows = table[(table.kept == cfg.verdict_fraction) & (table.kind == arm)]
    no_task = arm == "top" or table[table.task != ALL].empty
    missing = ("no learned task: the prompts carry no skill to prune for" if no_task
               else "no re-tuned arm in this run (retune_steps = 0)")
    return _row_verdict(rows, "gap_vs_random", missing)


def reversals(table: pd.DataFrame) -> list[tuple[str, float, Interval]]:
    """(task, rho, G interval) of every frozen-prompt row whose whole interval of G(rho) lies below 0: shares
    where random neurons carry the task better than the most predictive ones. A pooled verdict at rho* must
    not hide them (the pooled gap can reverse at small shares too: task 'all learned')."""
    rows = table[(table.kind == "top") & table.gap_vs_random.notna() & (table.gap_vs_random_hi < 0)]
    return [(r.task, float(r.kept), Interval(float(r.gap_vs_random), float(r.gap_vs_random_lo),
                                             float(r.gap_vs_random_hi))) for r in rows.itertuples()]


def reversal_sentence(table: pd.DataFrame) -> str:
    """One sentence naming the reversals (`reversals`), or saying there are none."""
    found = reversals(table)
    if not found:
        return "At no kept share does any task's interval of G(ρ) lie wholly below 0: no reversal."
    parts = [f"{task} at ρ = {rho:.0%}: {iv.estimate:+.3f} [{iv.lo:+.3f}, {iv.hi:+.3f}]" for task, rho, iv in found]
    return ("Reversed (random neurons kept do better than the most predictive ones, whole interval below 0): "
            + "; ".join(parts) + ".")


def speedup_at_kept_accuracy(speed: pd.DataFrame, accuracy_full: float, share: float = 0.9) -> pd.DataFrame:
    """The benchmark's rows whose pruned model keeps at least `share` of the unpruned accuracy (its own
    `accuracy_full`), with `kept_accuracy` = accuracy_top / accuracy_full: a speed-up is comparable to
    Skeleton's "at accuracy comparable to prompt tuning" only on these rows."""
    out = speed.copy()
    best = out[[c for c in ("accuracy_retuned", "accuracy_top") if c in out]].max(axis=1)
    out["kept_accuracy"] = best / accuracy_full
    return out[(out.kept_accuracy >= share) & (out.fraction < 1.0)]


# --- other tuning methods and model tuning ------------------------------------------------------------------
def _arms(exp: Experiment, cfg: ApplicationsConfig, task: str) -> dict[str, list[tuple[Backbone, torch.Tensor]]]:
    """(backbone, prompt) per seed for prompt tuning and each weight-tuning method."""
    arms = {"prompt": [(exp.backbone, exp.prompt(task, s)) for s in exp.profile.seeds]}
    for method in methods_for(exp, cfg):
        arms[method] = [(tuned(exp, cfg, method, task, s).backbone, None) for s in cfg.weight_seeds]
    return {m: [(b, p if p is not None else slot_prompt(b)) for b, p in runs] for m, runs in arms.items()}


def model_tuning_table(exp: Experiment, cfg: ApplicationsConfig) -> pd.DataFrame:
    """Per task (all of the profile's) and method: test accuracy [interval], mean macro-F1, majority rate,
    learned status, the paired difference to prompt tuning, trainable parameters and seconds per run."""
    tasks = learned(exp)

    def compute() -> pd.DataFrame:
        rows, per_method = [], {}
        for task in exp.profile.tasks:
            labels = exp.encoded(task, "test").labels
            prompt_eval = [evaluate(exp.backbone, exp.prompt(task, s), exp.task(task), exp.encoded(task, "test"),
                                    max_length=exp.max_length(task)) for s in exp.profile.seeds]
            runs = {"prompt": (prompt_eval, [exp.tune(task, s).seconds for s in exp.profile.seeds],
                               exp.profile.tune_for(task).prompt_length * exp.backbone.embed_dim)}
            for method in methods_for(exp, cfg):
                results = [tuned(exp, cfg, method, task, s) for s in cfg.weight_seeds]
                evals = [evaluate(r.backbone, slot_prompt(r.backbone), exp.task(task), exp.encoded(task, "test"),
                                  max_length=exp.max_length(task)) for r in results]
                runs[method] = (evals, [r.seconds for r in results], results[0].trainable_parameters)
            correct = {m: np.stack([(e.predictions == e.labels).astype(float) for e in ev])
                       for m, (ev, _, _) in runs.items()}
            for method, (evals, seconds, trainable) in runs.items():
                status = task_status(task, correct[method], labels, [e.macro_f1 for e in evals], gate="test",
                                     n_boot=cfg.n_boot)
                row = {"task": task, "type": exp.task(task).task_type, "method": method, "runs": len(evals),
                       **_interval_columns("accuracy", status.accuracy), "macro_f1": status.macro_f1,
                       "majority": status.majority, "status": "learned" if status.learned else "not learned",
                       "trainable_parameters": int(trainable), "seconds": float(np.mean(seconds))}
                if method != "prompt":
                    pair = {method: correct[method], "prompt": correct["prompt"]}
                    row.update(_interval_columns("vs_prompt", _paired(pair, lambda a: a[method] - a["prompt"], cfg)))
                    if task in tasks:
                        per_method.setdefault(method, {})[task] = pair
                rows.append(row)
        for method, per_task in per_method.items():
            rows.append({"task": ALL, "method": method,
                         **_interval_columns("vs_prompt", _across_tasks(per_task, method, "prompt", cfg))})
        return pd.DataFrame(rows)
    return exp.store.table("model_tuning", _key(exp, cfg, tasks=tasks), compute)


def other_tuning_table(exp: Experiment, cfg: ApplicationsConfig) -> pd.DataFrame:
    """Per learned task and method (prompt tuning and each weight-tuning method): test accuracy intact, with
    the task's prompt-tuning skill neurons zeroed (top q per layer by dev predictivity, averaged over the
    prompt seeds) and with as many random neurons zeroed; Delta = Acc_random - Acc_skill [interval]. Rows
    'all learned' average Delta over the tasks the method itself learned."""
    tasks = learned(exp)

    def compute() -> pd.DataFrame:
        rows, per_method = [], {}
        for task in tasks:
            skill = top_per_layer(exp.mean_scores(task, split="dev"), fraction=cfg.suppression_fraction)
            n = int(skill[0].sum())
            labels = exp.encoded(task, "test").labels
            for method, runs in _arms(exp, cfg, task).items():
                gen = torch.Generator().manual_seed(0)
                cols: dict[str, list[np.ndarray]] = {"intact": [], "skill": [], "random": []}
                for i, (backbone, prompt) in enumerate(runs):
                    cols["intact"].append(_correct(backbone, prompt, exp, task))
                    cols["skill"].append(_correct(backbone, prompt, exp, task, skill, draw_seed=i))
                    cols["random"].append(np.mean([_correct(backbone, prompt, exp, task,
                                                            random_per_layer(tuple(skill.shape), n, gen), i + 1 + d)
                                                   for d in range(cfg.suppression_draws)], axis=0))
                arr = {k: np.stack(v) for k, v in cols.items()}
                intact = accuracy_interval(arr["intact"], n_boot=cfg.n_boot)
                learned_here = bool(intact.lo > majority_rate(labels))
                if learned_here:
                    per_method.setdefault(method, {})[task] = arr
                rows.append({"task": task, "method": method, "runs": len(runs), "n_per_layer": n,
                             **_interval_columns("accuracy_intact", intact),
                             "accuracy_skill_off": float(arr["skill"].mean()),
                             "accuracy_random_off": float(arr["random"].mean()), "majority": majority_rate(labels),
                             "above_majority": learned_here,
                             **_interval_columns("gap", _paired(arr, lambda a: a["random"] - a["skill"], cfg))})
        for method, per_task in per_method.items():
            rows.append({"task": ALL, "method": method, "runs": None, "n_per_layer": None,
                         **_interval_columns("gap", _across_tasks(per_task, "random", "skill", cfg))})
        return pd.DataFrame(rows)
    return exp.store.table("other_tuning", _key(exp, cfg, tasks=tasks), compute)


def other_tuning_verdicts(table: pd.DataFrame, methods: Sequence[str]) -> dict[str, tuple[Interval | None, Verdict]]:
    """Per method: are the prompt-tuning skill neurons more important than random ones in the model tuned
    with it? Supported when Delta over the tasks it learned has its interval above 0."""
    return {m: _row_verdict(table[table.method == m], "gap",
                            f"{m}: no learned task on which the {m}-tuned model beats the majority rate")
            for m in methods}


def model_tuning_verdicts(table: pd.DataFrame) -> dict[str, tuple[Interval | None, Verdict]]:
    """Per weight-tuning method: does it beat prompt tuning? Supported when the mean over the learned tasks
    of the paired difference Acc_method - Acc_prompt has its interval above 0."""
    return {m: _row_verdict(table[table.method == m], "vs_prompt", "no task whose prompts learned")
            for m in table.method.unique() if m != "prompt"}


def _row_verdict(rows: pd.DataFrame, column: str, missing: str) -> tuple[Interval | None, Verdict]:
    """The verdict on the 'all learned' row's interval of `column` (> 0 supported)."""
    row = rows[rows.task == ALL]
    if row.empty or pd.isna(row[column].iloc[0]):
        return None, verdict(None, missing=missing)
    r = row.iloc[0]
    iv = Interval(float(r[column]), float(r[f"{column}_lo"]), float(r[f"{column}_hi"]))
    v = verdict(iv)
    outcome = per_task_outcome(rows[rows.task != ALL], column)
    return iv, Verdict(v.label, f"{v.reason}; {outcome}" if outcome else v.reason)


def per_task_outcome(rows: pd.DataFrame, column: str) -> str:
    """'per task: sst2 +0.120 [+0.080, +0.160] supported; ... (holds on k of n tasks)' from the per-task
    rows' intervals of `column`: a pooled verdict never hides which tasks carry it and which reverse."""
    rows = rows[rows[column].notna()] if column in rows else rows.iloc[:0]
    if rows.empty:
        return ""
    parts, held = [], 0
    for r in rows.itertuples():
        iv = Interval(float(getattr(r, column)), float(getattr(r, f"{column}_lo")), float(getattr(r, f"{column}_hi")))
        label = verdict(iv).label
        held += label == "supported"
        parts.append(f"{r.task} {iv.estimate:+.3f} [{iv.lo:+.3f}, {iv.hi:+.3f}] {label}")
    return f"per task: {'; '.join(parts)} (holds on {held} of {len(parts)} tasks)"


def benchmark_speedups(path: str | Path) -> tuple[dict[str, Any], pd.DataFrame] | None:
    """What `benchmarks/pruning.py` measured: (its run's description, one row per kept share with
    parameters, median seconds full and pruned, speed-up = full / pruned, accuracies), or None."""
    path = Path(path)
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    rows = pd.DataFrame(data.get("fractions", [])).drop(columns=["seconds_rounds", "accuracy_random_draws"],
                                                        errors="ignore")
    return {k: v for k, v in data.items() if k != "fractions"}, rows


def method_costs(path: str | Path) -> tuple[dict[str, Any], pd.DataFrame] | None:
    """What `benchmarks/tuning_methods.py` measured side by side: (its run's description, one row per method with
    seconds per step, seconds per run, ratio to prompt tuning, trainable parameters), or None when not run."""
    path = Path(path)
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    return {k: v for k, v in data.items() if k != "methods"}, pd.DataFrame(data.get("methods", []))


__all__ = ["ApplicationsConfig", "APPLICATIONS", "get_applications", "applications_version", "learned",
           "pruning_table", "pruning_verdict", "model_tuning_table", "model_tuning_verdicts", "other_tuning_table",
           "other_tuning_verdicts", "benchmark_speedups", "tuned", "ALL", "per_task_outcome", "RETUNED", "retuned_prompt",
           "reversals", "reversal_sentence", "speedup_at_kept_accuracy", "method_costs"]
