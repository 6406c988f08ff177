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

pytestmark = pytest.mark.slow  # every benchmark script, tiny: make test-fast leaves them out

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
    stdout["cost"] = _run("paper_cost.py", "--models", "tiny-bert", "tiny-t5", "--steps", "1", "--profile-ops",
                          "--mm-sizes", "128", out=out)
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
    assert "**paper** (tiny-bert, measured on" in text and "**paper_t5** (tiny-t5" in text
    assert "These are CPU hours, not GPU hours" in text and "not measured" in text
    html = "".join("".join(o.get("data", {}).get("text/html", "")) for o in outputs)
    assert "memory, store-all / streamed" in html and "memory_ratio" not in html, "tables show readable headings"


def test_performance_page_reexecuted_unchanged_writes_the_same_bytes(tiny_results, tmp_path):
    """`make bench` re-executes the page and finishes it as the runner does its chapters: no timestamps,
    no random table ids or object addresses, so unchanged benchmark results leave git clean."""
    import papermill as pm

    from lib.runner import finish_notebook

    out, _ = tiny_results
    copies = []
    for i in range(2):
        target = tmp_path / str(i) / "performance.ipynb"
        target.parent.mkdir()
        pm.execute_notebook(str(REPO / "notebooks" / "performance.ipynb"), str(target),
                            parameters={"results_dir": str(out)}, cwd=str(REPO), kernel_name="python3",
                            progress_bar=False)
        finish_notebook(target)
        copies.append(target.read_bytes())
    assert copies[0] == copies[1]


def test_paper_cost_tiny(tiny_results):
    out, stdout = tiny_results
    data = _load(out, "paper_cost.json")
    assert data["device"] == "cpu" and data["peak_gflops"] > 0
    by_model = {r["model"]: r for r in data["results"]}
    assert set(by_model) == {"tiny-bert", "tiny-t5"}
    for model, profile in (("tiny-bert", "paper"), ("tiny-t5", "paper_t5")):
        r = by_model[model]
        assert r["profile"] == profile and r["steps_per_s"] > 0 and r["forward_examples_per_s"] > 0
        # the units python -m lib.units --profile paper --list prints: 30 prompts, 1 control, 48 transfer-study runs
        assert r["n_units"] == 79 and r["n_units_by_kind"] == {"tune": 30, "control": 1, "baseline": 12,
                                                               "transfer": 18, "panda": 18}
        assert r["steps_total"] == 31 * 30_000 + 48 * 5_000
        unit = r["units"][0]
        assert unit["unit"] == "tune/sst2/seed0" and unit["evaluations"] == 30 and unit["dev_examples"] == 13_470
        assert unit["train_hours"] == pytest.approx(30_000 / r["steps_per_s"] / 3600)
        # evaluation is priced at lib's evaluation batch; the training-batch price is kept for the before/after share
        assert unit["eval_hours"] == pytest.approx(30 * 13_470 / r["eval_examples_per_s"] / 3600)
        assert unit["eval_hours_at_train_batch"] == pytest.approx(30 * 13_470 / r["forward_examples_per_s"] / 3600)
        assert r["profile_hours"]["hours"] == pytest.approx(sum(u["hours"] for u in r["units"]))
        assert r["eval_share"] == pytest.approx(r["profile_hours"]["eval_hours"] / r["profile_hours"]["hours"])
        assert r["eval_batch"] == 64 and 0 < r["eval_share"] < 1 and 0 < r["eval_share_at_train_batch"] < 1
        # frozen weights: the step computes input gradients only (about one more forward's FLOPs)
        assert 1.5 * r["forward_tflop"] < r["step_tflop"] < 3.5 * r["forward_tflop"]
        assert r["mfu"] == pytest.approx(r["step_tflop"] * r["steps_per_s"] / (data["peak_gflops"] / 1e3))
        assert r["gpu_projection"]["assumed_mfu"] == 0.4 and r["gpu_projection"]["profile_hours"] > 0
        assert r["top_ops"]["ops"] and r["top_ops"]["wall_seconds"] > 0
    assert "one prompt unit" in stdout["cost"]


def test_pruning_tiny(tmp_path):
    stdout = _run("pruning.py", "--model", "tiny", "--quick", "--fractions", "1.0", "0.25", out=tmp_path)
    data = _load(tmp_path, "pruning_tiny-bert.json")
    assert data["selection_split"] == "dev" and data["n_examples"] == 200 and data["width"] == 64
    full, quarter = data["fractions"]
    assert [full["kept_per_layer"], quarter["kept_per_layer"]] == [64, 16]
    assert full["parameters"] == data["parameters_full"] > quarter["parameters"]
    assert full["accuracy_top"] == full["accuracy_random"] == data["accuracy_full"]  # nothing removed
    for r in (full, quarter):
        assert r["speedup"] == pytest.approx(r["seconds_full"] / r["seconds_pruned"])
        assert len(r["seconds_rounds"]["full"]) == len(r["seconds_rounds"]["pruned"]) == 2
        assert 0 <= r["accuracy_top"] <= 1 and len(r["accuracy_random_draws"]) == 1
    assert full["accuracy_retuned"] is None and 0 <= quarter["accuracy_retuned"] <= 1 and data["retune_steps"] == 5
    assert quarter["kept_accuracy"] == pytest.approx(max(quarter["accuracy_top"], quarter["accuracy_retuned"])
                                                     / data["accuracy_full"])
    line = next(x for x in stdout.splitlines() if x.startswith("keep 25% (16/layer): speed-up"))
    assert "accuracy unpruned" in line and "top re-tuned" in line and "of unpruned accuracy" in line, line


def test_tuning_methods_tiny(tmp_path):
    """Every method timed in the same run; per-run seconds follow from per-step seconds and the budget."""
    stdout = _run("tuning_methods.py", "--model", "tiny-bert", "--steps", "3", "--rounds", "2", out=tmp_path)
    data = _load(tmp_path, "tuning_methods_tiny-bert.json")
    rows = {r["method"]: r for r in data["methods"]}
    assert list(rows) == ["prompt", "bitfit", "adapter", "lora", "full"] and data["threads"] == 1
    assert rows["prompt"]["ratio_to_first"] == 1.0
    for r in rows.values():
        assert r["timed_steps"] == 2 * 2, "the first step of each of the 2 runs is a warm-up"
        assert r["seconds_per_run"] == pytest.approx(r["seconds_per_step"] * data["run_steps"])
    assert rows["full"]["trainable_parameters"] > max(rows[m]["trainable_parameters"] for m in ("bitfit", "adapter"))
    assert "s/step" in stdout


def test_mini_speed_tiny(tmp_path):
    """The before/after benchmark on the smoke profile: both recipes run, ratios and padding are written."""
    stdout = _run("mini_speed.py", "--profile", "smoke", "--tasks", "synthetic", "--seeds", "0", "1", "--steps", "10",
                  out=tmp_path)
    data = _load(tmp_path, "mini_speed_smoke.json")
    assert {b["recipe"] for b in data["blocks"]} == {"before", "after"}
    assert data["wall_ratio"] == pytest.approx(data["total"]["before"]["wall_s"] / data["total"]["after"]["wall_s"])
    row = data["tasks"]["synthetic"]
    assert 0 <= row["padding_share_after"] <= row["padding_share_before"] < 1
    assert len(data["units"]) == 4 and all(0 <= u["test_accuracy"] <= 1 for u in data["units"])
    assert "wall time before/after" in stdout
