"""One tuning unit per command (lib.units): the list of a profile's units, idempotence, resume, locks."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from helpers import SHORT_STUDY, SMOKE_UNITS
from lib.errors import ConfigError
from lib.paths import REPO
from lib.prompt import load_prompt
from lib.tuning import tune_prompt
from lib.units import (Spec, Unit, dependencies, experiment_for, list_units, lock_path, main, pending_units,
                       run_unit, unit_lock)



def _cli(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lib.units", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


def _files(root: Path) -> dict[str, tuple[int, bytes]]:
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns, p.read_bytes())
            for p in sorted(root.rglob("*")) if p.is_file() and not p.name.endswith(".lock")}


@pytest.mark.slow  # runs the units command line; make test-fast leaves it out
def test_list_prints_every_unit_of_a_profile():
    proc = _cli("--profile", "smoke", "--list")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == SMOKE_UNITS
    assert "17 units of profile smoke (4 tune, 1 control, 4 baseline, 4 transfer, 4 panda)" in proc.stderr
    # with overrides of the profile and of its transfer study
    proc = _cli("--profile", "smoke", "--overrides", '{"seeds": [0]}', "--study", json.dumps(SHORT_STUDY), "--list")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [u for u in SMOKE_UNITS if u.endswith("seed0")]
    # a profile override the study does not fit: its prompts only, and the reason
    spec = Spec("mini", {"tasks": ["sst2", "imdb"], "seeds": [0]})
    assert [u.id for u in list_units(spec)] == ["tune/sst2/seed0", "tune/imdb/seed0", "control/sst2/seed0"]
    proc = _cli("--profile", "mini", "--overrides", '{"tasks": ["sst2", "imdb"]}', "--list")
    assert proc.returncode == 0 and "does not fit" in proc.stderr
    paper = list_units(Spec("paper"))
    assert len(paper) == 79 and sum(u.kind == "tune" for u in paper) == 30


def test_unit_ids_round_trip_and_bad_units_are_refused(capsys):
    for text in SMOKE_UNITS + ["transfer/mnli_3way_to_qnli/seed4"]:
        assert Unit.parse(text).id == text
    for bad in ("tune/sst2", "tune/sst2/zero", "transfer/sst2/seed0", "nope/sst2/seed0"):
        with pytest.raises(ConfigError):
            Unit.parse(bad)
    spec = Spec("smoke", results="/nonexistent/never-written")
    assert [u.id for u in dependencies(spec, Unit.parse("panda/synthetic_to_synthetic_pair/seed0"))] == \
        ["tune/synthetic/seed0", "tune/synthetic_pair/seed0"]  # beta_mode 'on' reads the target's prompt too
    assert main(["--profile", "smoke", "--results", "/nonexistent/never-written", "--task", "synthetic",
                 "--seed", "7"]) == 1
    assert "not one of profile 'smoke'" in capsys.readouterr().err
    assert main(["--profile", "smoke", "--task", "synthetic"]) == 1
    assert main(["--profile", "smoke", "--unit", "tune/synthetic/seed0", "--seed", "0"]) == 1


@pytest.mark.slow  # runs the units CLI twice; make test-fast leaves it out
def test_running_a_unit_twice_is_a_no_op_the_second_time(tmp_path):
    first = _cli("--profile", "smoke", "--results", str(tmp_path), "--task", "synthetic", "--seed", "0",
                 "--threads", "1")
    assert first.returncode == 0, first.stderr
    record = json.loads(first.stdout)
    assert record["status"] == "ran" and record["steps"] == 150 and Path(record["folder"]).is_dir()
    prompts = tmp_path / "smoke" / "main" / "prompts"
    before = _files(prompts)
    second = _cli("--profile", "smoke", "--results", str(tmp_path), "--unit", "tune/synthetic/seed0",
                  "--threads", "1")
    assert second.returncode == 0, second.stderr
    again = json.loads(second.stdout)
    assert again["status"] == "cached" and again["folder"] == record["folder"]
    assert again["best_dev_accuracy"] == record["best_dev_accuracy"]
    assert _files(prompts) == before, "a finished unit is loaded: no file written, none touched"


def test_a_transfer_arm_runs_the_prompts_it_starts_from(tmp_path):
    spec = Spec("smoke", {"seeds": [0]}, SHORT_STUDY, results=str(tmp_path), reuse=())
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rec = run_unit(spec, "panda/synthetic_to_synthetic_pair/seed0")
        assert rec["status"] == "ran" and rec["steps"] == 10
        assert rec["dependencies"] == {"tune/synthetic/seed0": "ran", "tune/synthetic_pair/seed0": "ran"}
        rec = run_unit(spec, "panda/synthetic_to_synthetic_pair/seed0")
        assert rec["status"] == "cached" and set(rec["dependencies"].values()) == {"cached"}
        assert Path(rec["folder"]).parent == tmp_path / "smoke/main/transfer_methods/panda/synthetic_to_synthetic_pair/seed0"
        assert [u.id for u in pending_units(spec)] == ["control/synthetic/seed0"], "both prompts ran as dependencies"
    finally:
        torch.set_num_threads(before)


def test_an_interrupted_unit_resumes_to_the_prompt_of_an_uninterrupted_run(tmp_path):
    unit = Unit("tune", "synthetic_pair", 1)
    cut, whole = (Spec("smoke", results=str(tmp_path / name), reuse=()) for name in ("cut", "whole"))
    exp = experiment_for(cut, unit)
    sp = exp.splits(unit.task)

    def stop(step: int, loss: float) -> None:
        if step == 70:
            raise KeyboardInterrupt

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with pytest.raises(KeyboardInterrupt):  # killed after the checkpoint of step 50
            tune_prompt(exp.backbone, exp.task(unit.task), sp["train"], sp["dev"], exp.tune_config(unit.seed, unit.task),
                        exp.prompt_dir(unit.task, unit.seed), progress=False, on_step=stop)
        resumed = run_unit(cut, unit)
        reference = run_unit(whole, unit)
    finally:
        torch.set_num_threads(before)
    assert resumed["status"] == "resumed" and reference["status"] == "ran"
    assert torch.equal(load_prompt(Path(resumed["folder"]) / "prompt.safetensors"),
                       load_prompt(Path(reference["folder"]) / "prompt.safetensors"))


def _opened(pid: int, path: Path) -> bool:
    try:
        return any(os.readlink(f"/proc/{pid}/fd/{fd}") == os.path.realpath(path) for fd in os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return False


@pytest.mark.slow  # two processes race for a lock; make test-fast leaves it out
@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to see who waits on the lock")
def test_two_processes_asked_for_one_unit_run_it_once(tmp_path):
    spec = Spec("smoke", results=str(tmp_path), reuse=())
    unit = Unit("tune", "synthetic", 1)
    lock = lock_path(tmp_path / "smoke" / "main", unit)
    args = ["--profile", "smoke", "--results", str(tmp_path), "--unit", unit.id, "--threads", "1"]
    with unit_lock(lock):  # both workers start while the unit is held, so both must wait for it
        procs = [subprocess.Popen([sys.executable, "-m", "lib.units", *args], cwd=REPO, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(2)]
        deadline = time.monotonic() + 300
        while not all(_opened(p.pid, lock) for p in procs):
            assert time.monotonic() < deadline and all(p.poll() is None for p in procs), "workers never reached the lock"
            time.sleep(0.2)
    outs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outs]
    records = [json.loads(out) for out, _ in outs]
    assert sorted(r["status"] for r in records) == ["cached", "ran"], records
    assert records[0]["folder"] == records[1]["folder"]
    assert all(r["waited_s"] > 0 for r in records)
    assert not list(tmp_path.rglob(".*.tmp")), "no torn or left-over temporary"
    assert spec.resolved().results == str(tmp_path)
