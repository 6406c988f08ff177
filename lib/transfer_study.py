"""The transfer methods of the later papers, run over one profile's cached prompts.

- indicators (Su et al.): prompt similarity and ON for every source/target pair, rank-correlated
  with the measured zero-shot transfer;
- transfer as initialisation (TPT): the target prompt started from a source prompt vs the
  profile's own initialisation, same budget, learning curves and steps to 90 % of the baseline;
- PANDA (Zhong et al.): the same transfer runs with a distillation term from the source teacher,
  beta fixed or set per pair from ON;
- the cross-model projector from the profile's backbone A into backbone B: another profile's
  backbone (the `paper` study maps roberta-base into `paper_t5`'s t5-base, as Su et al.), or, when
  only one pretrained backbone exists, a hidden-unit-permuted copy of A (a known ground-truth map;
  see `projector.permuted_copy`).

Settings live in a `TransferStudy` per profile (kept out of `Profile`, so adding them did not
invalidate the profiles' cached tables). Every run checkpoints itself and every table is cached.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from .chapters import cached, transfer_table, tuning_table
from .errors import ConfigError, unknown
from .evaluation import evaluate
from .experiments import Experiment
from .indicators import ON_POSITIONS, activated_neurons, overlap_of_neurons, prompt_similarity, rank_correlation
from .prompt import init_prompt
from .projector import ProjectorConfig, permuted_copy, train_by_distance, train_by_task
from .tuning import TuneResult, run_signature, tune_prompt
from .validation import check_fields, check_overrides

ARMS = ("baseline", "transfer", "panda")
BETA_MODES = ("fixed", "on")
SIMILARITIES = {f"{metric}_{reduce}": (metric, reduce) for metric in ("cosine", "euclidean")
                for reduce in ("flat", "mean")}
# Wang et al. (2022) propose skill neurons as a transferability indicator: how much two prompts' skill
# neurons coincide, and (a softer version) how similar their predictivity vectors are.
SKILL_INDICATORS = ("skill_neuron_overlap", "predictivity_spearman")


@dataclass(frozen=True)
class TransferStudy:
    """Which pairs, seeds and budgets the transfer-method chapters use for one profile."""

    pairs: tuple[tuple[str, str], ...]
    seeds: tuple[int, ...]
    steps: int
    eval_every: int
    beta: float = 1.0
    beta_mode: str = "on"
    projector_train: tuple[str, ...] = ()
    projector_heldout: tuple[str, ...] = ()
    projector_seeds: tuple[int, ...] = (0,)
    projector_distance_steps: int = 500
    projector_task_steps: int = 100
    projector_hidden: int = 256
    projector_target: str = "permuted"  # or the name of the profile whose backbone and prompts are B
    projector_flat: bool = False  # Su et al. project the flattened prompt; False: one token at a time
    on_positions: str = "all"  # 'readout': ON at the mask slot / T5's first decoder step (Su et al.)

    def __post_init__(self) -> None:
        check_fields(self)  # types first: a string is never split into characters below
        object.__setattr__(self, "pairs", tuple(tuple(p) for p in self.pairs))
        for name in ("seeds", "projector_train", "projector_heldout", "projector_seeds"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if not self.pairs:
            raise ConfigError("a transfer study needs at least one (source, target) pair")
        bad = [p for p in self.pairs if len(p) != 2 or p[0] == p[1]]
        if bad:
            raise ConfigError(f"pairs must be (source, target) of two different tasks, got {bad}")
        if not self.seeds:
            raise ConfigError("a transfer study needs at least one seed")
        if self.steps < 1 or not 1 <= self.eval_every <= self.steps:
            raise ConfigError(f"need steps >= 1 and 1 <= eval_every <= steps, got {self.steps}, {self.eval_every}")
        if self.beta < 0:
            raise ConfigError(f"beta must be non-negative, got {self.beta}")
        if self.beta_mode not in BETA_MODES:
            raise unknown("beta mode", self.beta_mode, BETA_MODES)
        if self.on_positions not in ON_POSITIONS:
            raise unknown("ON positions", self.on_positions, ON_POSITIONS)
        overlap = set(self.projector_train) & set(self.projector_heldout)
        if overlap:
            raise ConfigError(f"projector tasks cannot be both trained on and held out: {sorted(overlap)}")
        if bool(self.projector_train) != bool(self.projector_heldout):
            raise ConfigError("give both projector_train and projector_heldout, or neither")
        from .catalog import PROFILES

        if self.projector_target != "permuted" and self.projector_target not in PROFILES:
            raise unknown("projector target", self.projector_target, ["permuted", *PROFILES])

    def replace(self, **overrides: Any) -> "TransferStudy":
        return dataclasses.replace(self, **check_overrides(TransferStudy, overrides, "transfer-study"))

    def check_against(self, exp: Experiment, projector_only: bool = False) -> None:
        """Every task must be one the profile tunes (its prompts are the sources), every seed one of its seeds."""
        tasks = set(exp.profile.tasks)
        used = set(self.projector_train) | set(self.projector_heldout)
        used |= set() if projector_only else {t for p in self.pairs for t in p}
        if used - tasks:
            raise ConfigError(f"transfer study uses tasks the profile {exp.profile.name!r} does not tune: "
                              f"{sorted(used - tasks)}; valid: {', '.join(exp.profile.tasks)}")
        seeds = set(self.projector_seeds) | (set() if projector_only else set(self.seeds))
        if seeds - set(exp.profile.seeds):
            raise ConfigError(f"transfer study uses seeds the profile has no prompts for: {sorted(seeds - set(exp.profile.seeds))}")


def skill_neuron_similarity(scores_a: torch.Tensor, scores_b: torch.Tensor, fraction: float) -> dict[str, float]:
    """Two prompts' skill neurons compared (Wang et al. 2022's transferability indicator).

    skill_neuron_overlap = (1/L) sum_l |S_l(A) & S_l(B)| / k, with S_l the top `fraction` of layer l's N
    neurons by predictivity (k = round(fraction * N)); predictivity_spearman = Spearman correlation of the
    two flattened predictivity vectors.
    """
    from scipy.stats import spearmanr

    from .skill_neurons import top_per_layer

    if scores_a.shape != scores_b.shape:
        raise ConfigError(f"predictivity shapes differ: {tuple(scores_a.shape)} vs {tuple(scores_b.shape)}")
    top_a, top_b = top_per_layer(scores_a, fraction=fraction), top_per_layer(scores_b, fraction=fraction)
    k = top_a.sum(dim=1).clamp(min=1).to(torch.float64)
    overlap = ((top_a & top_b).sum(dim=1).to(torch.float64) / k).mean()
    rho = spearmanr(scores_a.flatten().numpy(), scores_b.flatten().numpy()).statistic
    return {"skill_neuron_overlap": float(overlap), "predictivity_spearman": float(rho)}


def __getattr__(name: str) -> Any:
    """`STUDIES` lives in `lib.catalog` (data, not code: its values enter the cache keys)."""
    if name == "STUDIES":
        from .catalog import STUDIES

        return STUDIES
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def get_study(profile: str, overrides: dict[str, Any] | None = None) -> TransferStudy:
    """The profile's study (a profile named `paper...` without its own study uses `paper`'s), with fields overridden."""
    from .catalog import STUDIES

    if profile in STUDIES:
        base = STUDIES[profile]
    elif profile.startswith("paper"):
        base = STUDIES["paper"]
    else:
        raise unknown("transfer study (profile)", profile, STUDIES)
    return base.replace(**(overrides or {}))


class TransferMethods:
    """Cached transfer-method results for one experiment (profile) and study."""

    def __init__(self, exp: Experiment, study: TransferStudy) -> None:
        study.check_against(exp)
        self.exp, self.study = exp, study
        self._active: dict[tuple[str, int], torch.Tensor] = {}

    # --- indicators -----------------------------------------------------------------------------
    def activation_pattern(self, task: str, seed: int) -> torch.Tensor:
        if (task, seed) not in self._active:
            self._active[(task, seed)] = activated_neurons(self.exp.backbone, self.exp.prompt(task, seed),
                                                           positions=self.study.on_positions)
        return self._active[(task, seed)]

    def on(self, source: str, target: str, seed: int) -> pd.DataFrame:
        a, b = self.activation_pattern(source, seed), self.activation_pattern(target, seed)
        return overlap_of_neurons(a, b, window=min(3, a.shape[0]))  # Su et al.'s 3-layer windows

    def indicator_table(self) -> pd.DataFrame:
        """One row per (source, target, seed), source != target: every indicator and the measured transfer.

        `relative_transfer` = transfer accuracy / the target prompt's own test accuracy (same seed),
        the transferability Su et al. correlate with.
        """
        exp = self.exp

        def compute() -> pd.DataFrame:
            transfer = transfer_table(exp).set_index(["source", "target", "seed"])["accuracy"]
            own = tuning_table(exp).set_index(["task", "seed"])["test_accuracy"]
            rows = []
            for seed in exp.profile.seeds:
                for source in exp.profile.tasks:
                    for target in exp.profile.tasks:
                        if source == target:
                            continue
                        a, b = exp.prompt(source, seed), exp.prompt(target, seed)
                        # the readout slot's rows (masked LMs: the frozen <mask> row 0) are the same in every prompt
                        a, b = a[exp.backbone.rules.slot_rows:], b[exp.backbone.rules.slot_rows:]
                        row: dict[str, Any] = {"source": source, "target": target, "seed": seed,
                                               "same_type": exp.task(source).task_type == exp.task(target).task_type}
                        for name, (metric, reduce) in SIMILARITIES.items():
                            row[name] = prompt_similarity(a, b, metric, reduce)
                        row.update(skill_neuron_similarity(exp.neuron_scores(source, seed),
                                                           exp.neuron_scores(target, seed), exp.profile.top_fraction))
                        on = self.on(source, target, seed)
                        for i, r in enumerate(on.itertuples()):  # windows first, all layers last
                            row["on_all" if i == len(on) - 1 else f"on_layers_{r.first_layer}_{r.last_layer}"] = r.on
                        row["transfer_accuracy"] = float(transfer[(source, target, seed)])
                        row["relative_transfer"] = row["transfer_accuracy"] / float(own[(target, seed)])
                        rows.append(row)
            return pd.DataFrame(rows)
        return cached(exp, "indicators", "v2", compute)

    @staticmethod
    def indicator_names(table: pd.DataFrame) -> list[str]:
        return [c for c in table.columns if c in SIMILARITIES or c in SKILL_INDICATORS or c.startswith("on_")]

    def correlation_table(self, target_column: str = "relative_transfer") -> pd.DataFrame:
        """Spearman and Kendall of each indicator with transfer: per seed (where >= 3 pairs) and pooled."""
        table = self.indicator_table()
        rows = []
        for name in self.indicator_names(table):
            groups = [(int(s), g) for s, g in table.groupby("seed")] + [(-1, table)]
            for seed, g in groups:
                if len(g) < 3 or g[name].nunique() < 2 or g[target_column].nunique() < 2:
                    continue
                rows.append({"indicator": name, "seed": seed, **rank_correlation(g[name], g[target_column])})
        return pd.DataFrame(rows)

    # --- transfer as initialisation and PANDA ----------------------------------------------------
    def _config(self, seed: int, target: str, init: str | None = None):
        tune = self.exp.profile.tune_for(target)
        return dataclasses.replace(tune, seed=seed, max_steps=self.study.steps, eval_every=self.study.eval_every,
                                   patience=None, **({"init": init} if init else {}))

    def beta_for(self, source: str, target: str, seed: int) -> float:
        """PANDA's distillation weight: fixed, or scaled by ON (all layers) of the source and target prompts."""
        if self.study.beta_mode == "fixed":
            return self.study.beta
        on = self.on(source, target, seed)
        return self.study.beta * float(on["on"].iloc[-1])

    def run(self, arm: str, source: str | None, target: str, seed: int) -> TuneResult:
        """One tuning run of an arm: 'baseline' (the profile's own init), 'transfer' or 'panda' (from source)."""
        if arm not in ARMS:
            raise unknown("transfer arm", arm, ARMS)
        exp = self.exp
        sp = exp.splits(target)
        if arm == "baseline":
            cfg = self._config(seed, target)
            return tune_prompt(exp.backbone, exp.task(target), sp["train"], sp["dev"], cfg,
                               self._run_dir(Path("baseline") / target / f"seed{seed}", cfg, target),
                               progress=exp.progress)
        if source is None:
            raise ConfigError(f"arm {arm!r} needs a source task")
        src = exp.prompt(source, seed)
        kwargs: dict[str, Any] = {"source_prompt": src}
        if arm == "panda":
            kwargs.update(teacher_prompt=src, distill_beta=self.beta_for(source, target, seed))
        cfg = self._config(seed, target, "source")
        out = self._run_dir(Path(arm) / f"{source}_to_{target}" / f"seed{seed}", cfg, target, **kwargs)
        return tune_prompt(exp.backbone, exp.task(target), sp["train"], sp["dev"], cfg, out, progress=exp.progress,
                           **kwargs)

    def _run_dir(self, rel: Path, cfg, target: str, **kwargs: Any) -> Path:
        """The run's checkpoint folder, keyed by its signature (configuration, data, source, teacher)."""
        sp = self.exp.splits(target)
        signature = run_signature(cfg, self.exp.backbone, self.exp.task(target), sp["train"], sp["dev"], **kwargs)
        return self.exp.store.run_dir(Path("transfer_methods") / rel, signature)

    def _start_accuracy(self, arm: str, source: str | None, target: str, seed: int) -> float:
        """Dev accuracy at step 0 (before any update): the initial prompt's, for the learning curves."""
        exp = self.exp
        if arm == "baseline":
            prompt = init_prompt(exp.backbone, exp.profile.tune.prompt_length, exp.profile.tune.init, seed)
        else:
            prompt = exp.prompt(source, seed)  # type: ignore[arg-type]
        return evaluate(exp.backbone, prompt, exp.task(target), exp.encoded(target, "dev"),
                        max_length=exp.max_length(target)).accuracy

    def _runs_key(self) -> dict[str, Any]:
        """What the transfer runs depend on (the projector settings do not), for the table cache."""
        return {k: v for k, v in dataclasses.asdict(self.study).items() if not k.startswith("projector_")}

    def _projector_key(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self.study).items() if k.startswith("projector_")}

    def _runs(self) -> list[tuple[str, str | None, str, int]]:
        targets = sorted({t for _, t in self.study.pairs})
        runs: list[tuple[str, str | None, str, int]] = [("baseline", None, t, s) for t in targets for s in self.study.seeds]
        runs += [(arm, s_, t, seed) for s_, t in self.study.pairs for seed in self.study.seeds
                 for arm in ("transfer", "panda")]
        return runs

    def curves_table(self) -> pd.DataFrame:
        """Dev accuracy against steps (step 0 included) for every arm, pair and seed."""
        def compute() -> pd.DataFrame:
            rows = []
            for arm, source, target, seed in self._runs():
                res = self.run(arm, source, target, seed)
                base = {"arm": arm, "source": source or "(none)", "target": target, "seed": seed}
                rows.append({**base, "step": 0, "dev_accuracy": self._start_accuracy(arm, source, target, seed)})
                rows += [{**base, "step": h["step"], "dev_accuracy": h["dev_accuracy"]} for h in res.history]
            return pd.DataFrame(rows)
        return cached(self.exp, "transfer_curves", self._runs_key(), compute)

    def runs_table(self) -> pd.DataFrame:
        """One row per transfer run: beta, start / best dev, test accuracy, steps to 90 % of the baseline's best."""
        exp = self.exp

        def compute() -> pd.DataFrame:
            curves = self.curves_table()
            rows = []
            for arm, source, target, seed in self._runs():
                res = self.run(arm, source, target, seed)
                baseline_best = self.run("baseline", None, target, seed).best_dev_accuracy
                c = curves[(curves.arm == arm) & (curves.target == target) & (curves.seed == seed)
                           & (curves.source == (source or "(none)"))]
                reached = c[c.dev_accuracy >= 0.9 * baseline_best]["step"]
                ev = exp.evaluate(res.prompt, target)
                rows.append({"arm": arm, "source": source or "(none)", "target": target, "seed": seed,
                             "beta": self.beta_for(source, target, seed) if arm == "panda" else 0.0,
                             "start_dev": float(c[c.step == 0]["dev_accuracy"].iloc[0]),
                             "best_dev": res.best_dev_accuracy, "test_accuracy": ev.accuracy,
                             "steps_to_90": float(reached.min()) if len(reached) else np.nan,
                             "seconds": res.seconds})
            return pd.DataFrame(rows)
        return cached(exp, "transfer_runs", self._runs_key(), compute)

    # --- cross-model projector ------------------------------------------------------------------
    def projector_table(self) -> pd.DataFrame:
        """Held-out accuracy on backbone B of prompts projected from backbone A.

        Rows per (method, seed, held-out task): the 'distance' and 'task' projectors, and the
        references 'A on A' (the prompt on its own backbone) and 'B init' (B with a fresh initial
        prompt). With a permuted copy as B also 'B exact map' (the known permutation, equal to A on A)
        and 'B unprojected' (A's prompt fed to B unchanged); with another profile as B, 'B own prompt'
        (B's prompt tuned on the held-out task). Distance training pairs A's prompts with B's prompts
        of the same training tasks (for a permuted copy: A's prompts permuted, which is what tuning
        on B from the permuted initialisation gives).
        """
        exp, study = self.exp, self.study
        if not study.projector_train:
            raise ConfigError(f"the transfer study of profile {exp.profile.name!r} defines no projector tasks")
        if study.projector_target == "permuted":
            b, perm = permuted_copy(exp.backbone, seed=1234)
            exp_b = None
        else:
            exp_b = Experiment(study.projector_target, exp.results_dir, progress=exp.progress, reuse=exp.reuse)
            study.check_against(exp_b, projector_only=True)
            b, perm = exp_b.backbone, None
        b_data = exp if exp_b is None else exp_b  # whose tokenizer encodes the data for B

        def b_prompt(task: str, seed: int) -> torch.Tensor:
            return exp.prompt(task, seed)[:, perm] if exp_b is None else exp_b.prompt(task, seed)

        def compute() -> pd.DataFrame:
            rows = []
            for seed in study.projector_seeds:
                train_prompts = [exp.prompt(t, seed) for t in study.projector_train]
                dist_cfg = ProjectorConfig(hidden=study.projector_hidden, lr=1e-3, steps=study.projector_distance_steps,
                                           seed=seed, flat=study.projector_flat)
                by_distance, dist_losses = train_by_distance(
                    [(p, b_prompt(t, seed)) for p, t in zip(train_prompts, study.projector_train)], dist_cfg)
                task_cfg = ProjectorConfig(hidden=study.projector_hidden, lr=1e-3, steps=study.projector_task_steps,
                                           batch_size=exp.profile.tune.batch_size, seed=seed, flat=study.projector_flat)
                sources = [(p, b_data.task(t), b_data.encoded(t, "train"))
                           for p, t in zip(train_prompts, study.projector_train)]
                by_task, task_losses = train_by_task(sources, b, task_cfg)
                for task in study.projector_heldout:
                    a_prompt = exp.prompt(task, seed)
                    candidates = {"A on A": (exp.backbone, a_prompt, exp.encoded(task, "test"))}
                    enc_b = b_data.encoded(task, "test")
                    if exp_b is None:
                        candidates["B exact map"] = (b, b_prompt(task, seed), enc_b)
                        candidates["B unprojected"] = (b, a_prompt, enc_b)
                    else:
                        candidates["B own prompt"] = (b, b_prompt(task, seed), enc_b)
                    candidates["B init"] = (b, init_prompt(b, a_prompt.shape[0], exp.profile.tune.init, seed), enc_b)
                    candidates["B distance projector"] = (b, by_distance(a_prompt).detach(), enc_b)
                    candidates["B task projector"] = (b, by_task(a_prompt.to(b.device)).detach().cpu(), enc_b)
                    for method, (backbone, prompt, enc) in candidates.items():
                        ev = evaluate(backbone, prompt, b_data.task(task), enc, max_length=exp.max_length(task))
                        rows.append({"method": method, "seed": seed, "task": task, "accuracy": ev.accuracy,
                                     "macro_f1": ev.macro_f1, "backbone_b": b.name,
                                     # the task loss of one step is one batch's: average a few steps at each end
                                     "final_distance_loss": dist_losses[-1],
                                     "final_task_loss": float(np.mean(task_losses[-5:])),
                                     "first_task_loss": float(np.mean(task_losses[:5]))})
            return pd.DataFrame(rows)
        return cached(exp, "projector", self._projector_key(), compute)
