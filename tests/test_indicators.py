import pytest
import torch

from lib.errors import ConfigError
from lib.indicators import activated_neurons, overlap_of_neurons, prompt_similarity, rank_correlation
from lib.models import load_backbone
from lib.prompt import init_prompt


def test_prompt_similarity_known_answers():
    p = torch.randn(5, 8, generator=torch.Generator().manual_seed(0))
    assert prompt_similarity(p, p) == pytest.approx(1.0)
    assert prompt_similarity(p, -p) == pytest.approx(-1.0)
    assert prompt_similarity(p, p, "euclidean") == 0.0
    assert prompt_similarity(p, p + 1.0, "euclidean", "mean") == pytest.approx(-(8 ** 0.5))
    q = torch.zeros(3, 8)
    q[:, 0] = 1.0
    r = torch.zeros(2, 8)
    r[:, 1] = 1.0
    assert prompt_similarity(q, r, reduce="mean") == 0.0  # orthogonal means, different lengths
    with pytest.raises(ConfigError, match="flat similarity needs prompts of one shape"):
        prompt_similarity(q, r)
    with pytest.raises(ConfigError, match="prompt widths differ"):
        prompt_similarity(q, torch.zeros(3, 4), reduce="mean")
    with pytest.raises(ConfigError, match="unknown similarity metric 'l1'"):
        prompt_similarity(p, p, "l1")


def test_overlap_of_neurons_known_answers():
    a = torch.zeros(4, 2, 6, dtype=torch.bool)
    a[:, 0, :3] = True
    b = torch.zeros(4, 2, 6, dtype=torch.bool)
    b[:, 1, 3:] = True
    assert overlap_of_neurons(a, a)["on"].tolist() == pytest.approx([1.0, 1.0, 1.0])
    assert overlap_of_neurons(a, b)["on"].tolist() == [0.0, 0.0, 0.0], "disjoint patterns: ON = 0"
    table = overlap_of_neurons(a, b, window=3)
    assert table[["first_layer", "last_layer"]].values.tolist() == [[0, 2], [1, 3], [0, 3]]
    with pytest.raises(ConfigError, match="different models"):
        overlap_of_neurons(a, torch.zeros(3, 2, 6, dtype=torch.bool))


def test_activated_neurons_with_the_prompt_alone(tiny_paths):
    for fam in ("bert", "t5"):
        b = load_backbone(str(tiny_paths[fam]))
        p = init_prompt(b, 5, seed=0)
        pattern = activated_neurons(b, p)
        assert pattern.shape == (2, 5, 64) and pattern.dtype == torch.bool
        assert torch.equal(pattern, activated_neurons(b, p))
        assert overlap_of_neurons(pattern, pattern, window=2)["on"].iloc[-1] == pytest.approx(1.0)
    with pytest.raises(ConfigError, match="prompt width 3 does not fit"):
        activated_neurons(b, torch.zeros(4, 3))


def test_rank_correlation():
    assert rank_correlation([1, 2, 3, 4], [10, 20, 30, 40]) == {"spearman": 1.0, "kendall": 1.0, "n": 4}
    assert rank_correlation([1, 2, 3], [3, 2, 1])["spearman"] == pytest.approx(-1.0)
    with pytest.raises(ConfigError, match="equal 1-d shapes"):
        rank_correlation([1, 2, 3], [1, 2])
