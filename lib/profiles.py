"""Named experiment profiles: which backbone, tasks, seeds and budgets a book run uses.

- smoke: a tiny random BERT and synthetic tasks; minutes on CPU; what the tests execute;
- mini: all-MiniLM-L6-v2 on the real data available offline (../shared/data or the hub);
- paper / paper_t5: roberta-base / t5-base with the references' tasks and hyper-parameters (GPU, hub).
A notebook takes a profile name and may override single fields (`Profile.replace`); `name` and
`description` label the profile and are not overridable (the name is the results folder's name).
Every name that becomes a folder (the profile's, its tasks') is checked by
`lib.validation.check_path_component` before anything is written.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

from .data import DataConfig
from .errors import ConfigError, unknown
from .models import PROMPT_POSITIONS
from .tasks import TASKS
from .tuning import TuneConfig
from .validation import check_fields, check_overrides, check_path_component


# Fields that label a profile rather than set it up: never overridden (`Profile.replace`).
LABELS = ("name", "description")


@dataclass(frozen=True)
class Profile:
    name: str
    model: str
    tasks: tuple[str, ...]
    seeds: tuple[int, ...]
    tune: TuneConfig
    data: DataConfig
    adversarial: Mapping[str, str] = field(default_factory=dict)
    suppression_fractions: tuple[float, ...] = (0.0, 0.005, 0.01, 0.015)
    n_random_draws: int = 3
    top_fraction: float = 0.01
    threshold_examples: int = 2000
    control_seeds: tuple[int, ...] = (0,)
    task_tune: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    verbalizer_space: bool = True  # RoBERTa label words with a leading space; the references: False
    prompt_positions: str = "ordinary"  # 'zero': prompt slots get zero position embeddings (the references)
    synthetic: bool = False
    description: str = ""

    def __post_init__(self) -> None:
        check_fields(self)  # types first: a string where a list or a number belongs is one clear line
        check_path_component(self.name, "profile name")  # results/<name>/...
        for task in (*self.tasks, *self.adversarial, *self.adversarial.values(), *self.task_tune):
            check_path_component(task, "task name")  # .../prompts/<task>/seed<n>, <data root>/<task>/...
        if not self.tasks:
            raise ConfigError(f"profile {self.name!r} has no tasks")
        if not self.seeds:
            raise ConfigError(f"profile {self.name!r} has no seeds")
        for name in ("tasks", "seeds", "control_seeds"):
            values = getattr(self, name)
            repeated = sorted({v for v in values if values.count(v) > 1}, key=str)
            if repeated:
                raise ConfigError(f"{name} must not repeat, got {list(values)} ({repeated} twice)")
        if not self.synthetic:  # synthetic profiles build their tasks on the fly (lib.tiny)
            for task in (*self.tasks, *self.adversarial.values()):
                if task not in TASKS:
                    raise unknown("task", task, TASKS)
        for name in ("seeds", "control_seeds"):
            negative = [s for s in getattr(self, name) if s < 0]
            if negative:
                raise ConfigError(f"{name} must be non-negative integers, got {list(getattr(self, name))}")
        if not self.control_seeds:
            raise ConfigError(f"profile {self.name!r} has no control_seeds (the random-init control needs one)")
        missing = set(self.adversarial) - set(self.tasks)
        if missing:
            raise ConfigError(f"profile {self.name!r}: adversarial sets for tasks it does not tune: {sorted(missing)}")
        if self.prompt_positions not in PROMPT_POSITIONS:
            raise unknown("prompt positions", self.prompt_positions, PROMPT_POSITIONS)
        if not 0 < self.top_fraction <= 1:
            raise ConfigError(f"top_fraction must be in (0, 1], got {self.top_fraction}")
        bad = [f for f in self.suppression_fractions if not 0 <= f < 1]
        if bad:
            raise ConfigError(f"suppression_fractions must lie in [0, 1), got {list(self.suppression_fractions)}")
        for name in ("n_random_draws", "threshold_examples"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.tune.init == "source":
            raise ConfigError("tune.init='source' needs a source prompt, which a profile does not give "
                              "(the transfer chapters set it per run); valid here: random, vocab")
        object.__setattr__(self, "adversarial", dict(self.adversarial))
        extra = set(self.task_tune) - set(self.tasks)
        if extra:
            raise ConfigError(f"task_tune names task(s) the profile does not tune: {sorted(extra)}; "
                              f"valid: {', '.join(self.tasks)}")
        for task, changes in self.task_tune.items():
            if "seed" in changes:
                raise ConfigError(f"task_tune[{task!r}] must not set seed (the profile's seeds do)")
            checked = check_overrides(TuneConfig, changes, f"task_tune.{task}", prefix=f"task_tune.{task}.")
            try:
                dataclasses.replace(self.tune, **checked)
            except ConfigError as exc:
                raise ConfigError(f"task_tune.{task}: {exc}") from None
        object.__setattr__(self, "task_tune", {t: dict(c) for t, c in self.task_tune.items()})

    def tune_for(self, task: str) -> TuneConfig:
        """The tuning configuration of one task: `tune` with the task's `task_tune` entries applied.

        Why per task: one recipe does not fit every input length (IMDB reviews need 128 tokens where
        SST-2 phrases fit in 64), and changing the shared value would re-tune every other task.
        """
        changes = self.task_tune.get(task)
        return dataclasses.replace(self.tune, **changes) if changes else self.tune

    def replace(self, **overrides: Any) -> "Profile":
        """A copy with some fields changed; `tune` and `data` accept dicts of their own fields.

        Every override is checked (names, types, finite numbers) before anything is built, so a
        notebook parameter such as `{"tasks": "sst2"}` fails here, in one line, not inside a chapter.
        """
        overrides = check_overrides(Profile, overrides, "profile")
        fixed = [key for key in LABELS if key in overrides]
        if fixed:
            from .catalog import PROFILES

            raise ConfigError(f"profile field(s) {fixed} cannot be overridden: name and description label the "
                              f"profile {self.name!r} and name its results folder; choose another profile "
                              f"instead ({', '.join(sorted(PROFILES))})")
        for key in ("tune", "data"):
            if isinstance(overrides.get(key), dict):
                try:
                    overrides[key] = dataclasses.replace(getattr(self, key), **overrides[key])
                except ConfigError as exc:
                    message = str(exc)
                    raise ConfigError(message if message.startswith(f"{key}.") else f"{key}: {message}") from None
        if "tasks" in overrides and "adversarial" not in overrides:  # keep the sets of the tasks still tuned
            overrides["adversarial"] = {k: v for k, v in self.adversarial.items() if k in overrides["tasks"]}
        if "tasks" in overrides and "task_tune" not in overrides:
            overrides["task_tune"] = {k: v for k, v in self.task_tune.items() if k in overrides["tasks"]}
        return dataclasses.replace(self, **overrides)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def __getattr__(name: str) -> Any:
    """`PROFILES` lives in `lib.catalog` (data, not code: its values enter every cache key)."""
    if name == "PROFILES":
        from .catalog import PROFILES

        return PROFILES
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def get_profile(name: str | Profile) -> Profile:
    from .catalog import PROFILES

    if isinstance(name, Profile):
        return name
    try:
        return PROFILES[name]
    except KeyError:
        raise unknown("profile", name, PROFILES) from None
