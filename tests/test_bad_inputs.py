"""Bad inputs, tried as a new user would: each gives one clear line of the right kind, and leaves nothing behind.

Every case of the table asserts
- the exact error type (a `lib.errors` class, never a third-party exception),
- that the message is one line and names the field, file, line or record (`fragments`), and does not
  advise what it must not (`absent`: e.g. deleting a valid run),
- that the files under the test's folder are exactly as before the call: nothing written (no
  config.json after a failed validation), nothing changed, nothing removed (a valid run stays).

Set $COMPENDIUM_BAD_INPUTS_LOG to a file to collect each case's message (one JSON object a line).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Callable

import pandas as pd
import pytest
import torch

from lib.data import DataConfig, load_split, load_splits
from lib.errors import CheckpointError, CompendiumError, ConfigError, DataError, DataFileNotFound, DivergenceError
from lib.io import read_torch, write_json, write_torch
from lib.models import ModelLoadError, load_backbone
from lib.notebook import check_parameters
from lib.peft_io import read_peft
from lib.profiles import get_profile
from lib.prompt import save_prompt
from lib.store import ResultsStore
from lib.tiny import build_tiny_backbone, synthetic_task
from lib.transfer_study import get_study
from lib.tuning import TuneConfig, tune_prompt
from lib.units import Spec, Unit, run_unit

REPO = Path(__file__).resolve().parents[1]
NAN, INF = float("nan"), float("inf")


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    return load_backbone(str(build_tiny_backbone("bert", tmp_path_factory.mktemp("bad_inputs_model") / "bert")))


class Ctx:
    """What a case's setup and action need: its folder, fixture data copies, a tiny model, tuning data."""

    def __init__(self, tmp_path: Path, request) -> None:
        self.tmp = tmp_path
        self.request = request
        self.root = tmp_path / "data"
        self.out = tmp_path / "run"

    def copy(self, rel: str) -> Path:
        """Copy one fixture folder (e.g. 'glue/SST-2') below this case's data root."""
        src = Path(__file__).parent / "fixtures" / "data" / rel
        shutil.copytree(src, self.root / rel)
        return self.root / rel

    def local(self, **kw) -> DataConfig:
        return DataConfig(data_root=str(self.root), source="local", **kw)

    @cached_property
    def model(self):
        return self.request.getfixturevalue("tiny_bert")

    @cached_property
    def monkeypatch(self):
        return self.request.getfixturevalue("monkeypatch")

    def synth(self, seed: int = 42):
        task, root = self.request.getfixturevalue("synth")
        sp = load_splits(task, DataConfig(data_root=str(root), source="local", seed=seed), ("train", "dev"))
        return task, sp["train"], sp["dev"]

    def tune(self, cfg: TuneConfig | None = None, seed: int = 42, out: Path | None = None, **kw):
        task, train, dev = self.synth(seed)
        return tune_prompt(self.model, task, train, dev, cfg or small(), out if out is not None else self.out,
                           progress=False, **kw)


def small(**kw) -> TuneConfig:
    base = dict(prompt_length=4, batch_size=8, max_steps=4, eval_every=2, max_length=16, lr=0.1, seed=0)
    base.update(kw)
    return TuneConfig(**base)


@dataclass
class Case:
    id: str
    error: type[CompendiumError]
    fragments: tuple[str, ...]
    act: Callable[[Ctx], object]
    setup: Callable[[Ctx], object] | None = None
    absent: tuple[str, ...] = ()
    issue: str = ""  # how the issue saw it, for the note


def override(**kw) -> Callable[[Ctx], object]:
    return lambda ctx: get_profile("mini").replace(**kw)


def write(rel: str, content: str | bytes, copy: str | None = None) -> Callable[[Ctx], None]:
    def setup(ctx: Ctx) -> None:
        if copy:
            ctx.copy(copy)
        path = ctx.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return setup


def _finished(ctx: Ctx, **kw) -> None:
    ctx.tune(**kw)
    assert json.loads((ctx.out / "metrics.json").read_text())["finished"] is True


class Stop(Exception):
    pass


def _interrupted(ctx: Ctx) -> None:
    def stop(step, loss):
        if step == 3:
            raise Stop
    with pytest.raises(Stop):
        ctx.tune(on_step=stop)
    assert json.loads((ctx.out / "metrics.json").read_text())["finished"] is False


def _source(ctx: Ctx, value: float = 0.5) -> torch.Tensor:
    return torch.full((4, ctx.model.embed_dim), value)


def _nan_prompt_in_finished_run(ctx: Ctx) -> None:
    _finished(ctx)
    save_prompt(ctx.out / "prompt.safetensors", torch.full((4, ctx.model.embed_dim), NAN))


def _auto_source_hub_unreachable(ctx: Ctx) -> None:
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach the hub (offline)")
    ctx.monkeypatch.setattr(datasets, "load_dataset", offline)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        try:
            load_split("sst2", "test", DataConfig(data_root=str(ctx.root)))
        finally:  # said before the hub was tried, not only in the error after it
            assert any("has no glue/SST-2/dev.tsv; loading it from the hub" in str(w.message) for w in seen)


class Opaque:  # a pickled object of a class: refused by torch.load(weights_only=True)
    pass


class Payload:  # what a hostile pickle carries: a call on load (here a harmless one, never made)
    def __reduce__(self):
        return (os.getcwd, ())


def _peft_folder_with_pickle(ctx: Ctx) -> None:
    folder = ctx.tmp / "adapter"
    folder.mkdir()
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "PROMPT_TUNING", "num_virtual_tokens": 4}))
    torch.save({"prompt_embeddings": torch.zeros(4, 8), "hook": Payload()}, folder / "adapter_model.bin")


