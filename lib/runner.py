"""Execute the book's notebooks with papermill for a named profile.

    python -m lib.runner --profile mini                      # every notebook, into book/experiments
    python -m lib.runner --profile mini --only transfer      # one notebook
    python -m lib.runner --profile smoke --out /tmp/smoke -p 'overrides={"seeds": [0]}'

A notebook whose template, parameters, profile and `lib` sources are unchanged since its last
successful run is skipped (`--force` runs it anyway). The first failure stops the run; the
partly executed notebook is kept as `<name>.failed.ipynb` for inspection.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from tqdm.auto import tqdm

from .errors import ConfigError
from .io import read_json, write_json
from .profiles import PROFILES, get_profile

REPO = Path(__file__).resolve().parents[1]
TEMPLATES = REPO / "notebooks"
NOTEBOOKS = ("prompt_tuning", "transfer", "adversarial", "skill_neurons", "suppression", "adversarial_neurons",
             "task_specificity", "random_init_control", "explorer", "indicators", "init_transfer", "panda", "projector")


class NotebookFailed(RuntimeError):
    pass


def _fingerprint(template: Path, parameters: dict[str, Any]) -> str:
    h = hashlib.sha256()
    h.update(template.read_bytes())
    h.update(json.dumps(parameters, sort_keys=True, default=str).encode())
    for src in sorted((REPO / "lib").glob("*.py")):
        if src.name == "runner.py":  # how notebooks are run does not change what they compute
            continue
        h.update(src.name.encode())
        h.update(src.read_bytes())
    return h.hexdigest()


def _portable(path: str | Path) -> str:
    """A results folder inside the repository is passed relative to it (notebooks run with cwd = repo),
    so that fingerprints and executed notebooks do not depend on where the clone lives."""
    resolved = Path(path).resolve()
    try:
        return str(resolved.relative_to(REPO))
    except ValueError:
        return str(resolved)


def select(only: Sequence[str] | None) -> list[str]:
    if not only:
        return list(NOTEBOOKS)
    bad = [n for n in only if n not in NOTEBOOKS]
    if bad:
        raise ConfigError(f"unknown notebook(s) {bad}; valid: {', '.join(NOTEBOOKS)}")
    return [n for n in NOTEBOOKS if n in only]


def run_profile(profile: str, out_dir: str | Path = REPO / "book" / "experiments", *,
                results_dir: str | Path = REPO / "results", only: Sequence[str] | None = None,
                overrides: dict[str, Any] | None = None, force: bool = False, progress: bool = True,
                templates: str | Path = TEMPLATES) -> list[dict]:
    """Execute the selected notebooks in order; return one record per notebook (ran / skipped, seconds)."""
    import papermill as pm

    prof = get_profile(profile).replace(**(overrides or {}))  # validates the overrides before any work
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    records = []
    names = select(only)
    bar = tqdm(names, desc=f"profile {prof.name}", unit="notebook", disable=not progress)
    for name in bar:
        bar.set_postfix_str(name)
        template = Path(templates) / f"{name}.ipynb"
        if not template.is_file():
            raise ConfigError(f"notebook template not found: {template}")
        params = {"profile": profile, "results_dir": _portable(results_dir), "overrides": overrides or {}}
        stamp = _fingerprint(template, {**params, "profile_fields": prof.as_dict()})
        target, info = out / f"{name}.ipynb", out / ".runinfo" / f"{name}.json"
        if not force and target.is_file() and info.is_file() and read_json(info).get("fingerprint") == stamp:
            records.append({**read_json(info), "notebook": name, "status": "skipped"})
            continue
        partial = out / f"{name}.failed.ipynb"
        t0 = time.perf_counter()
        try:
            pm.execute_notebook(str(template), str(partial), parameters=params, cwd=str(REPO), kernel_name="python3",
                                progress_bar=False, log_output=False, report_mode=False)
        except pm.PapermillExecutionError as exc:
            raise NotebookFailed(f"notebook {name!r} failed at cell {exc.exec_count}: {exc.ename}: {exc.evalue}; "
                                 f"partly executed copy kept at {partial}") from None
        _hide_injected_parameters(partial)
        os.replace(partial, target)
        seconds = round(time.perf_counter() - t0, 1)
        record = {"notebook": name, "status": "ran", "seconds": seconds, "fingerprint": stamp,
                  "profile": prof.name, "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
        write_json(info, record)
        records.append(record)
    write_summary(out, prof.name, Path(results_dir) / prof.name)
    return records


def machine() -> str:
    """One line describing where the notebooks ran (reported in the reproducibility chapter)."""
    import platform

    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPU cores, {gpu}; Python "
            f"{platform.python_version()}, torch {torch.__version__}")


def write_summary(out: Path, profile: str, results: Path | None = None) -> None:
    """A Markdown table of every executed notebook's profile, date and wall time, for the book.

    A notebook re-executed over cached results runs in seconds, so the compute time of each cached
    result (recorded when it was first computed) and of the prompt-tuning runs is reported too.
    """
    rows = []
    for name in NOTEBOOKS:
        info = out / ".runinfo" / f"{name}.json"
        if info.is_file():
            r = read_json(info)
            rows.append(f"| {name} | {r['profile']} | {r['finished']} | {r['seconds']:.0f} | {r.get('note', '')} |")
    total = sum(read_json(p)["seconds"] for p in (out / ".runinfo").glob("*.json"))
    text = ("| notebook | profile | finished | wall time (s) | note |\n|---|---|---|---|---|\n" + "\n".join(rows)
            + f"\n\nTotal wall time {total / 60:.1f} min (each notebook's own last run; a notebook that found its "
            + f"results cached took seconds). Machine of the latest run ({profile}): {machine()}.\n")
    if results is not None:
        tables = sorted(results.glob("*/tables/*.json"))
        if tables:
            text += ("\n| cached result | computed in (s) |\n|---|---|\n"
                     + "\n".join(f"| {p.parent.parent.name}/{p.stem} | {read_json(p).get('seconds', float('nan')):.0f} |"
                                 for p in tables) + "\n")
        for label, pattern in (("Prompt tuning", "*/prompts/*/*/metrics.json"),
                               ("The transfer-method runs (initialisation, PANDA, baselines)",
                                "*/transfer_methods/*/*/*/metrics.json")):
            done = [m for m in (read_json(p) for p in sorted(results.glob(pattern))) if m.get("finished")]
            if done:
                text += (f"\n{label} took {sum(m['seconds'] for m in done) / 60:.1f} min for {len(done)} prompts "
                         f"({sum(m['steps'] for m in done)} optimiser steps in all).\n")
    (out / "run_summary.md").write_text(text, encoding="utf-8")


def _hide_injected_parameters(path: Path) -> None:
    """Fold papermill's injected-parameters cell in the book, like the template's own parameters cell."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        tags = cell.metadata.setdefault("tags", [])
        if "injected-parameters" in tags and "hide-cell" not in tags:
            tags.append("hide-cell")
    nbformat.write(nb, path)


