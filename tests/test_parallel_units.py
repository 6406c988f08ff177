"""Units tuned side by side in one-thread worker processes equal units tuned one after another.

What `make run` relies on when it tunes a profile's prompts first (`lib.parallel_units`): the same
files, bit for bit, as tuning them in order in one process with the same number of torch threads (one).
"""
from pathlib import Path

import pytest
import torch

from lib.parallel_units import run_units, units_for
from lib.units import Spec, Unit

OVERRIDES = {"tasks": ["synthetic", "synthetic_pair"], "seeds": [0, 1], "control_seeds": [0],
             "tune": {"max_steps": 40, "eval_every": 20}}
STUDY = {"pairs": [["synthetic", "synthetic_pair"]], "seeds": [0], "steps": 20, "eval_every": 10}
UNITS = [Unit("tune", "synthetic", 0), Unit("tune", "synthetic", 1), Unit("tune", "synthetic_pair", 0),
         Unit("control", "synthetic", 0), Unit("transfer", "synthetic_pair", 0, "synthetic")]


def _files(root: Path) -> dict[str, bytes]:
    """Every prompt and metrics file under a results folder, by path relative to it (timings removed).

    A prompt is compared by its tensor's bytes and its metadata, not the file's bytes: safetensors writes
    the metadata in hash-map order, which differs between processes."""
    import json

    from safetensors import safe_open

    out = {}
    for path in sorted(root.rglob("*")):
        if path.name == "prompt.safetensors":
            with safe_open(str(path), framework="pt") as fh:
                tensors = b"".join(fh.get_tensor(k).numpy().tobytes() for k in sorted(fh.keys()))
                out[str(path.relative_to(root))] = tensors + json.dumps(fh.metadata(), sort_keys=True).encode()
        elif path.name == "metrics.json":
            metrics = json.loads(path.read_text())
            metrics.pop("seconds", None)
            out[str(path.relative_to(root))] = json.dumps(metrics, sort_keys=True).encode()
    return out


@pytest.mark.slow  # two processes tune side by side; make test-fast leaves it out
def test_units_side_by_side_equal_units_one_after_another(tmp_path):
    side = Spec("smoke", OVERRIDES, STUDY, results=str(tmp_path / "side"), reuse=())
    seq = Spec("smoke", OVERRIDES, STUDY, results=str(tmp_path / "seq"), reuse=())
    lines: list[str] = []
    records = run_units(side, UNITS, jobs=2, say=lines.append)
    assert [r["unit"] for r in records] == [u.id for u in UNITS] and {r["status"] for r in records} == {"ran"}
    assert any("2 worker processes of 1 thread each" in line for line in lines)
    assert sum(line.startswith("units: [") for line in lines) == len(UNITS), "one line per tuned unit"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each worker: torch's GEMMs may round differently with another thread count
    try:
        run_units(seq, UNITS, jobs=1)
    finally:
        torch.set_num_threads(threads)
    a, b = _files(tmp_path / "side"), _files(tmp_path / "seq")
    assert len(a) >= 2 * len(UNITS) and a.keys() == b.keys()
    assert [k for k in a if a[k] != b[k]] == [], "bit for bit the same prompts and metrics"
    again = run_units(side, UNITS, jobs=2, say=lines.append)
    assert {r["status"] for r in again} == {"cached"} and lines[-1].startswith(f"units: {len(UNITS)} done")


def test_the_units_a_chapter_selection_tunes():
    spec = Spec("smoke")
    kw = dict(prompt_chapters=("transfer",), control_chapters=("random_init_control",), arm_chapters=("panda",))
    assert units_for(spec, ["claims"], **kw) == []
    kinds = {u.kind for u in units_for(spec, ["transfer"], **kw)}
    assert kinds == {"tune"}
    kinds = {u.kind for u in units_for(spec, ["transfer", "random_init_control", "panda"], **kw)}
    assert kinds == {"tune", "control", "baseline", "transfer", "panda"}
