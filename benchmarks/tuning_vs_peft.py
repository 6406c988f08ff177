"""Prompt-tuning throughput: `lib` against PEFT's PromptTuningConfig, same backbone, batch, lengths.

    python benchmarks/tuning_vs_peft.py --model all-MiniLM-L6-v2 --accuracy-steps 100
    python benchmarks/tuning_vs_peft.py --model roberta-base-random --batch 8 --steps 3 --rounds 2
    python benchmarks/tuning_vs_peft.py --model tiny-bert --steps 2 --rounds 1 --out /tmp/b   # the test's run

Contenders, timed in alternating rounds in this one process (median examples/s per contender):
- `lib`: `lib.tuning.tune_prompt` itself (verbalizer logits at the mask slot only);
- `peft`: PEFT prompt tuning of the same model used as a masked LM is used in practice (the
  reference code too): full-vocabulary logits at every position, the loss read at the `<mask>`;
- `peft+verbalizer`: PEFT around the encoder with lib's verbalizer-only head (an ablation that
  shows how much of the gap is the head).
All run AdamW with the same learning rate, gradient clipping 1.0 and the same batch order; PEFT's
virtual tokens are initialised from lib's initial prompt. With --accuracy-steps N both lib and
PEFT are trained N steps on SST-2 and scored on its validation set.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import warnings
from pathlib import Path

import torch

from common import REPO, save, timed

from lib.data import DataConfig, load_splits
from lib.evaluation import evaluate, length_sorted_batches
from lib.models import Backbone, Encoded, load_backbone
from lib.prompt import init_prompt
from lib.tasks import get_task
from lib.tiny import build_base_sized_roberta, build_tiny_backbone, synthetic_task
from lib.tuning import TuneConfig, batch_indices, tune_prompt

MODELS = ("all-MiniLM-L6-v2", "roberta-base-random", "tiny-bert")
SHARED = REPO.parent / "shared" / "data"


def load_model(name: str, workdir: Path) -> Backbone:
    if name == "roberta-base-random":
        return load_backbone(str(build_base_sized_roberta(workdir / "roberta-base-random")))
    if name == "tiny-bert":
        return load_backbone(str(build_tiny_backbone("bert", workdir / "tiny-bert")))
    return load_backbone(name)


def load_task(model: str, workdir: Path, n_train: int):
    """SST-2 from ../shared/data when present, else the synthetic task (throughput does not depend on words)."""
    if (SHARED / "README.md").is_file() and model != "tiny-bert":
        task = get_task("sst2")
        splits = load_splits(task, DataConfig(data_root=str(SHARED), max_train=n_train, max_dev=200))
    else:
        task = synthetic_task(workdir / "data", n_train=max(n_train, 64), n_test=64)
        splits = load_splits(task, DataConfig(data_root=str(workdir / "data"), source="local"))
    return task, splits


class PeftTuner:
    """PEFT prompt tuning of `backbone` with lib's loss; `full_vocab` picks the head (see module doc)."""

    def __init__(self, backbone: Backbone, task, cfg: TuneConfig, full_vocab: bool) -> None:
        from peft import PromptTuningConfig, TaskType, get_peft_model

        self.b, self.cfg, self.full_vocab = backbone, cfg, full_vocab
        base = copy.deepcopy(backbone.model if full_vocab else backbone.encoder)
        self.n_virtual = cfg.prompt_length - 1  # + the <mask> input token = lib's prompt length
        with warnings.catch_warnings():  # PEFT calls a transformers API deprecated in v5 (FutureWarning)
            warnings.simplefilter("ignore", FutureWarning)
            self.model = get_peft_model(base, PromptTuningConfig(task_type=TaskType.FEATURE_EXTRACTION,
                                                                 num_virtual_tokens=self.n_virtual))
        start = init_prompt(backbone, cfg.prompt_length, cfg.init, cfg.seed)[1:]
        emb = self.model.prompt_encoder["default"].embedding
        with torch.no_grad():
            emb.weight.copy_(start)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(self.params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.verbalizer = backbone.task_verbalizer_ids(task)
        self.mask_id = backbone.tokenizer.mask_token_id

    def logits(self, data: Encoded, idx: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        batch = self.b.collate(data, idx)
        n = batch.input_ids.shape[0]
        ids = torch.cat([torch.full((n, 1), self.mask_id), batch.input_ids], dim=1)
        attn = torch.cat([torch.ones(n, 1, dtype=batch.attention_mask.dtype), batch.attention_mask], dim=1)
        # PEFT prompt tuning ignores token_type_ids (it warns); all zero for SST-2's single sentences anyway
        out = self.model(input_ids=ids, attention_mask=attn)
        if self.full_vocab:
            if hasattr(out, "logits"):
                vocab_logits = out.logits  # (batch, virtual + text, vocab), the masked LM's own head
            else:  # an encoder with tied embeddings (MiniLM): the same full-vocabulary product
                vocab_logits = out.last_hidden_state @ self.b.word_embeddings.weight.T
            return vocab_logits[:, self.n_virtual, self.verbalizer], batch.labels
        return self.b.mask_slot_logits(out.last_hidden_state[:, self.n_virtual], self.verbalizer), batch.labels

    def train(self, data: Encoded, steps: int, start: int = 0) -> None:
        self.model.train(False)
        for step in range(start, start + steps):
            logits, labels = self.logits(data, batch_indices(len(data), self.cfg.batch_size, self.cfg.seed, step))
            loss = torch.nn.functional.cross_entropy(logits.float(), labels)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.params, self.cfg.grad_clip or float("inf"))
            self.opt.step()

    @torch.no_grad()
    def accuracy(self, data: Encoded) -> float:
        right = 0
        for idx in length_sorted_batches(data, 64):
            logits, labels = self.logits(data, idx)
            right += int((logits.argmax(1) == labels).sum())
        return right / len(data)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=MODELS, default="all-MiniLM-L6-v2")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--max-length", type=int, default=64)
    ap.add_argument("--prompt-length", type=int, default=20)
    ap.add_argument("--steps", type=int, default=5, help="optimiser steps per contender per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--accuracy-steps", type=int, default=0, help="train N steps on SST-2 and compare accuracy")
    ap.add_argument("--lr", type=float, default=0.02)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    work = Path(tempfile.mkdtemp(prefix="bench_peft_"))
    b = load_model(args.model, work)
    task, splits = load_task(args.model, work, n_train=max(2000, args.batch * (args.steps + 1)))
    train = b.encode(splits["train"], args.max_length)
    dev = b.encode(splits["dev"].iloc[:1], args.max_length)
    cfg = TuneConfig(prompt_length=args.prompt_length, lr=args.lr, batch_size=args.batch, max_steps=args.steps,
                     eval_every=args.steps, max_length=args.max_length, device="cpu")
    tuners = {"peft": PeftTuner(b, task, cfg, full_vocab=True), "peft+verbalizer": PeftTuner(b, task, cfg, False)}
    runs = {"lib": lambda: tune_prompt(b, task, train, dev, cfg, progress=False)}
    runs.update({k: (lambda t=t: t.train(train, args.steps)) for k, t in tuners.items()})
    for fn in runs.values():  # warm-up: allocator, thread pools, lazy initialisation
        fn()
    per_round: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(args.rounds):
        for name, fn in runs.items():
            per_round[name].append(args.steps * args.batch / timed(fn))
    eps = {k: statistics.median(v) for k, v in per_round.items()}
    result = {"model": args.model, "batch": args.batch, "max_length": args.max_length,
              "prompt_length": args.prompt_length, "steps_per_round": args.steps, "rounds": args.rounds,
              "examples_per_s": eps, "examples_per_s_rounds": per_round,
              "ratio_lib_over_peft": eps["lib"] / eps["peft"],
              "ratio_lib_over_peft_verbalizer": eps["lib"] / eps["peft+verbalizer"]}
    print(f"{args.model}: lib {eps['lib']:.1f} ex/s, peft {eps['peft']:.1f}, peft+verbalizer "
          f"{eps['peft+verbalizer']:.1f}; lib/peft = {result['ratio_lib_over_peft']:.2f}x")
    if args.accuracy_steps:
        if task.name != "sst2":
            raise SystemExit("--accuracy-steps needs SST-2 in ../shared/data")
        full = load_splits(task, DataConfig(data_root=str(SHARED), max_train=5000))
        train5k, test = b.encode(full["train"], args.max_length), b.encode(full["test"], args.max_length)
        acc_cfg = TuneConfig(**{**cfg.__dict__, "max_steps": args.accuracy_steps, "eval_every": args.accuracy_steps})
        lib_prompt = tune_prompt(b, task, train5k, dev, acc_cfg, progress=False).prompt
        peft = PeftTuner(b, task, acc_cfg, full_vocab=True)
        peft.train(train5k, args.accuracy_steps)
        result["accuracy"] = {"steps": args.accuracy_steps, "n_test": len(test),
                              "lib": evaluate(b, lib_prompt, task, test, max_length=args.max_length).accuracy,
                              "peft": peft.accuracy(test)}
        print(f"SST-2 validation accuracy after {args.accuracy_steps} steps: lib {result['accuracy']['lib']:.3f}, "
              f"peft {result['accuracy']['peft']:.3f}")
    save(f"tuning_vs_peft_{args.model}", result, args.out)
    return result


if __name__ == "__main__":
    main()