def _link(rel: str, target: Callable[[Ctx], Path | str], copy: str | None = None) -> Callable[[Ctx], None]:
    """Replace `rel` below the data root by a symbolic link to `target(ctx)`."""
    def setup(ctx: Ctx) -> None:
        if copy:
            ctx.copy(copy)
        path = ctx.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() or path.is_symlink():
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
        path.symlink_to(target(ctx))
    return setup


def _outside_file(ctx: Ctx) -> Path:
    """A file beside the data root, as /etc/passwd would be: its content must never show in a message."""
    path = ctx.tmp / "outside" / "passwd"
    path.parent.mkdir()
    path.write_text("root:x:0:0:SECRET-LINE\tlabel\n")
    return path


def _outside_glue(ctx: Ctx) -> Path:
    shutil.copytree(Path(__file__).parent / "fixtures" / "data" / "glue" / "SST-2", ctx.tmp / "elsewhere" / "SST-2")
    return ctx.tmp / "elsewhere"


def _fifo(ctx: Ctx) -> None:
    ctx.copy("glue/SST-2")
    (ctx.root / "glue/SST-2/dev.tsv").unlink()
    os.mkfifo(ctx.root / "glue/SST-2/dev.tsv")


def _parquet(text: list) -> Callable[[Ctx], None]:
    def setup(ctx: Ctx) -> None:
        ctx.copy("imdb")
        pd.DataFrame({"text": text, "label": [1, 0]}).to_parquet(ctx.root / "imdb/test.parquet")
    return setup


def _store(ctx: Ctx) -> ResultsStore:
    return ResultsStore(ctx.tmp / "store")


def _table(ctx: Ctx):
    return _store(ctx).table("t", {"k": 1}, lambda: pd.DataFrame({"x": range(100), "y": [f"r{i}" for i in range(100)]}))


def _tensors(ctx: Ctx):
    return _store(ctx).tensors("neurons/x.safetensors", {"k": 1}, lambda: {"scores": torch.arange(100.0)})


def _cached_then(kind: str, change: Callable[[Path], None]) -> Callable[[Ctx], None]:
    """Compute a cached table or tensor file, then `change` it (its file, or for 'key' the table's key file)."""
    def setup(ctx: Ctx) -> None:
        (_tensors if kind == "tensors" else _table)(ctx)
        files = {"table": "tables/t.csv", "key": "tables/t.json", "tensors": "neurons/x.safetensors"}
        change(ctx.tmp / "store" / files[kind])
    return setup


