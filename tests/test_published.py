"""The published figures (lib.published): every claim has one, and our transfer cells meet Su et al.'s."""
from __future__ import annotations

import pandas as pd
import pytest

from lib.claims import CLAIM_IDS
from lib.published import SKELETON_SPEEDUP, claim_published, transfer_comparison_sentence, transfer_vs_published


def test_every_claim_has_a_published_figure_with_its_source():
    for cid in CLAIM_IDS:
        p = claim_published(cid)
        assert p.text and p.source
    assert claim_published("RN1").value == pytest.approx(0.19675)
    assert SKELETON_SPEEDUP.value == 1.73
    with pytest.raises(KeyError, match="RN9"):
        claim_published("RN9")


def test_transfer_cells_beside_su_et_al():
    """SST-2 -> IMDB: RoBERTa 73.6, T5 85.0 in Su et al.'s table; a topic task has no published cell."""
    ours = pd.DataFrame([[0.9, 0.633, 0.5], [0.7, 0.8, 0.5], [0.4, 0.4, 0.9]],
                        index=["sst2", "imdb", "newsgroups"], columns=["sst2", "imdb", "newsgroups"])
    t = transfer_vs_published(ours)
    assert list(zip(t.source, t.target)) == [("sst2", "imdb"), ("imdb", "sst2")]
    row = t.iloc[0]
    assert (row.ours, row["roberta-base"], row["t5-base"]) == pytest.approx((63.3, 73.6, 85.0))
    s = transfer_comparison_sentence(t, "all-MiniLM-L6-v2")
    assert "sst2→imdb: 63.3 % on all-MiniLM-L6-v2 vs 73.6 % (RoBERTa-base) and 85.0 % (T5-base), -10.3 and -21.7" in s
    assert "no cell can be compared" in transfer_comparison_sentence(t.iloc[:0], "m")