def _parse_param(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or key != "overrides":
        raise ConfigError(f"parameters are given as overrides='{{...json...}}', got {text!r}")
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"overrides must be JSON: {exc.msg}") from None
    if not isinstance(parsed, dict):
        raise ConfigError("overrides must be a JSON object, e.g. overrides='{\"seeds\": [0]}'")
    return key, parsed


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lib.runner", description=__doc__.splitlines()[0])
    ap.add_argument("--profile", required=True, choices=sorted(PROFILES))
    ap.add_argument("--out", default=str(REPO / "book" / "experiments"), help="folder for the executed notebooks")
    ap.add_argument("--results", default=str(REPO / "results"), help="folder for prompts, tables and scores")
    ap.add_argument("--only", nargs="*", help=f"notebooks to run (default all): {' '.join(NOTEBOOKS)}")
    ap.add_argument("-p", "--param", action="append", default=[], help="overrides='{\"seeds\": [0]}'")
    ap.add_argument("--force", action="store_true", help="run even if nothing changed")
    args = ap.parse_args(argv)
    try:
        overrides: dict[str, Any] = {}
        for text in args.param:
            overrides.update(_parse_param(text)[1])
        records = run_profile(args.profile, args.out, results_dir=args.results, only=args.only, overrides=overrides,
                              force=args.force)
    except (ConfigError, NotebookFailed) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for r in records:
        print(f"{r['notebook']:<22} {r['status']:<8} {r.get('seconds', 0):>8.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