def _cut(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip_last_byte(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[-2] ^= 1
    path.write_bytes(bytes(raw))


def _edit_digit(path: Path) -> None:  # same size, other number: 'r50' -> 'r59'
    path.write_text(path.read_text().replace("50,r50", "59,r50"))


def _old_key_then_empty(path: Path) -> None:
    """A key written before checksums (committed results) and its table emptied."""
    key = path.with_suffix(".json")
    meta = json.loads(key.read_text())
    del meta["sha256"]
    key.write_text(json.dumps(meta))
    path.write_bytes(b"")


_PARAMETERS = 'profile = "smoke"\nresults_dir = "results"\noverrides = {}\n'


def _cuda_missing(ctx: Ctx) -> None:
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is available here")
    TuneConfig(device="cuda").resolved_device()


CASES = [
    # --- overrides and configurations: checked before any work or file -----------------------------
    Case("tune.lr is a string", ConfigError, ("tune.lr must be a finite number, got '0.01' (a string)",
                                               "write 0.01 without quotes"),
         override(tune={"lr": "0.01"}), issue="TypeError: '>' not supported"),
    Case("tune.batch_size is 2.5", ConfigError, ("tune.batch_size must be an integer, got 2.5",),
         override(tune={"batch_size": 2.5}), issue="raw TypeError, config.json left behind"),
    Case("TuneConfig(batch_size=2.5) into a run folder", ConfigError, ("batch_size must be an integer, got 2.5",),
         lambda ctx: ctx.tune(TuneConfig.from_dict({"batch_size": 2.5, "max_steps": 4})),
         issue="config.json left behind"),
    Case("tune.weight_decay is nan", ConfigError, ("tune.weight_decay must be a finite number, got nan",),
         override(tune={"weight_decay": NAN}), issue="raw traceback"),
    Case("tune.lr is inf", ConfigError, ("tune.lr must be a finite number, got inf",),
         override(tune={"lr": INF}), issue="silent: all-NaN prompt saved as finished"),
    Case("TuneConfig(lr=inf)", ConfigError, ("lr must be a finite number, got inf",),
         lambda ctx: ctx.tune(small(lr=INF))),
    Case("tasks is a string", ConfigError, ("tasks must be a list of strings, got 'sst2' (a string)", '["sst2"]'),
         override(tasks="sst2"), issue="unknown task 's' inside the notebook"),
    Case("seeds is 'zero'", ConfigError, ("seeds must be a list of integers, got 'zero' (a string)",),
         override(seeds="zero"), issue="failed inside the notebook"),
    Case("seeds is '01'", ConfigError, ("seeds must be a list of integers, got '01' (a string)",),
         override(seeds="01"), absent=("delete",), issue="advised deleting the committed checkpoint"),
    Case("a seed is a bool", ConfigError, ("seeds[1] must be an integer, got True (a bool)",),
         override(seeds=[0, True])),
    Case("a seed is negative", ConfigError, ("seeds must be non-negative integers, got [-1]",), override(seeds=[-1])),
    Case("a seed is repeated", ConfigError, ("seeds must not repeat, got [0, 0]",), override(seeds=[0, 0])),
    Case("tune.max_steps is a bool", ConfigError, ("tune.max_steps must be an integer, got True (a bool)",),
         override(tune={"max_steps": True})),
    Case("tune.batch_size is 10**12", ConfigError, ("batch_size must be at most 65,536, got 1,000,000,000,000",),
         override(tune={"batch_size": 10 ** 12}), issue="accepted; failed late or never"),
    Case("tune.max_length is 10**6", ConfigError, ("max_length must be at most 65,536, got 1,000,000",),
         override(tune={"max_length": 10 ** 6}), issue="accepted; failed late or never"),
    Case("data.max_train is a string", ConfigError, ("data.max_train must be an integer or None, got '100'",),
         override(data={"max_train": "100"})),
    Case("data.carve_train_from_test is 'yes'", ConfigError,
         ("data.carve_train_from_test must be true or false, got 'yes'",), override(data={"carve_train_from_test": "yes"})),
    Case("DataConfig(seed='42')", ConfigError, ("seed must be an integer, got '42' (a string)",),
         lambda ctx: DataConfig(seed="42")),
    Case("an unknown task", ConfigError, ("unknown task 'sst'; valid:",), override(tasks=["sst"])),
    Case("an unknown profile field", ConfigError, ("unknown profile field(s) ['taks']",), override(taks=["sst2"])),
    Case("top_fraction is nan", ConfigError, ("top_fraction must be a finite number, got nan",),
         override(top_fraction=NAN)),
    Case("suppression_fractions is a number", ConfigError,
         ("suppression_fractions must be a list of finite numbers, got 0.1",), override(suppression_fractions=0.1)),
    Case("adversarial is a list", ConfigError, ("adversarial must be a mapping of strings to strings",),
         override(adversarial=["sst2"])),
    Case("tune is a string", ConfigError, ("tune must be a TuneConfig (or a dict of its fields), got 'fast'",),
         override(tune="fast")),
    Case("tune.init='source' in a profile", ConfigError, ("tune.init='source' needs a source prompt",),
         override(tune={"init": "source"})),
    Case("tune.device is 'gpu'", ConfigError, ("device 'gpu' is not a torch device",), override(tune={"device": "gpu"})),
    Case("device='cuda' without CUDA", ConfigError, ("no CUDA device is available",), _cuda_missing),
    Case("study seeds is 'zero'", ConfigError, ("seeds must be a list of integers, got 'zero'",),
         lambda ctx: get_study("mini", {"seeds": "zero"})),
    Case("study pairs is a string", ConfigError, ("pairs must be a list of [string, string] pairs", '[["sst2", "imdb"]]'),
         lambda ctx: get_study("mini", {"pairs": "sst2,imdb"})),
    Case("study beta is nan", ConfigError, ("beta must be a finite number, got nan",),
         lambda ctx: get_study("mini", {"beta": NAN})),
    Case("the profile name overridden", ConfigError,
         ("profile field(s) ['name'] cannot be overridden", "choose another profile"),
         override(name="../../../../escape_demo"), issue="a model written outside the results folder"),
    Case("the profile description overridden", ConfigError, ("profile field(s) ['description'] cannot be overridden",),
         override(description="mine")),
    Case("a profile built with a name that is a path", ConfigError,
         ("profile name '../x' cannot be used as a folder name", "no '..'"),
         lambda ctx: dataclasses.replace(get_profile("mini"), name="../x")),
    Case("a synthetic task named '../../x'", ConfigError, ("task name '../../x' cannot be used as a folder name",),
         lambda ctx: get_profile("smoke").replace(tasks=["../../x"]), issue="a lock file outside the results tree"),
    Case("a task name with a slash", ConfigError, ("task name 'glue/sst2' cannot be used as a folder name",),
         override(tasks=["glue/sst2"])),
    Case("an adversarial set named '../adv'", ConfigError, ("task name '../adv' cannot be used as a folder name",),
         lambda ctx: get_profile("smoke").replace(adversarial={"synthetic": "../adv"})),
    Case("a task name that is a hidden name", ConfigError, ("task name '.lock' cannot be used as a folder name",),
         lambda ctx: get_profile("smoke").replace(tasks=[".lock"])),
    Case("a unit whose task is '../../x'", ConfigError, ("a unit's task '../../x' cannot be used as a folder name",),
         lambda ctx: Unit("tune", "../../x", 0)),
    Case("a transfer unit whose source is '..'", ConfigError,
         ("a unit's source task '..' cannot be used as a folder name",),
         lambda ctx: Unit.parse("transfer/.._to_synthetic/seed0")),
    Case("a unit id with a superscript seed", ConfigError, ("a unit id is <kind>/", "got 'tune/sst2/seed\u00b9'"),
         lambda ctx: Unit.parse("tune/sst2/seed\u00b9"), issue="raw ValueError from int()"),
    Case("lib.units with the profile name overridden", ConfigError, ("profile field(s) ['name'] cannot be overridden",),
         lambda ctx: run_unit(Spec("smoke", {"name": "../../../../escape_demo"},
                                   results=str(ctx.tmp / "a/b/c/d/results")), "tune/synthetic/seed0"), issue="wrote a model outside the results folder"),
    Case("lib.units with a smoke task named '../../x'", ConfigError,
         ("task name '../../x' cannot be used as a folder name",),
         lambda ctx: run_unit(Spec("smoke", {"tasks": ["../../x"]}, results=str(ctx.tmp / "a/b/results")),
                              Unit("tune", "synthetic", 0)), issue="a lock file outside the results tree"),
    Case("a synthetic task written under a name that is a path", ConfigError,
         ("task name '../x' cannot be used as a folder name",), lambda ctx: synthetic_task(ctx.root, name="../x")),
    Case("papermill passed a parameter the notebook does not declare", ConfigError,
         ("notebook parameter(s) ['top_fraction'] are not declared by this notebook",
          "(its parameters: overrides, profile, results_dir) and would be ignored",
          """-p overrides '{"top_fraction": 0.05}'"""),
         lambda ctx: check_parameters(["", "import os", _PARAMETERS,
                                       '# Parameters\nprofile = "smoke"\ntop_fraction = 0.05\n']),
         issue="papermill exited 0 after a 'Passed unknown parameter' line"),
    # --- tuning: fingerprints, sources, non-finite numbers -------------------------------------------
    Case("source_prompt with init='vocab'", ConfigError, ("source_prompt is only used with init='source'",),
         lambda ctx: ctx.tune(source_prompt=_source(ctx)), issue="silent: source ignored"),
    Case("another source prompt into a finished run", CheckpointError,
         ("another configuration (source_prompt: ", "that run is kept as it is"),
         lambda ctx: ctx.tune(small(init="source"), source_prompt=_source(ctx, 0.25)),
         setup=lambda ctx: _finished(ctx, cfg=small(init="source"), source_prompt=_source(ctx, 0.5)),
         absent=("delete", "config.lr"), issue="silent: returned the first run"),
    Case("finished run, other data at the same size (DataConfig seed 7 vs 42)", CheckpointError,
         ("another configuration (data.dev: ", "data.train: ", "kept as it is"),
         lambda ctx: ctx.tune(seed=7), setup=_finished, absent=("delete", "config."),
         issue="silent: the finished run was returned"),
    Case("unfinished run resumed on other data", CheckpointError, ("data.train: ", "kept as it is"),
         lambda ctx: ctx.tune(seed=7), setup=_interrupted, absent=("delete",),
         issue="silent: resumed on the new data, mixing two data sets"),
    Case("a config mismatch names only the field that differs", CheckpointError,
         ("(config.lr: 0.1 here, 0.2 asked)",), lambda ctx: ctx.tune(small(lr=0.2)), setup=_finished,
         absent=("batch_size", "prompt_length", "delete"), issue="printed two whole dictionaries"),
    Case("a diverging lr (1e30)", DivergenceError,
         ("diverged at step 2: the training loss is nan", "lower lr", "no checkpoint of this run was written"),
         lambda ctx: ctx.tune(small(lr=1e30, eval_every=4)), issue="lr=inf: all-NaN prompt saved as finished"),
    Case("an lr whose first update overflows (1e38)", DivergenceError,
         ("diverged at step 1: the update is beyond the float range", "lower lr"),
         lambda ctx: ctx.tune(small(lr=1e38, eval_every=4)), issue="(found here) raw RuntimeError from AdamW"),
    Case("a teacher prompt with nan", ConfigError, ("teacher_prompt holds non-finite values",),
         lambda ctx: ctx.tune(teacher_prompt=_source(ctx, NAN), distill_beta=1.0)),
    Case("distill_beta is nan", ConfigError, ("distill_beta must be a finite number, got nan",),
         lambda ctx: ctx.tune(teacher_prompt=_source(ctx), distill_beta=NAN)),
    Case("a finished run holding a nan prompt (written before the check)", CheckpointError,
         ("holds a non-finite prompt", "not a valid result"), lambda ctx: ctx.tune(),
         setup=_nan_prompt_in_finished_run),
    Case("a corrupt state.pt", CheckpointError, ("corrupt checkpoint", "state.pt", "refused for safety"),
         lambda ctx: ctx.tune(),
         setup=lambda ctx: (_interrupted(ctx), (ctx.out / "state.pt").write_bytes(b"not a checkpoint")),
         absent=("weights_only=False", "set to `False`")),
    Case("a checkpoint holding a pickled object (weights_only)", CheckpointError,
         (f"state.pt holds pickled Python code or objects ({Opaque.__module__}.Opaque), refused for safety",
          "weights_only=True"), lambda ctx: read_torch(ctx.out / "state.pt"),
         setup=lambda ctx: (ctx.out.mkdir(), torch.save({"x": Opaque()}, ctx.out / "state.pt")),
         absent=("weights_only=False", "set to `False`", "Re-running"), issue="torch.load(weights_only=False)"),
    Case("a PEFT adapter_model.bin carrying a pickle payload", CheckpointError,
         ("adapter_model.bin holds pickled Python code or objects", "refused for safety"),
         lambda ctx: read_peft(ctx.tmp / "adapter"), setup=_peft_folder_with_pickle,
         absent=("weights_only=False", "set to `False`", "Re-running", "corrupt"),
         issue="'corrupt checkpoint ... Re-running torch.load with weights_only set to False will likely succeed'"),
    Case("a bare pickle with a call on load as a checkpoint", CheckpointError,
         ("state.pt holds pickled Python code or objects (posix.getcwd)", "refused for safety"),
         lambda ctx: read_torch(ctx.tmp / "state.pt"),
         setup=lambda ctx: (ctx.tmp / "state.pt").write_bytes(pickle.dumps(Payload(), protocol=2)),
         absent=("weights_only=False", "set to `False`", "Re-running")),
    # --- data files ---------------------------------------------------------------------------------
    Case("a CoLA row with 3 of 4 fields", DataError,
         ("glue/CoLA/dev.tsv line 2: 3 tab-separated field(s), expected 4 (source, label, marker, sentence)",),
         lambda ctx: load_split("cola", "test", ctx.local()),
         setup=write("glue/CoLA/dev.tsv", "gj04\t1\t\tFine .\ngj04\t0\tRope the stretch made .\n", "glue/CoLA"),
         issue="silent: loaded with empty text and evaluated"),
    Case("a 0-byte TSV", DataError, ("glue/SST-2/dev.tsv is empty; expected a header line",),
         lambda ctx: load_split("sst2", "test", ctx.local()), setup=write("glue/SST-2/dev.tsv", b"", "glue/SST-2"),
         issue="EmptyDataError, file not named"),
    Case("a TSV with a non-UTF-8 byte", DataError,
         ("glue/SST-2/dev.tsv line 3: byte 0xff at column 4 is not UTF-8 text",),
         lambda ctx: load_split("sst2", "test", ctx.local()),
         setup=write("glue/SST-2/dev.tsv", b"sentence\tlabel\nfine\t1\nbad\xff\t0\n", "glue/SST-2"),
         issue="UnicodeDecodeError, file not named"),
    Case("a row missing its tab", DataError, ("glue/SST-2/dev.tsv line 3: 1 tab-separated field(s), expected 2",),
         lambda ctx: load_split("sst2", "test", ctx.local()),
         setup=write("glue/SST-2/dev.tsv", "sentence\tlabel\nfine\t1\nawful 0\n", "glue/SST-2"),
         issue="label '' is not a label of task 'sst2', no file or line"),
    Case("an extra tab in the first data row", DataError,
         ("glue/SST-2/dev.tsv line 2: 3 tab-separated field(s), expected 2", "an extra tab"),
         lambda ctx: load_split("sst2", "test", ctx.local()),
         setup=write("glue/SST-2/dev.tsv", "sentence\tlabel\nfine\tindeed\t1\nawful\t0\n", "glue/SST-2"),
         issue="silent: column 0 became the index"),
    Case("an empty label", DataError, ("glue/SST-2/dev.tsv line 3: label '' is not a label of task 'sst2'",),
         lambda ctx: load_split("sst2", "test", ctx.local()),
         setup=write("glue/SST-2/dev.tsv", "sentence\tlabel\nfine\t1\nawful\t\n", "glue/SST-2")),
    Case("a label the task does not define", DataError, ("glue/SST-2/dev.tsv line 3: label '3' is not a label",),
         lambda ctx: load_split("sst2", "test", ctx.local()),
         setup=write("glue/SST-2/dev.tsv", "sentence\tlabel\nfine\t1\nodd\t3\n", "glue/SST-2")),
    Case("an AdvGLUE record without label", DataError,
         ("advglue/dev.json record 2 of 'sst2' (idx 1) has no field(s) ['label']",),
         lambda ctx: load_split("adv_sst2", "test", ctx.local()),
         setup=write("advglue/dev.json", json.dumps({"sst2": [{"idx": 0, "sentence": "good", "label": 1},
                                                              {"idx": 1, "sentence": "bad"}]})),
         issue="label np.float64(nan) without the record"),
    Case("an AdvGLUE record with a null label", DataError, ("record 2 of 'sst2' (idx 1): no label",),
         lambda ctx: load_split("adv_sst2", "test", ctx.local()),
         setup=write("advglue/dev.json", json.dumps({"sst2": [{"idx": 0, "sentence": "good", "label": 1},
                                                              {"idx": 1, "sentence": "bad", "label": None}]}))),
    Case("a 0-byte AdvGLUE file", DataError, ("advglue/dev.json is empty",),
         lambda ctx: load_split("adv_sst2", "test", ctx.local()), setup=write("advglue/dev.json", b"")),
    Case("AdvGLUE JSON that is a list", DataError, ("must hold a JSON object {task: [records]}, got list",),
         lambda ctx: load_split("adv_sst2", "test", ctx.local()), setup=write("advglue/dev.json", "[1, 2]")),
    Case("a CSV row with a missing field", DataError,
         ("ethics/justice_test.csv line 3: 1 comma-separated field(s), expected 2 (label, scenario)",),
         lambda ctx: load_split("ethics_justice", "test", ctx.local()),
         setup=write("ethics/justice_test.csv", "label,scenario\n1,I helped.\n0\n", "ethics")),
    Case("a 0-byte CSV", DataError, ("ethics/justice_test.csv is empty",),
         lambda ctx: load_split("ethics_justice", "test", ctx.local()),
         setup=write("ethics/justice_test.csv", b"", "ethics"), issue="EmptyDataError"),
    Case("a JSONL record without a field", DataError, ("snli_1.0_test.jsonl line 2 has no field(s) ['gold_label']",),
         lambda ctx: load_split("snli", "test", ctx.local()),
         setup=write("snli/snli_1.0_test.jsonl",
                     '{"sentence1": "a", "sentence2": "b", "gold_label": "neutral"}\n{"sentence1": "a", "sentence2": "b"}\n',
                     "snli")),
    Case("a JSONL label that is a list", DataError, ("snli_1.0_test.jsonl line 2: label ['x'] is not a single value",),
         lambda ctx: load_split("snli", "test", ctx.local()),
         setup=write("snli/snli_1.0_test.jsonl",
                     '{"sentence1": "a", "sentence2": "b", "gold_label": "neutral"}\n'
                     '{"sentence1": "a", "sentence2": "b", "gold_label": ["x"]}\n', "snli")),
    Case("a JSONL line that is not JSON", DataError, ("malformed JSON on line 1 of", "snli_1.0_test.jsonl"),
         lambda ctx: load_split("snli", "test", ctx.local()),
         setup=write("snli/snli_1.0_test.jsonl", "{not json\n", "snli")),
    Case("a JSONL file with a non-UTF-8 byte", DataError, ("snli_1.0_test.jsonl line 1: byte 0xe9",),
         lambda ctx: load_split("snli", "test", ctx.local()),
         setup=write("snli/snli_1.0_test.jsonl", b'{"sentence1": "caf\xe9"}\n', "snli")),
    Case("a corrupt Parquet file", DataError, ("imdb/test.parquet is not a readable Parquet file",),
         lambda ctx: load_split("imdb", "test", ctx.local()),
         setup=write("imdb/test.parquet", b"PAR1 garbage", "imdb")),
    Case("a Parquet row with null text", DataError, ("imdb/test.parquet row 2: no text in field 'text' (null)",),
         lambda ctx: load_split("imdb", "test", ctx.local()),
         setup=lambda ctx: (ctx.copy("imdb"), pd.DataFrame({"text": ["fine", None], "label": [1, 0]}).to_parquet(
             ctx.root / "imdb/test.parquet"))),
    Case("a data root without the task's folder (local)", DataFileNotFound,
         ("has no files for task 'sst2'", "glue/SST-2/train.tsv", "glue/SST-2/dev.tsv"),
         lambda ctx: load_splits("sst2", ctx.local()), setup=lambda ctx: ctx.copy("imdb"),
         absent=("carve_train_from_test",), issue="suggested carve_train_from_test with the test file missing too"),
    Case("a data root without the task's folder (auto, hub unreachable)", DataError,
         ("could not load task 'sst2' split 'test' from the hub", "has no glue/SST-2/dev.tsv, so the hub was tried"),
         _auto_source_hub_unreachable, setup=lambda ctx: ctx.root.mkdir(), issue="fell back to the hub for ~24 s, never said the root lacked the file"),
    Case("a data root that does not exist", DataFileNotFound, ("does not exist (or is not a folder)",),
         lambda ctx: load_split("sst2", "test", DataConfig(data_root=str(ctx.tmp / "nope"), source="local"))),
    Case("the test file missing, train present", DataFileNotFound,
         ("data file(s) for task 'sst2' not found:", "glue/SST-2/dev.tsv"),
         lambda ctx: load_split("sst2", "test", ctx.local()),
         setup=lambda ctx: (ctx.copy("glue/SST-2"), (ctx.root / "glue/SST-2/dev.tsv").unlink())),
    Case("a data file that is a link out of the data root (dev.tsv -> passwd)", DataError,
         ("glue/SST-2/dev.tsv leads to", "outside/passwd, outside the data root", "refused, nothing of it is read"),
         lambda ctx: load_split("sst2", "test", ctx.local()),
         setup=_link("glue/SST-2/dev.tsv", _outside_file, "glue/SST-2"),
         absent=("SECRET",), issue="followed, its first line echoed in the error"),
    Case("a data folder that is a link out of the data root", DataError,
         ("glue/SST-2/dev.tsv leads to", "elsewhere/SST-2/dev.tsv, outside the data root"),
         lambda ctx: load_split("sst2", "test", ctx.local()), setup=_link("glue", _outside_glue)),
    Case("a data file that is a link to /dev/zero", DataError,
         ("glue/SST-2/dev.tsv (a symbolic link to /dev/zero) is not a regular file",),
         lambda ctx: load_split("sst2", "test", ctx.local()),
         setup=_link("glue/SST-2/dev.tsv", lambda ctx: "/dev/zero", "glue/SST-2"), issue="reported as 'not found'"),
    Case("a data file that is a named pipe", DataError, ("glue/SST-2/dev.tsv is not a regular file",),
         lambda ctx: load_split("sst2", "test", ctx.local()), setup=_fifo),
    Case("a data file that is a broken link", DataFileNotFound,
         ("glue/SST-2/dev.tsv (a symbolic link to", "leads to nothing that exists"),
         lambda ctx: load_split("sst2", "test", ctx.local()),
         setup=_link("glue/SST-2/dev.tsv", lambda ctx: ctx.tmp / "gone.tsv", "glue/SST-2")),
    Case("a Parquet text column of lists", DataError,
         ("imdb/test.parquet row 1: field 'text' holds a list ['fine'], not text",),
         lambda ctx: load_split("imdb", "test", ctx.local()), setup=_parquet([["fine"], ["a", "b"]]),
         issue="silent: fed to the model as the string \"['a' 'b']\""),
    Case("a Parquet text column of numbers", DataError, ("imdb/test.parquet row 1: field 'text' holds a number 5",),
         lambda ctx: load_split("imdb", "test", ctx.local()), setup=_parquet([5, 6])),
    Case("a JSONL text field that is a list", DataError,
         ("snli_1.0_test.jsonl line 2: field 'sentence1' holds a list ['a', 'b'], not text",),
         lambda ctx: load_split("snli", "test", ctx.local()),
         setup=write("snli/snli_1.0_test.jsonl",
                     '{"sentence1": "a", "sentence2": "b", "gold_label": "neutral"}\n'
                     '{"sentence1": ["a", "b"], "sentence2": "b", "gold_label": "neutral"}\n', "snli")),
    Case("a label in Arabic-Indic digits", DataError,
         ("glue/SST-2/dev.tsv line 3: label '\u0661' is not a label of task 'sst2'", "ASCII digits 0-9"),
         lambda ctx: load_split("sst2", "test", ctx.local()),
         setup=write("glue/SST-2/dev.tsv", "sentence\tlabel\nfine\t1\nodd\t\u0661\n", "glue/SST-2"),
         issue="silent: read as 1"),
    Case("a full-width label", DataError, ("line 3: label '\uff11' is not a label of task 'sst2'", "ASCII digits"),
         lambda ctx: load_split("sst2", "test", ctx.local()),
         setup=write("glue/SST-2/dev.tsv", "sentence\tlabel\nfine\t1\nodd\t\uff11\n", "glue/SST-2"),
         issue="silent: read as 1"),
    Case("a superscript label", DataError, ("line 3: label '\u00b9' is not a label of task 'sst2'", "ASCII digits"),
         lambda ctx: load_split("sst2", "test", ctx.local()),
         setup=write("glue/SST-2/dev.tsv", "sentence\tlabel\nfine\t1\nodd\t\u00b9\n", "glue/SST-2"),
         issue="raw ValueError from int()"),
    Case("a TSV with CR-only line endings", DataError,
         ("glue/SST-2/dev.tsv ends its lines with CR only", "convert them to LF"),
         lambda ctx: load_split("sst2", "test", ctx.local()),
         setup=write("glue/SST-2/dev.tsv", "sentence\tlabel\rfine\t1\rawful\t0\r", "glue/SST-2"),
         issue="lacks column(s) ['label']; it has: ['sentence', 'label\\rfine', ...]"),
    Case("a JSONL file with CR-only line endings", DataError, ("snli_1.0_test.jsonl ends its lines with CR only",),
         lambda ctx: load_split("snli", "test", ctx.local()),
         setup=write("snli/snli_1.0_test.jsonl",
                     '{"sentence1": "a", "sentence2": "b", "gold_label": "neutral"}\r'
                     '{"sentence1": "c", "sentence2": "d", "gold_label": "neutral"}\r', "snli")),
    # --- cached tables and tensors: checksums -------------------------------------------------------
    Case("a cached table cut to half its rows", CheckpointError,
         ("cached table", "tables/t.csv does not match the checksum in its key file",
          "delete", "tables/t.json, then re-run the chapter that computes it"),
         _table, setup=_cached_then("table", _cut), issue="silent: 52 of 100 rows returned"),
    Case("a cached table edited in place", CheckpointError, ("tables/t.csv does not match the checksum",),
         _table, setup=_cached_then("table", _edit_digit)),
    Case("an emptied cached table", CheckpointError,
         ("cached table", "tables/t.csv is empty", "re-run the chapter that computes it"),
         _table, setup=_cached_then("table", lambda p: p.write_bytes(b"")), issue="raw pandas EmptyDataError"),
    Case("an emptied cached table whose key has no checksum (older results)", CheckpointError,
         ("tables/t.csv is empty", "re-run the chapter"), _table, setup=_cached_then("table", _old_key_then_empty),
         issue="raw pandas EmptyDataError"),
    Case("a corrupt key file of a cached table", CheckpointError,
         ("corrupt JSON file", "tables/t.json", "it is the key file of the cached table",
          "then re-run the chapter that computes it"),
         _table, setup=_cached_then("key", lambda p: p.write_text('{"key": ')), issue="said nothing of what to do"),
    Case("a key file of a cached table that is a list", CheckpointError,
         ("tables/t.json of the cached table", "holds list, not a JSON object"),
         _table, setup=_cached_then("key", lambda p: p.write_text("[]"))),
    Case("a cached tensor file with a changed byte", CheckpointError,
         ("cached tensor file", "neurons/x.safetensors does not match the checksum in its metadata",
          "re-run the chapter that computes it"), _tensors, setup=_cached_then("tensors", _flip_last_byte),
         issue="silent: the changed scores were returned"),
    Case("a cached tensor file cut short", CheckpointError, ("neurons/x.safetensors does not match the checksum",),
         _tensors, setup=_cached_then("tensors", lambda p: p.write_bytes(p.read_bytes()[:-40]))),
    Case("an emptied cached tensor file", CheckpointError,
         ("neurons/x.safetensors is not a readable safetensors file", "re-run the chapter"),
         _tensors, setup=_cached_then("tensors", lambda p: p.write_bytes(b""))),
    # --- models -----------------------------------------------------------------------------------
    Case("a model path that is config.json", ModelLoadError, ("is a file, not a model folder; pass its folder",),
         lambda ctx: load_backbone(str(ctx.tmp / "m" / "config.json")),
         setup=lambda ctx: (ctx.tmp.joinpath("m").mkdir(), ctx.tmp.joinpath("m", "config.json").write_text("{}")),
         issue="Repo id must be in the form 'repo_name'"),
    Case("a mistyped model folder", ModelLoadError, ("no model folder", "did you mean", "tiny-bert"),
         lambda ctx: load_backbone(str(ctx.tmp / "tiny-bret")),
         setup=lambda ctx: (ctx.tmp / "tiny-bert").mkdir(), issue="Repo id must be in the form 'repo_name'"),
    Case("a model folder without config.json", ModelLoadError, ("has no config.json, so it is not a saved model",),
         lambda ctx: load_backbone(str(ctx.tmp / "tiny-bert")),
         setup=lambda ctx: ((ctx.tmp / "tiny-bert").mkdir(), (ctx.tmp / "tiny-bert/vocab.txt").write_text("a"))),
]


def _snapshot(root: Path) -> dict[str, str]:
    """Every file and folder under `root`, with a hash of each file's bytes."""
    return {str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir")
            for p in sorted(root.rglob("*"))}


def test_the_table_is_large_enough():
    assert len(CASES) >= 106 and len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, tmp_path: Path, request) -> None:
    ctx = Ctx(tmp_path, request)
    if case.setup is not None:
        case.setup(ctx)
    before = _snapshot(tmp_path)
    with pytest.raises(CompendiumError) as info:
        case.act(ctx)
    message = str(info.value)
    log = os.environ.get("COMPENDIUM_BAD_INPUTS_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"case": case.id, "error": type(info.value).__name__, "issue": case.issue,
                                 "message": message.replace(str(tmp_path), "<tmp>")}) + "\n")
    assert type(info.value) is case.error, f"{type(info.value).__name__}: {message}"
    assert "\n" not in message, message
    for fragment in case.fragments:
        assert fragment in message, message
    for fragment in case.absent:
        assert fragment not in message, message
    assert _snapshot(tmp_path) == before, "a failed call wrote, changed or removed files"


