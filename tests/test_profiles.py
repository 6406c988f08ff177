import pytest

from lib.errors import ConfigError
from lib.profiles import PROFILES, get_profile


def test_profiles_exist_and_validate():
    assert {"smoke", "mini", "paper", "paper_t5"} <= set(PROFILES)
    assert get_profile("paper").tune.prompt_length == 100 and get_profile("paper").tune.lr == 1e-3
    assert get_profile("paper_t5").tune.lr == 5e-3 and len(get_profile("paper").seeds) == 5
    assert len(get_profile("mini").seeds) >= 3
    with pytest.raises(ConfigError, match="unknown profile 'big'; valid: class, mini, paper, paper_t5, smoke"):
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


def test_task_tune_overrides_one_task_and_is_validated():
    mini = get_profile("mini")
    assert mini.tune_for("imdb").max_length == 128, "IMDB reviews get 128 tokens on mini"
    assert mini.tune_for("sst2") == mini.tune, "other tasks keep the shared recipe"
    p = mini.replace(task_tune={"sst2": {"lr": 0.1}})
    assert p.tune_for("sst2").lr == 0.1 and p.tune_for("imdb") == p.tune
    assert dict(mini.replace(tasks=["sst2"]).task_tune) == {}, "entries follow the tasks kept"
    with pytest.raises(ConfigError, match=r"task_tune names task\(s\) the profile does not tune: \['cola'\]"):
        mini.replace(task_tune={"cola": {"lr": 0.1}})
    with pytest.raises(ConfigError, match=r"unknown task_tune.sst2 field\(s\) \['steps'\]"):
        mini.replace(task_tune={"sst2": {"steps": 3}})
    with pytest.raises(ConfigError, match=r"task_tune.sst2.lr must be a finite number"):
        mini.replace(task_tune={"sst2": {"lr": "0.1"}})
    with pytest.raises(ConfigError, match=r"task_tune.sst2: lr must be positive"):
        mini.replace(task_tune={"sst2": {"lr": -1.0}})
    with pytest.raises(ConfigError, match="must not set seed"):
        mini.replace(task_tune={"sst2": {"seed": 3}})


def test_class_profile_is_a_small_real_run():
    """The lab profile: real data, two task types, one seed, a budget a 2-core laptop runs in minutes."""
    from lib.experiments import Experiment
    from lib.runner import SCRATCH, destinations
    from lib.transfer_study import get_study

    c = get_profile("class")
    assert c.model == "all-MiniLM-L6-v2" and not c.synthetic and c.seeds == (0,)
    assert c.tune.max_steps <= 60 and c.data.max_train <= 1000 and c.data.max_test <= 200
    assert len({Experiment(c).task(t).task_type for t in c.tasks}) == 2
    get_study("class").check_against(Experiment(c))
    assert destinations("class")[0] == SCRATCH / "class" / "experiments", "never into the book"
