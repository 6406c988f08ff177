"""A sweep on a real distributed engine (lib.sweep): the smoke profile's units on a local Ray cluster of
2 workers equal a sequential run bit for bit; Slurm job arrays through submitit (its local executor)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from helpers import SHORT_STUDY, SMOKE_UNITS
from lib.io import read_json
from lib.prompt import load_prompt
from lib.sweep import plan, run_ray, run_sequential, run_slurm
from lib.units import Spec, list_units

pytestmark = pytest.mark.slow  # a Ray cluster and submitit jobs: make test-fast leaves them out


def _runs(root: Path) -> dict[str, Path]:
    """Every finished run folder (prompt and metrics) under a results folder, by relative path."""
    return {str(p.parent.relative_to(root)): p.parent for p in sorted(root.rglob("prompt.safetensors"))}


def _same_results(a: Path, b: Path) -> int:
    runs_a, runs_b = _runs(a), _runs(b)
    assert runs_a.keys() == runs_b.keys(), "the same runs, in folders keyed by the same signatures"
    for rel in runs_a:
        assert torch.equal(load_prompt(runs_a[rel] / "prompt.safetensors"),
                           load_prompt(runs_b[rel] / "prompt.safetensors")), rel
        ma, mb = read_json(runs_a[rel] / "metrics.json"), read_json(runs_b[rel] / "metrics.json")
        assert [h["dev_accuracy"] for h in ma["history"]] == [h["dev_accuracy"] for h in mb["history"]], rel
        assert [h["train_loss"] for h in ma["history"]] == [h["train_loss"] for h in mb["history"]], rel
    return len(runs_a)


def test_ray_sweep_on_a_local_cluster_equals_a_sequential_run(tmp_path):
    pytest.importorskip("ray")
    seq, par = Spec("smoke", results=str(tmp_path / "seq"), reuse=()), Spec("smoke", results=str(tmp_path / "ray"),
                                                                              reuse=())
    units = list_units(seq)
    assert [u.id for u in units] == SMOKE_UNITS
    first, second = plan(seq)
    assert len(first) == 9 and {u.kind for u in second} == {"transfer", "panda"}
    reference = run_sequential(seq, units, threads=1)
    assert [r["status"] for r in reference] == ["ran"] * len(units)
    records = run_ray(par, units, num_cpus=2, threads=1)  # a real local cluster: 2 workers, 1 CPU per unit
    assert [r["unit"] for r in records] == SMOKE_UNITS and {r["status"] for r in records} == {"ran"}
    assert len({r["pid"] for r in records}) >= 2, "the units ran in more than one worker process"
    assert any(a["started"] < b["ended"] and b["started"] < a["ended"]
               for i, a in enumerate(records) for b in records[i + 1:] if a["pid"] != b["pid"]), "in parallel"
    assert _same_results(tmp_path / "seq", tmp_path / "ray") == len(units)
    again = run_sequential(par, units, threads=1)  # a sweep started again finds every unit finished
    assert {r["status"] for r in again} == {"cached"}


def test_slurm_job_arrays_through_submitit(tmp_path):
    pytest.importorskip("submitit")
    spec = Spec("smoke", {"seeds": [0]}, SHORT_STUDY, results=str(tmp_path / "results"), reuse=())
    first, second = plan(spec, kinds=("tune", "transfer"))
    assert [u.id for u in first] == ["tune/synthetic/seed0", "tune/synthetic_pair/seed0"]
    assert [u.id for u in second] == ["transfer/synthetic_to_synthetic_pair/seed0",
                                      "transfer/synthetic_pair_to_synthetic/seed0"]
    # submitit's local executor runs the same job arrays as processes on this machine (no dependency
    # flag there: the second array is submitted when the first has finished); one unit per array here
    first, second = first[:1], second[:1]
    records = run_slurm(spec, first, second, log_dir=tmp_path / "logs", cluster="local", gpus_per_unit=0,
                        cpus_per_unit=1, threads=1, timeout_min=20)
    assert [r["unit"] for r in records] == [u.id for u in first + second]
    assert {r["status"] for r in records} == {"ran"}
    assert len({r["pid"] for r in records}) == 2, "one process per job"
    reference = tmp_path / "reference"
    run_sequential(Spec("smoke", {"seeds": [0]}, SHORT_STUDY, results=str(reference), reuse=()), first + second,
                   threads=1)
    assert _same_results(tmp_path / "results", reference) == 2
