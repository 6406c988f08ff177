"""The book's executed chapters, in one table: the part of the book each belongs to, which ones print and
record verdicts, which settings they take, and which other chapters' results they read.

The runner (`lib.runner`), the verdict ledger (`lib.ledger`) and the tests read their lists from here, and a
test keeps `_toc.yml` in step (same chapters, same parts, same order). The table is in *reading* order;
`run_order()` derives the order the runner executes them in: a chapter runs after every chapter whose
results it reads.
"""
from __future__ import annotations

from dataclasses import dataclass

CACHE_NEUTRAL = True  # lib.code_identity: nothing here changes what a cached result contains

PARTS = ("Experiments", "Transfer methods", "Applications")


@dataclass(frozen=True)
class Chapter:
    """One executed chapter (`notebooks/<name>.ipynb` -> `book/experiments/<name>.ipynb`)."""

    name: str
    part: str  # its part of the book (`PARTS`), as _toc.yml captions it
    records_verdicts: bool = False  # prints verdicts and records them for the claims chapter (lib.ledger)
    takes_study: bool = False  # takes `study_overrides` (fields of lib.transfer_study.TransferStudy)
    takes_apps: bool = False  # takes `app_overrides` (fields of lib.applications.ApplicationsConfig)
    shows_results_of: tuple[str, ...] = ()  # other chapters' tables it shows, read from the store only
    reads_every_verdict: bool = False  # the claims chapter: the family of every recorded verdict

    def __post_init__(self) -> None:
        if self.part not in PARTS:
            raise ValueError(f"chapter {self.name!r}: part {self.part!r} is not one of {', '.join(PARTS)}")


# Reading order (as _toc.yml).
CHAPTERS: tuple[Chapter, ...] = (
    Chapter("claims", "Experiments", reads_every_verdict=True),
    Chapter("prompt_tuning", "Experiments", shows_results_of=("model_tuning",)),
    Chapter("transfer", "Experiments"),
    Chapter("adversarial", "Experiments"),
    Chapter("skill_neurons", "Experiments"),
    Chapter("suppression", "Experiments"),
    Chapter("adversarial_neurons", "Experiments", records_verdicts=True),
    Chapter("task_specificity", "Experiments", records_verdicts=True),
    Chapter("random_init_control", "Experiments", records_verdicts=True),
    Chapter("explorer", "Experiments"),
    Chapter("indicators", "Transfer methods", records_verdicts=True, takes_study=True),
    Chapter("init_transfer", "Transfer methods", records_verdicts=True, takes_study=True),
    Chapter("panda", "Transfer methods", records_verdicts=True, takes_study=True, shows_results_of=("model_tuning",)),
    Chapter("projector", "Transfer methods", records_verdicts=True, takes_study=True),
    Chapter("pruning", "Applications", records_verdicts=True, takes_apps=True),
    Chapter("other_tuning", "Applications", records_verdicts=True, takes_apps=True),
    Chapter("model_tuning", "Applications", records_verdicts=True, takes_apps=True),
)


def run_order() -> tuple[str, ...]:
    """The order the runner executes the chapters in, so that one pass fills every page: reading order,
    except that a chapter waits for the chapters whose results it shows, and the claims chapter (Holm's
    correction over every recorded verdict) waits for all."""
    done: list[str] = []
    waiting = list(CHAPTERS)
    while waiting:
        ready = next(c for c in waiting if set(c.shows_results_of) <= set(done)
                     and (not c.reads_every_verdict or len(waiting) == 1))
        done.append(ready.name)
        waiting.remove(ready)
    return tuple(done)


def names(**where: bool) -> tuple[str, ...]:
    """The chapters' names in reading order, those with every given flag equal to its value
    (`names(takes_apps=True)`)."""
    unknown = set(where) - {"records_verdicts", "takes_study", "takes_apps"}
    if unknown:
        raise TypeError(f"no chapter flag {', '.join(sorted(unknown))}")
    return tuple(c.name for c in CHAPTERS if all(getattr(c, k) == v for k, v in where.items()))
