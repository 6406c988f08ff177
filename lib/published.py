"""Published numbers the book compares against (Su et al. 2022, Table: zero-shot transfer, %).

Rows are source prompts, columns target tasks; MNLI is 3-class there. Source: ../shared/docs/reference.md.
"""
from __future__ import annotations

import pandas as pd

_TARGETS = ("imdb", "sst2", "mnli", "qnli", "qqp", "mrpc")
_ROBERTA = {
    "imdb": (89.7, 86.1, 36.6, 55.5, 39.7, 68.0), "sst2": (73.6, 93.3, 35.8, 52.1, 56.8, 52.6),
    "mnli": (57.1, 58.5, 79.9, 75.5, 49.9, 65.9), "qnli": (50.3, 51.2, 47.5, 90.5, 36.9, 68.0),
    "qqp": (58.4, 51.2, 34.3, 43.5, 86.9, 70.0), "mrpc": (50.3, 50.4, 32.7, 50.5, 66.9, 84.4),
    "random prompt": (50.6, 50.8, 32.8, 50.5, 36.8, 68.0),
}
_T5 = {
    "imdb": (88.2, 88.6, 45.1, 72.8, 62.2, 51.3), "sst2": (85.0, 94.3, 80.0, 79.7, 62.9, 63.3),
    "mnli": (70.3, 75.4, 85.5, 78.3, 63.1, 31.5), "qnli": (50.0, 48.9, 61.1, 92.1, 62.9, 33.9),
    "qqp": (50.1, 50.7, 65.3, 59.9, 86.7, 63.5), "mrpc": (58.9, 53.2, 35.5, 49.5, 48.6, 73.2),
}


def published_transfer(model: str) -> pd.DataFrame:
    """Su et al.'s zero-shot transfer matrix (accuracy %) for 'roberta-base' or 't5-base'."""
    table = {"roberta-base": _ROBERTA, "t5-base": _T5}.get(model)
    if table is None:
        raise ValueError(f"no published transfer matrix for {model!r}; valid: roberta-base, t5-base")
    return pd.DataFrame.from_dict(table, orient="index", columns=list(_TARGETS)).rename_axis("source")
