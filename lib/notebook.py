"""The few lines every book notebook shares: profile, cached experiment, plot style, a banner."""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from .errors import ConfigError
from .paths import REPO, from_repo
from .profiles import Profile, get_profile

if TYPE_CHECKING:
    from .experiments import Experiment


def parse_overrides(value: Mapping[str, Any] | str | None, name: str = "overrides") -> dict[str, Any]:
    """A notebook parameter of overrides as a dict.

    The runner passes dicts, but `papermill -p overrides '{"seeds": [0]}'` passes the JSON text as a
    string, so both are accepted; anything else is one clear `ConfigError`.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return {}
    if isinstance(value, Mapping):
        return copy.deepcopy(dict(value))
    if not isinstance(value, str):
        raise ConfigError(f"{name} must be a dict or a JSON object string, got {type(value).__name__}")
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{name} must be a JSON object, e.g. {name}='{{\"seeds\": [0]}}' "
                          f"({exc.msg} at character {exc.pos} of {value!r})") from None
    if not isinstance(parsed, dict):
        raise ConfigError(f"{name} must be a JSON object, e.g. {name}='{{\"seeds\": [0]}}', got {value!r}")
    return parsed


def setup(profile: str, results_dir: str | Path = "results", overrides: Mapping[str, Any] | str | None = None,
          *, control: bool = False) -> tuple[Profile, Experiment]:
    """Resolve the profile (with overrides), open its cached experiment, style plots, show a banner.

    `results_dir` (and a relative data root, inside `Experiment`) are taken from the repository root,
    not the working directory, so a notebook opened where it lies finds the committed cache. A results
    folder other than the repository's own `results/` (a scratch re-run) reads the committed results
    whose keys match and never writes there.
    """
    import matplotlib
    import seaborn as sns
    from IPython.display import Markdown, display

    from .experiments import Experiment

    matplotlib.rcParams.update({"figure.dpi": 110, "savefig.bbox": "tight"})
    sns.set_theme(style="whitegrid", context="notebook")
    prof = get_profile(profile).replace(**parse_overrides(overrides))
    results = from_repo(results_dir)
    committed = REPO / "results"
    reuse = [committed] if results != committed else []
    exp = Experiment(prof, results, control=control, progress=False, reuse=reuse)
    display(Markdown(f"> **Profile `{prof.name}`** ({prof.description}). Backbone `{prof.model}`"
                     f"{' (random-initialisation control)' if control else ''}; tasks: {', '.join(prof.tasks)}; "
                     f"seeds: {', '.join(map(str, prof.seeds))}; prompt length {prof.tune.prompt_length}, "
                     f"{prof.tune.max_steps} steps of batch {prof.tune.batch_size}, lr {prof.tune.lr}."))
    return prof, exp


def say(text: str) -> None:
    """Show a sentence of interpretation built from the numbers just computed."""
    from IPython.display import Markdown, display

    display(Markdown(text))