# --- what is not an error: leftovers, modes, a diverging run's last good checkpoint ----------------
def test_a_killed_write_leaves_a_temporary_that_the_next_write_removes(tmp_path):
    target = tmp_path / "metrics.json"
    code = ("import sys, time; sys.path.insert(0, sys.argv[1]); from lib.io import _atomic\n"
            "def slow(tmp):\n    open(tmp, 'w').write('half')\n    print('writing', flush=True)\n    time.sleep(60)\n"
            "_atomic(sys.argv[2], slow)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(REPO), str(target)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "writing"
        live = list(tmp_path.glob(".metrics.json.*.tmp"))
        assert len(live) == 1
        os.utime(live[0], (time.time() - 60, time.time() - 60))
        write_json(tmp_path / "metrics.json", {"other": 1})  # a write while the writer lives keeps its temporary
        assert live[0].exists()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert live[0].exists(), "SIGKILL leaves the temporary"
    os.utime(live[0], (time.time() - 60, time.time() - 60))
    other = tmp_path / ".config.json.abcd1234.tmp"  # another target's leftover is not this write's business
    other.write_text("x")
    os.utime(other, (time.time() - 60, time.time() - 60))
    write_json(target, {"finished": True})
    assert not live[0].exists() and other.exists()
    assert json.loads(target.read_text()) == {"finished": True}
    ignored = subprocess.run(["git", "check-ignore", "-q", "results/x/.metrics.json.abcd1234.tmp"], cwd=REPO)
    assert ignored.returncode == 0, ".<name>.XXXXXXXX.tmp must be git-ignored"


def test_results_are_written_with_the_users_umask(tmp_path):
    mask = os.umask(0)
    os.umask(mask)
    write_json(tmp_path / "a.json", {})
    write_torch(tmp_path / "s.pt", {"x": torch.zeros(2)})
    for name in ("a.json", "s.pt"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~mask, name
    assert torch.equal(read_torch(tmp_path / "s.pt")["x"], torch.zeros(2))


def test_the_tiny_model_is_written_with_the_users_umask(tmp_path):
    """save_pretrained writes model.safetensors 0600: the test bed's model follows the umask like every result."""
    mask = os.umask(0)
    os.umask(mask)
    path = build_tiny_backbone("bert", tmp_path / "tiny-bert")
    entries = [path, *path.rglob("*")]
    assert (path / "model.safetensors").is_file()
    for entry in entries:
        expected = (0o777 if entry.is_dir() else 0o666) & ~mask
        assert entry.stat().st_mode & 0o777 == expected, entry.name


@pytest.mark.parametrize("module", ["units", "sweep"])
def test_threads_below_one_is_a_usage_error(module, capsys):
    import importlib

    main = importlib.import_module(f"lib.{module}").main
    with pytest.raises(SystemExit) as stop:
        main(["--profile", "smoke", "--threads", "-1", "--list" if module == "units" else "--dry-run"])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].endswith("error: argument --threads: threads must be at least 1, got -1"), err


def test_the_units_command_with_a_path_as_profile_name_writes_nothing(tmp_path, capsys):
    """`python -m lib.units -o '{"name": "../../escape_demo"}'` wrote a model outside the results folder."""
    from lib.units import main

    results = tmp_path / "a" / "b" / "c" / "results"
    code = main(["--profile", "smoke", "-o", '{"name": "../../../../escape_demo"}', "--unit", "tune/synthetic/seed0",
                 "--results", str(results)])
    err = capsys.readouterr().err.strip()
    assert code == 1 and "\n" not in err and "profile field(s) ['name'] cannot be overridden" in err, err
    assert not list(tmp_path.rglob("*")), "nothing written, inside the results folder or outside"


def test_a_link_inside_the_data_root_is_followed(tmp_path):
    """Links are refused only when they leave the data root: one split linked to a copy beside it loads."""
    root = tmp_path / "data"
    shutil.copytree(Path(__file__).parent / "fixtures" / "data" / "glue" / "SST-2", root / "glue" / "SST-2")
    shutil.copy(root / "glue/SST-2/dev.tsv", root / "dev-copy.tsv")
    (root / "glue/SST-2/dev.tsv").unlink()
    (root / "glue/SST-2/dev.tsv").symlink_to(root / "dev-copy.tsv")
    test = load_split("sst2", "test", DataConfig(data_root=str(root), source="local"))
    assert len(test) > 0


def test_cached_results_without_a_checksum_still_load_and_the_next_write_adds_one(tmp_path):
    store = ResultsStore(tmp_path)
    frame = pd.DataFrame({"x": range(10)})
    store.table("t", {"k": 1}, lambda: frame)
    key = tmp_path / "tables" / "t.json"
    meta = json.loads(key.read_text())
    assert len(meta.pop("sha256")) == 64
    key.write_text(json.dumps(meta))  # as committed before checksums existed
    pd.testing.assert_frame_equal(store.table("t", {"k": 1}, lambda: 1 / 0), frame)
    store.table("t", {"k": 2}, lambda: frame)
    assert "sha256" in json.loads(key.read_text())


def test_a_diverging_run_keeps_its_last_good_checkpoint_unfinished(tmp_path, request, monkeypatch):
    ctx = Ctx(tmp_path, request)
    b = ctx.model
    poisoned = {"on": False}
    real = type(b).label_logits

    def label_logits(self, prompt, batch, verbalizer, **kw):
        out = real(self, prompt, batch, verbalizer, **kw)
        return out * NAN if poisoned["on"] and torch.is_grad_enabled() else out

    monkeypatch.setattr(type(b), "label_logits", label_logits)

    def poison(step, loss):
        poisoned["on"] = step >= 3
    with pytest.raises(DivergenceError, match=r"diverged at step 4: the training loss is nan .* the last checkpoint "
                                              r"in .* \(step 2\) is kept, unfinished"):
        ctx.tune(small(max_steps=6), on_step=poison)
    metrics = json.loads((ctx.out / "metrics.json").read_text())
    assert metrics["finished"] is False and metrics["steps"] == 2
    state = read_torch(ctx.out / "state.pt")
    assert state["step"] == 2 and bool(torch.isfinite(state["prompt"]).all())
    monkeypatch.undo()
    resumed = ctx.tune(small(max_steps=6))  # the kept checkpoint resumes once the cause is gone
    assert resumed.steps == 6 and bool(torch.isfinite(resumed.prompt).all())
    assert math.isfinite(resumed.best_dev_accuracy)
