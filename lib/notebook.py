"""The few lines every book notebook shares: profile, cached experiment, plot style, a banner, and the
presentation helpers of the chapters (tables without index and with human column names, reference
lines for chance and the majority class, legends outside the data). Nothing here computes a result.

`setup` first refuses notebook parameters that the notebook does not declare (`check_parameters`):
papermill only logs "Passed unknown parameter" for `-p top_fraction 0.05`, injects the assignment
anyway and exits 0 after running the committed configuration, a silently wrong result."""
from __future__ import annotations

CACHE_NEUTRAL = True  # lib.code_identity: nothing here changes what a cached result contains

import contextlib
import dataclasses
import hashlib
import html
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Sequence

from .errors import ConfigError
from .parameters import INJECTED_MARK, parse_overrides  # noqa: F401 (parse_overrides: the notebooks import it from here)
from .parameters import assignments as _assignments
from .paths import REPO, from_repo
from .profiles import Profile, get_profile

if TYPE_CHECKING:
    import pandas as pd

    from .experiments import Experiment
    from .store import ResultsStore

# Figures are written at this resolution (the book scales them to the page width).
DPI = 150


def check_parameters(history: Sequence[str] | None = None) -> None:
    """One `ConfigError` when papermill injected a parameter the notebook's `parameters` cell does not declare.

    The kernel's input history (`history`, default IPython's) holds the cells in the order they ran;
    papermill runs its injected cell (it starts with `# Parameters`) right after the template's
    parameters cell, so the names the one sets and the other does not are the undeclared ones. Outside
    IPython, or when the cell before is not a cell of plain assignments (cells run out of order by
    hand), nothing is checked. `PAPERMILL_*` names (papermill's --inject-paths) are always allowed.
    """
    if history is None:
        try:
            from IPython import get_ipython
        except ImportError:  # pragma: no cover - IPython comes with the notebook dependencies
            return
        shell = get_ipython()
        if shell is None:
            return
        history = list(shell.history_manager.input_hist_raw)
    marks = [i for i, cell in enumerate(history) if isinstance(cell, str) and cell.startswith(INJECTED_MARK)]
    if not marks:
        return
    i = marks[-1]
    injected = _assignments(history[i])
    declared = _assignments(history[i - 1]) if i > 0 else {}
    if injected is None or declared is None:
        return
    undeclared = sorted(n for n in set(injected) - set(declared) if not n.startswith("PAPERMILL_"))
    if not undeclared:
        return
    fields = [n for n in undeclared if n in {f.name for f in dataclasses.fields(Profile)}]
    hint = (f"; a profile field is set through overrides, e.g. -p overrides '{{\"{fields[0]}\": "
            f"{injected[fields[0]]}}}'" if fields and "overrides" in declared else "")
    raise ConfigError(f"notebook parameter(s) {undeclared} are not declared by this notebook (its parameters: "
                      f"{', '.join(sorted(declared)) or 'none'}) and would be ignored{hint}")


def setup(profile: str, results_dir: str | Path = "results", overrides: Mapping[str, Any] | str | None = None,
          *, control: bool = False) -> tuple[Profile, Experiment]:
    """Resolve the profile (with overrides), open its cached experiment, style plots, show a banner.

    `results_dir` (and a relative data root, inside `Experiment`) are taken from the repository root,
    not the working directory, so a notebook opened where it lies finds the committed cache. A results
    folder other than the repository's own `results/` (a scratch re-run) reads the committed results
    whose keys match and never writes there.
    """
    check_parameters()  # before any work: an undeclared papermill parameter would be ignored silently
    import matplotlib
    import seaborn as sns
    from IPython.display import Markdown, display

    from .experiments import Experiment

    sns.set_theme(style="whitegrid", context="notebook", font_scale=1.15)
    matplotlib.rcParams.update({"figure.dpi": DPI, "savefig.dpi": DPI, "savefig.bbox": "tight",
                                "legend.frameon": False})
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


