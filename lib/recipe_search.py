"""The tuning-recipe search behind the mini profile: how far joint-input prompt tuning gets per task.

    python -m lib.recipe_search --task imdb --lr 0.3 --max-length 256 --max-steps 400 [--seed 0]
    python -m lib.recipe_search --show

Each call tunes one prompt on a profile's data (default `mini`) with the profile's recipe changed by
the given fields, evaluates its best-on-dev prompt on the test split, and appends one row to
`results/<profile>/recipe_search.csv`: the recipe, best dev accuracy and the dev split's majority rate
(what the screen ranks and judges by: a selection reads dev), test accuracy and macro-F1 with the test
split's majority rate (reported beside, never used to choose), and the seconds it took. A row already present for the same recipe is
not run again (the prompt itself is resumable under `results/<profile>/recipe_search/`), so a killed
search continues where it stopped. The book's "tuning recipe" section shows this table.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import Sequence

import pandas as pd

from .verdicts import majority_rate

COLUMNS = ("task", "seed", "lr", "max_steps", "prompt_length", "max_length", "batch_size", "schedule",
           "best_dev_acc", "dev_majority", "test_acc", "test_macro_f1", "majority", "n_test", "seconds")


def summarise(table: pd.DataFrame) -> pd.DataFrame:
    """The search table ranked by best dev accuracy per task, with `meets_bar`: best dev accuracy above
    the dev majority rate. Dev only, because the screen chooses recipes; the test columns are reported
    beside it and never rank or judge. One seed per row: a screen for recipes worth running over all
    seeds, not the learned gate (`lib.verdicts.task_status`)."""
    out = table.copy()
    out["meets_bar"] = out["best_dev_acc"] > out["dev_majority"]
    return out.sort_values(["task", "best_dev_acc"], ascending=[True, False]).reset_index(drop=True)


def screen_sentence(summary: pd.DataFrame, profile_recipe: dict) -> str:
    """Per task, the best screened recipe on dev and whether it beats the dev majority (computed, for the chapter)."""
    parts = []
    for task, rows in summary.groupby("task", sort=True):
        best = rows.iloc[0]
        changed = [f"{k} {best[k]:g}" for k in ("lr", "max_steps", "prompt_length", "max_length", "batch_size")
                   if k in best and k in profile_recipe and best[k] != profile_recipe[k]]
        recipe = ", ".join(changed) or "the profile's recipe"
        verdict = "beats the dev majority rate" if bool(best["meets_bar"]) else "no recipe tried beats the dev majority rate"
        parts.append(f"{task}: best dev accuracy {best['best_dev_acc']:.1%} (dev majority {best['dev_majority']:.1%}) "
                     f"with {recipe}; {verdict} ({len(rows)} recipe(s) tried; its test accuracy "
                     f"{best['test_acc']:.1%}, test majority {best['majority']:.1%})")
    return "; ".join(parts) + "." if parts else "No recipe has been screened."


def with_dev_majority(table: pd.DataFrame, exp) -> pd.DataFrame:
    """Older search tables recorded the test majority only: add each task's dev majority rate."""
    out = table.copy()
    out["dev_majority"] = [round(majority_rate(exp.splits(t)["dev"]["label"]), 4) for t in out["task"]]
    return out[[c for c in COLUMNS if c in out]]


def load(profile: str = "mini", results: str | Path = "results") -> pd.DataFrame | None:
    """The committed search table of `profile`, or None when there is none."""
    from .paths import from_repo

    path = from_repo(results) / profile / "recipe_search.csv"
    return pd.read_csv(path) if path.is_file() else None


def _recipe_key(row: dict) -> tuple:
    return tuple(row[c] for c in COLUMNS[:8])


def run_one(profile: str, task: str, seed: int, changes: dict, table: Path) -> dict:
    from .experiments import Experiment
    from .store import fingerprint
    from .tuning import tune_prompt

    exp = Experiment(profile, progress=False)
    cfg = dataclasses.replace(exp.profile.tune, seed=seed, **changes)
    row = {"task": task, "seed": seed, "lr": cfg.lr, "max_steps": cfg.max_steps, "prompt_length": cfg.prompt_length,
           "max_length": cfg.max_length, "batch_size": cfg.batch_size, "schedule": cfg.schedule}
    done = pd.read_csv(table) if table.is_file() else pd.DataFrame(columns=COLUMNS)
    if "dev_majority" not in done:
        done = with_dev_majority(done, exp)
    if any(_recipe_key(r) == _recipe_key(row) for r in done.to_dict("records")):
        print(f"already in {table}: {row}")
        return row
    sp = exp.splits(task)
    started = time.perf_counter()
    out = exp.shared / "recipe_search" / task / fingerprint(dataclasses.asdict(cfg))
    result = tune_prompt(exp.backbone, exp.task(task), sp["train"], sp["dev"], cfg, out, progress=False)
    from .evaluation import evaluate

    test = evaluate(exp.backbone, result.prompt, exp.task(task), exp.backbone.encode(sp["test"], cfg.max_length),
                    max_length=cfg.max_length)
    row.update(best_dev_acc=round(result.best_dev_accuracy, 4), dev_majority=round(majority_rate(sp["dev"]["label"]), 4),
               test_acc=round(test.accuracy, 4),
               test_macro_f1=round(test.macro_f1, 4), majority=round(majority_rate(test.labels), 4),
               n_test=test.n, seconds=round(time.perf_counter() - started, 1))
    table.parent.mkdir(parents=True, exist_ok=True)
    pd.concat([done, pd.DataFrame([row])], ignore_index=True)[list(COLUMNS)].to_csv(table, index=False)
    print(row)
    return row


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lib.recipe_search", description=__doc__.splitlines()[0])
    p.add_argument("--profile", default="mini")
    p.add_argument("--task")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lr", type=float)
    p.add_argument("--max-steps", type=int)
    p.add_argument("--prompt-length", type=int)
    p.add_argument("--max-length", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--eval-every", type=int)
    p.add_argument("--show", action="store_true", help="print the table and exit")
    a = p.parse_args(argv)
    from .paths import from_repo

    table = from_repo("results") / a.profile / "recipe_search.csv"
    if a.show:
        print(pd.read_csv(table).to_string(index=False) if table.is_file() else f"no table yet: {table}")
        return 0
    if not a.task:
        p.error("--task is required (or --show)")
    changes = {k: v for k, v in {"lr": a.lr, "max_steps": a.max_steps, "prompt_length": a.prompt_length,
                                 "max_length": a.max_length, "batch_size": a.batch_size,
                                 "eval_every": a.eval_every}.items() if v is not None}
    run_one(a.profile, a.task, a.seed, changes, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
