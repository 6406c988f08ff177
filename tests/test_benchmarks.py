"""Tiny runs of every benchmark script and of the Performance page, so that they keep working.

Their numbers are not checked here: speed goals are judged from the full runs' side-by-side ratios
(`make bench`), never by timed tests.
"""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks"
HAVE_PEFT = importlib.util.find_spec("peft") is not None


def _run(script, *args, out):
    proc = subprocess.run([sys.executable, str(BENCH / script), *args, "--out", str(out)], cwd=BENCH,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.fixture(scope="module")
def tiny_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    stdout = {}
    if HAVE_PEFT:
        stdout["peft"] = _run("tuning_vs_peft.py", "--model", "tiny-bert", "--steps", "2", "--rounds", "1",
                              "--batch", "8", out=out)
    stdout["pred"] = _run("predictivity_memory.py", "--model", "tiny-bert", "--sizes", "40", "80", out=out)
    stdout["roof"] = _run("roofline.py", "--model", "tiny-bert", "--batch", "4", "--reps", "2", "--mm-sizes", "128",
                          out=out)
    return out, stdout


def _load(out, name):
    data = json.loads((out / name).read_text())
    assert data["machine"]["cores"] >= 1 and data["benchmark"] == name.removesuffix(".json")
    return data


def test_tuning_vs_peft_tiny(tiny_results):
    if not HAVE_PEFT:
        pytest.skip("peft not installed (pip install -e '.[bench]')")
    out, stdout = tiny_results
    data = _load(out, "tuning_vs_peft_tiny-bert.json")
    eps = data["examples_per_s"]
    assert set(eps) == {"lib", "peft", "peft+verbalizer"} and all(v > 0 for v in eps.values())
    assert data["ratio_lib_over_peft"] == pytest.approx(eps["lib"] / eps["peft"])
    assert "lib/peft" in stdout["peft"]


def test_predictivity_memory_tiny(tiny_results):
    out, _ = tiny_results
    data = _load(out, "predictivity_tiny-bert.json")
    assert [r["n"] for r in data["ratios"]] == [40, 80]
    rows = data["rows"]
    assert {r["method"] for r in rows} == {"forward_only", "streamed", "store_all"}
    for n in (40, 80):  # both methods computed the same accuracies
        s, a = (next(r for r in rows if r["n"] == n and r["method"] == m) for m in ("streamed", "store_all"))
        assert s["checksum"] == pytest.approx(a["checksum"])


def test_roofline_tiny(tiny_results):
    out, _ = tiny_results
    data = _load(out, "roofline_tiny-bert_cpu.json")
    assert data["peak_gflops"] > 0 and data["forward_gflop"] > 0
    # frozen weights: the backward pass computes input gradients only (about one more forward's FLOPs)
    assert 1.5 * data["forward_gflop"] < data["step_gflop"] < 3.5 * data["forward_gflop"]


def test_performance_page_executes(tiny_results, tmp_path):
    import papermill as pm

    out, _ = tiny_results
    target = tmp_path / "performance.ipynb"
    pm.execute_notebook(str(REPO / "notebooks" / "performance.ipynb"), str(target), parameters={"results_dir": str(out)},
                        cwd=str(REPO), kernel_name="python3", progress_bar=False)
    nb = nbformat.read(target, as_version=4)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error" or o.get("name") == "stderr"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 3
    text = "".join(o.get("data", {}).get("text/markdown", "") for o in outputs)
    assert "roofline, tiny-bert on cpu" in text and "predictivity, tiny-bert, 80 examples" in text