# --- presentation helpers (display only) ----------------------------------------------------------------
def table(df: pd.DataFrame, columns: Mapping[str, str] | None = None, *, digits: int = 3,
          formats: Mapping[str, str] | None = None, percent: Sequence[str] = (), caption: str | None = None,
          keep: bool = False):
    """`df` as an HTML table for the book: no index column, human column names, numbers rounded, and a
    frame that scrolls sideways inside the page when the table is wider than it.

    `columns` maps column -> header (and, unless `keep`, selects and orders the columns shown);
    `formats` maps a column (its original name) to a format string; `percent` lists columns shown as %.
    A (Multi)Index is turned into ordinary columns first.
    """
    import pandas as pd
    from IPython.display import HTML

    frame = df.copy()
    if not isinstance(frame.index, pd.RangeIndex) or frame.index.name is not None:
        frame = frame.reset_index()
    if isinstance(frame.columns, pd.MultiIndex):
        frame.columns = [" ".join(str(p) for p in c if str(p)) for c in frame.columns]
    if columns:
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise ConfigError(f"table columns not found: {missing}; have {list(frame.columns)}")
        if not keep:
            frame = frame[list(columns)]
    fmt: dict[str, Any] = {}
    for col in frame.columns:
        if col in percent:
            fmt[col] = "{:.1%}"
        elif formats and col in formats:
            fmt[col] = formats[col]
        elif pd.api.types.is_float_dtype(frame[col]):
            fmt[col] = f"{{:.{digits}f}}"
    styler = frame.style.format(fmt, na_rep="–").hide(axis="index")
    # pandas names each table's CSS ids after a random uuid; a hash of what the table shows names it the
    # same on every run, so re-executing a chapter whose numbers did not change leaves its notebook unchanged
    shown = frame.to_csv(index=False) + json.dumps([columns, caption, fmt], default=str, sort_keys=True)
    styler = styler.set_uuid(hashlib.sha256(shown.encode()).hexdigest()[:10])
    if columns:
        styler = styler.relabel_index([columns.get(c, c) for c in frame.columns], axis="columns")
    if caption:
        styler = styler.set_caption(html.escape(caption))
    styler = styler.set_table_attributes('class="dataframe compendium-table"').set_table_styles(
        [{"selector": "th", "props": "text-align: left; white-space: normal;"},
         {"selector": "td", "props": "white-space: normal; overflow-wrap: normal;"}], overwrite=False)
    return HTML(f'<div class="table-scroll" style="overflow-x: auto; max-width: 100%;">{styler.to_html()}</div>')


def majority_baseline(exp: Experiment, task: str, split: str = "test") -> float:
    """Accuracy of always predicting the most frequent label of `task`'s `split` (a reference line)."""
    import numpy as np

    from .intervals import majority_rate

    counts = exp.label_counts(task, split)  # recorded beside the results: readable without the data
    return majority_rate(np.repeat(np.arange(len(counts)), counts))


def expected_answer(key: str, text: str) -> None:
    """Glue the expected result of a re-run exercise, computed from the chapter's own run, so that its
    solution can state it (`{glue:md}` with `key` inside the solution block) and a teacher can check an
    answer: the re-run reuses this run's prompts and test sets, so it prints these numbers."""
    from IPython.display import Markdown
    from myst_nb import glue

    glue(key, Markdown(text), display=False)


def highest_predictivity(exp: Experiment, task: str) -> float:
    """A task's highest predictivity, max over FFN neurons (l, i) of Pred(l, i) averaged over the profile's
    seeds (`Experiment.mean_scores`, the references' aggregation), on the test split. One named quantity:
    every page that prints it calls this function and glues it as `max_pred_<task>`."""
    return float(exp.mean_scores(task).max())


def chance(exp: Experiment, task: str) -> float:
    """Accuracy of uniform guessing, 1 / number of labels."""
    return 1.0 / exp.task(task).num_labels


def task_palette(tasks: Sequence[str] | None = None) -> dict[str, Any]:
    """One colour per task for the whole book (pass as seaborn's `palette=`): a task has the same colour
    in every panel and chapter, whichever tasks a figure shows. Fixed by the task's place in the
    registry (`lib.tasks.TASKS`); tasks outside it (synthetic ones) follow in sorted order."""
    import seaborn as sns

    from .tasks import TASKS

    known = list(TASKS)
    extra = sorted(set(tasks or ()) - set(known))
    colours = sns.color_palette("tab20", 20)
    order = known + extra
    return {t: colours[(2 * i) % 20 if i < 10 else (2 * i + 1) % 20] for i, t in enumerate(order)
            if tasks is None or t in tasks}


def class_palette(labels: Sequence[str]) -> dict[str, Any]:
    """One colour per class label, in label-id order: label 0 blue, label 1 orange, ... in every figure."""
    import seaborn as sns

    colours = sns.color_palette("colorblind", max(len(labels), 3))
    return {label: colours[i] for i, label in enumerate(labels)}


