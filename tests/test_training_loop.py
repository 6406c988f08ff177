"""The shared training loop (lib.training_loop) on a toy trainee: a linear classifier, no backbone.

Prompt and weight tuning are tested through the loop in test_tuning.py and test_weight_tuning.py; these
tests pin the loop's own contract in a second: what a caller supplies, and that a killed and resumed
run reaches bitwise what an uninterrupted one reaches, with or without a schedule.
"""
import json

import numpy as np
import pytest
import torch

from lib.errors import CheckpointError, DivergenceError
from lib.evaluation import EvalResult
from lib.training_loop import LoopConfig, RunFolder, Trainee, run_training

N, D, K = 60, 5, 3


class Kill(Exception):
    pass


def toy(scale: float = 1.0, schedule=None) -> tuple[Trainee, torch.nn.Parameter]:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(N, D, generator=gen)
    y = (x @ torch.randn(D, K, generator=gen)).argmax(-1)
    w = torch.nn.Parameter(torch.zeros(D, K))

    def evaluate() -> EvalResult:
        pred = (x @ w.detach()).argmax(-1).numpy()
        return EvalResult(float((pred == y.numpy()).mean()), 0.0, N, pred, y.numpy())

    def restore(values, where):
        with torch.no_grad():
            w.copy_(values)

    trainee = Trainee(params=(w,), n_train=N, loss=lambda idx: scale * torch.nn.functional.cross_entropy(x[idx] @ w, y[idx]),
                      evaluate=evaluate, snapshot=lambda: w.detach().clone(), restore=restore, label="toy",
                      run="toy run", kind="matrix", keys=("best_w", "w"), schedule=schedule)
    return trainee, w


def cfg(**kw) -> LoopConfig:
    base = dict(lr=0.05, weight_decay=0.0, batch_size=8, max_steps=30, eval_every=5, seed=0, grad_clip=1.0,
                patience=None)
    return LoopConfig(**{**base, **kw})


def folder(path, **kw) -> RunFolder:
    return RunFolder(path, {"config": {"toy": 1, **kw}}, ("metrics.json", "state.pt", "config.json"))


@pytest.mark.parametrize("schedule", [None, lambda step: 1.0 / (1 + step)])
def test_a_killed_and_resumed_run_equals_an_uninterrupted_one(tmp_path, schedule):
    full = run_training(toy(schedule=schedule)[0], cfg(), folder(tmp_path / "full"), progress=False)

    def kill(step, loss):
        if step == 17:
            raise Kill
    with pytest.raises(Kill):
        run_training(toy(schedule=schedule)[0], cfg(), folder(tmp_path / "cut"), progress=False, on_step=kill)
    seen = []
    resumed = run_training(toy(schedule=schedule)[0], cfg(), folder(tmp_path / "cut"), progress=False,
                           on_step=lambda s, loss: seen.append(s))
    assert seen[0] == 16, "resumed from the checkpoint of step 15"
    assert torch.equal(resumed.best, full.best) and resumed.history == full.history
    assert (resumed.best_step, resumed.steps, resumed.stopped_early) == (full.best_step, full.steps, False)
    assert ("lr" in full.history[0]) == (schedule is not None), "a schedule's lr is recorded, a constant one not"
    assert json.loads((tmp_path / "cut/config.json").read_text()) == {"config": {"toy": 1}}
    state = torch.load(tmp_path / "cut/state.pt", weights_only=True)
    assert {"best_w", "w", "optimizer"} <= set(state) and ("scheduler" in state) == (schedule is not None)


def test_early_stopping_and_a_resume_after_it_decided_to_stop(tmp_path):
    stopping = cfg(max_steps=500, eval_every=2, patience=2, lr=0.5)
    full = run_training(toy()[0], stopping, folder(tmp_path), progress=False)
    assert full.stopped_early and full.steps < 500
    steps = []
    again = run_training(toy()[0], stopping, folder(tmp_path), progress=False, on_step=lambda s, loss: steps.append(s))
    assert steps == [] and again.stopped_early and again.steps == full.steps and torch.equal(again.best, full.best)


def test_divergence_stops_before_anything_is_saved(tmp_path):
    with pytest.raises(DivergenceError, match=r"toy run diverged at step 1: the training loss is (nan|inf).*no "
                                              r"checkpoint of this run was written"):
        run_training(toy(scale=float("nan"))[0], cfg(), folder(tmp_path / "run"), progress=False)
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())


def test_another_configuration_in_the_folder_is_refused(tmp_path):
    def kill(step, loss):
        if step == 7:
            raise Kill
    with pytest.raises(Kill):
        run_training(toy()[0], cfg(), folder(tmp_path), progress=False, on_step=kill)
    with pytest.raises(CheckpointError, match=r"another configuration \(config\.toy: 1 here, 2 asked\)"):
        run_training(toy()[0], cfg(), folder(tmp_path, toy=2), progress=False)
    assert folder(tmp_path).finished_metrics() is None, "an unfinished run is not served"
    fresh = RunFolder(tmp_path, {"config": {"toy": 2}}, ("metrics.json", "state.pt", "config.json"), resume=False)
    out = run_training(toy()[0], cfg(max_steps=5), fresh, progress=False)
    assert out.steps == 5 and np.isfinite(out.best_accuracy)
