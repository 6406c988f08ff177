"""Helpers every chapter shares (lib.notebook): one colour per task everywhere, an untestable task never drawn
as an equal of a learned one (pale, and named so), and one function per named quantity."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from lib.notebook import (fade_untestable_categories, status_labels, status_palette,  # noqa: E402
                          task_palette)


def test_a_task_keeps_its_colour_whichever_tasks_a_figure_shows():
    assert task_palette(["sst2", "rte"])["rte"] == task_palette(["rte"])["rte"] == task_palette()["rte"]
    colours = list(task_palette().values())
    assert len(set(colours[:20])) == 20, "tab20: the first 20 tasks of the registry have 20 different colours"


def test_untestable_tasks_are_named_and_pale():
    learned = {"sst2": True, "mrpc": False}
    assert status_labels(["sst2", "mrpc"], learned) == {"sst2": "sst2", "mrpc": "mrpc (untestable)"}
    colours = status_palette(["sst2", "mrpc"], learned)
    assert set(colours) == {"sst2", "mrpc (untestable)"}
    assert colours["sst2"] == task_palette(["sst2"])["sst2"], "a learned task keeps its book colour"
    book = task_palette(["mrpc"])["mrpc"]
    pale = colours["mrpc (untestable)"]
    assert pale == pytest.approx(tuple(c / 3 + 0.8 * 2 / 3 for c in book[:3]))
    spread = max(pale) - min(pale)
    assert spread < (max(book[:3]) - min(book[:3])) / 2, "paler: a third of the colour's saturation"
    assert status_labels(["x"], {}) == {"x": "x"}, "a task with no status is shown as it is"


def test_untestable_bars_fade_and_their_ticks_say_so():
    fig, ax = plt.subplots()
    ax.bar([0, 1, 2], [0.7, 0.5, 0.9])
    fade_untestable_categories(ax, ["sst2", "mrpc", "reuters"], {"sst2": True, "mrpc": False, "reuters": True})
    assert [p.get_alpha() for p in ax.patches] == [None, 0.3, None]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["sst2", "mrpc\n(untestable)", "reuters"]
    assert ax.get_xticklabels()[1].get_color() == "0.45"
    plt.close(fig)


def test_highest_predictivity_is_the_max_of_the_seed_mean():
    import torch

    from lib.notebook import highest_predictivity

    class Stub:
        def mean_scores(self, task):
            assert task == "sst2"
            return torch.tensor([[0.5, 0.61], [0.75, 0.7]])

    assert highest_predictivity(Stub(), "sst2") == pytest.approx(0.75)


def test_every_expected_answer_a_solution_cites_is_computed_in_its_chapter():
    """A solution that states its expected result cites a glue key (`{glue:md}`) that a code cell of the same
    template computes with lib.notebook.expected_answer: the number comes from the run, never typed."""
    import re

    import nbformat

    from lib.paths import REPO

    cited_anywhere = 0
    for path in sorted((REPO / "notebooks").glob("*.ipynb")):
        cells = nbformat.read(path, as_version=4).cells
        code = "\n".join(c.source for c in cells if c.cell_type == "code")
        for cell in cells:
            if cell.cell_type != "markdown":
                continue
            for key in re.findall(r"\{glue:md\}`([\w]+)`", cell.source):
                cited_anywhere += 1
                assert re.search(rf'expected_answer\(\s*"{key}"', code), (path.name, key)
    assert cited_anywhere >= 2
