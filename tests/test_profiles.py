import pytest

from lib.errors import ConfigError
from lib.profiles import PROFILES, get_profile


def test_profiles_exist_and_validate():
    assert {"smoke", "mini", "paper", "paper_t5"} <= set(PROFILES)
    assert get_profile("paper").tune.prompt_length == 100 and get_profile("paper").tune.lr == 1e-3
    assert get_profile("paper_t5").tune.lr == 5e-3 and len(get_profile("paper").seeds) == 5
    assert len(get_profile("mini").seeds) >= 3
    with pytest.raises(ConfigError, match="unknown profile 'big'; valid: mini, paper, paper_t5, smoke"):
        get_profile("big")


def test_overrides():
    p = get_profile("mini").replace(tasks=["sst2", "imdb"], seeds=[0], tune={"max_steps": 10})
    assert p.tasks == ("sst2", "imdb") and p.seeds == (0,) and p.tune.max_steps == 10
    assert dict(p.adversarial) == {"sst2": "adv_sst2"}, "adversarial sets follow the tasks kept"
    assert p.tune.lr == get_profile("mini").tune.lr
    with pytest.raises(ConfigError, match=r"unknown tune field\(s\) \['steps'\]"):
        get_profile("mini").replace(tune={"steps": 3})
    with pytest.raises(ConfigError, match=r"unknown profile field\(s\) \['taks'\]"):
        get_profile("mini").replace(taks=["sst2"])
    with pytest.raises(ConfigError, match="adversarial sets for tasks it does not tune"):
        get_profile("mini").replace(tasks=["sst2"], adversarial={"rte": "adv_rte"})
