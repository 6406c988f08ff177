"""The few lines every book notebook shares: profile, cached experiment, plot style, a banner."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .experiments import Experiment
from .profiles import Profile, get_profile


def setup(profile: str, results_dir: str | Path = "results", overrides: dict[str, Any] | None = None,
          *, control: bool = False) -> tuple[Profile, Experiment]:
    """Resolve the profile (with overrides), open its cached experiment, style plots, show a banner."""
    import matplotlib
    import seaborn as sns
    from IPython.display import Markdown, display

    matplotlib.rcParams.update({"figure.dpi": 110, "savefig.bbox": "tight"})
    sns.set_theme(style="whitegrid", context="notebook")
    prof = get_profile(profile).replace(**(overrides or {}))
    exp = Experiment(prof, results_dir, control=control, progress=False)
    display(Markdown(f"> **Profile `{prof.name}`** ({prof.description}). Backbone `{prof.model}`"
                     f"{' (random-initialisation control)' if control else ''}; tasks: {', '.join(prof.tasks)}; "
                     f"seeds: {', '.join(map(str, prof.seeds))}; prompt length {prof.tune.prompt_length}, "
                     f"{prof.tune.max_steps} steps of batch {prof.tune.batch_size}, lr {prof.tune.lr}."))
    return prof, exp


def say(text: str) -> None:
    """Show a sentence of interpretation built from the numbers just computed."""
    from IPython.display import Markdown, display

    display(Markdown(text))
