"""One-off migration (issue 10): move the committed mini tuning runs into folders keyed by their signature.

Before: results/<profile>/<part>/prompts/<task>/seed<S>/ and .../transfer_methods/<arm>/<pair>/seed<S>/,
their config.json holding the old signature (configuration, n_train, n_dev). After: the same files
in <that folder>/<fingerprint of the new signature>/, config.json and metrics.json holding the new
signature (with data hashes and source/teacher digests). The prompts themselves are not touched;
the script checks that the old signature's configuration equals what the profile asks today.

    python scripts/migrate_keyed_runs.py --profile mini
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from lib.experiments import Experiment
from lib.io import read_json, write_json
from lib.store import fingerprint
from lib.transfer_study import TransferMethods, get_study


def move(old: Path, signature: dict) -> None:
    saved = read_json(old / "config.json")
    for key in ("backbone", "head", "task", "n_train", "n_dev", "config"):
        if saved[key] != signature[key]:
            raise SystemExit(f"{old}: {key} differs ({saved[key]!r} vs {signature[key]!r}); not migrated")
    if saved.get("distill") != signature.get("distill"):
        raise SystemExit(f"{old}: distillation (beta or teacher) differs; not migrated")
    new = old / fingerprint(signature)
    new.mkdir()
    for f in list(old.iterdir()):
        if f.is_file():
            shutil.move(str(f), new / f.name)
    write_json(new / "config.json", signature)
    metrics = read_json(new / "metrics.json")
    if "signature" in metrics:
        metrics["signature"] = signature
    write_json(new / "metrics.json", metrics)
    print(f"{old} -> {new.name}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", default="mini")
    args = ap.parse_args()
    for control in (False, True):
        exp = Experiment(args.profile, "results", control=control, progress=False)
        for d in sorted(exp.root.glob("prompts/*/seed*")):
            if (d / "config.json").is_file():
                move(d, exp.run_signature(d.parent.name, int(d.name.removeprefix("seed"))))
        if control:
            continue
        tm = TransferMethods(exp, get_study(args.profile))
        for arm, source, target, seed in tm._runs():
            rel = Path(arm) / (target if arm == "baseline" else f"{source}_to_{target}") / f"seed{seed}"
            d = exp.root / "transfer_methods" / rel
            if not (d / "config.json").is_file():
                continue
            kwargs = {}
            cfg = tm._config(seed, None if arm == "baseline" else "source")
            if arm != "baseline":
                src = exp.prompt(source, seed)
                kwargs["source_prompt"] = src
                if arm == "panda":
                    kwargs.update(teacher_prompt=src, distill_beta=tm.beta_for(source, target, seed))
            sp = exp.splits(target)
            from lib.tuning import run_signature
            move(d, run_signature(cfg, exp.backbone, exp.task(target), sp["train"], sp["dev"], **kwargs))


if __name__ == "__main__":
    main()