def mark_untestable(ax, task: str, learned: bool) -> None:
    """Draw an untestable task's panel greyed and say so in its title, so it never reads as an equal."""
    if learned:
        return
    ax.set_facecolor("0.93")
    ax.set_title(f"{ax.get_title() or task} (untestable)", color="0.4")


UNTESTABLE = "untestable"


def status_labels(tasks: Sequence[str], learned: Mapping[str, bool]) -> dict[str, str]:
    """{task: the name a multi-task figure shows}: an untestable task (its prompts did not beat the gate,
    `lib.verdicts`) is named '<task> (untestable)', so that it never reads as an equal of a learned one."""
    return {t: t if learned.get(t, True) else f"{t} ({UNTESTABLE})" for t in tasks}


def status_palette(tasks: Sequence[str], learned: Mapping[str, bool]) -> dict[str, Any]:
    """`task_palette` keyed by `status_labels`: learned tasks in their book colour, untestable ones in a pale
    grey version of it (a third of the colour, two thirds light grey)."""
    labels = status_labels(tasks, learned)
    palette = task_palette(list(tasks))
    return {labels[t]: (c if learned.get(t, True) else tuple(c_ / 3 + 0.8 * 2 / 3 for c_ in c[:3]))
            for t, c in palette.items()}


def fade_untestable_categories(ax, order: Sequence[str], learned: Mapping[str, bool]) -> None:
    """On a categorical x axis (one position per task, in `order`): the bars of untestable tasks pale, their
    tick labels grey with '(untestable)' on a second line."""
    pale = {i for i, t in enumerate(order) if not learned.get(t, True)}
    for patch in ax.patches:
        centre = patch.get_x() + patch.get_width() / 2
        if round(centre) in pale:
            patch.set_alpha(0.3)
    ax.set_xticks(range(len(order)))
    ax.set_xticklabels([f"{t}\n({UNTESTABLE})" if i in pale else t for i, t in enumerate(order)])
    for i, tick in enumerate(ax.get_xticklabels()):
        if i in pale:
            tick.set_color("0.45")


def reference_lines(ax, chance_level: float | None = 0.5, majority: float | None = None, *,
                    orient: str = "h", label: bool = True) -> None:
    """Dashed line at chance and dotted line at the majority baseline (horizontal by default)."""
    line = ax.axhline if orient == "h" else ax.axvline
    if chance_level is not None:
        line(chance_level, ls="--", c="0.35", lw=1, zorder=0.5, label=f"chance ({chance_level:.0%})" if label else None)
    if majority is not None:
        line(majority, ls=":", c="0.2", lw=1.3, zorder=0.5,
             label=f"majority class ({majority:.0%})" if label else None)


def legend_outside(obj, title: str | None = None) -> None:
    """Put the legend outside the data: right of an Axes (with all its labelled artists, including reference
    lines added after seaborn drew its legend), below the panels of a seaborn grid."""
    import matplotlib.axes
    import seaborn as sns

    if not isinstance(obj, matplotlib.axes.Axes):  # a seaborn grid: one row below the panels
        n = len(obj.legend.get_texts()) if getattr(obj, "legend", None) is not None else 1
        sns.move_legend(obj, "upper center", bbox_to_anchor=(0.5, 0.0), ncol=min(n, 4), title=title, frameon=False)
        return
    ax, handles, labels = obj, [], []
    old = ax.get_legend()
    if old is not None:
        handles += list(old.legend_handles)
        labels += [t.get_text() for t in old.get_texts()]
        title = title if title is not None else (old.get_title().get_text() or None)
    for handle, label in zip(*ax.get_legend_handles_labels()):
        if label not in labels and not label.startswith("_"):
            handles.append(handle)
            labels.append(label)
    ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1), title=title, frameon=False,
              borderaxespad=0)


class NotCached(LookupError):
    """A table that `cached_only` was asked for is not in the results store."""


@contextlib.contextmanager
def cached_only(store: ResultsStore) -> Iterator[None]:
    """Inside, `store.table` returns a cached table but raises `NotCached` instead of computing one.

    Why: a chapter may show another chapter's results beside its own (model tuning beside prompt
    tuning) without starting that chapter's work, e.g. minutes of weight tuning in a classroom re-run.
    """
    def lookup(name: str, config: Any, compute: Callable[[], Any]) -> Any:
        def refuse() -> Any:
            raise NotCached(f"table {name!r} is not cached under {store.root}")
        return type(store).table(store, name, config, refuse)

    store.table = lookup  # type: ignore[method-assign]  # an instance attribute shadows the method
    try:
        yield
    finally:
        del store.table
