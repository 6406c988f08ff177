"""Tiny random backbones of the real classes and a synthetic task: the CPU-minutes test bed.

No checkpoint of RoBERTa or T5 can be downloaded everywhere the compendium runs (CI, a class
without internet), so the code paths are proven on the same model classes at tiny sizes, with
tokenizers built locally from a small word list that holds every registry verbalizer word.
Used by the tests and by the `smoke` profile.
"""
from __future__ import annotations

CACHE_NEUTRAL = True  # lib.code_identity: nothing here changes what a cached result contains

import json
from pathlib import Path

import numpy as np
import torch

from .errors import unknown
from .models import quiet_transformers
from .tasks import TASKS, LocalSource, Task
from .validation import check_path_component

FAMILIES = ("bert", "roberta", "t5")
SIGNAL_WORDS = ("good", "bad")
FILLER_WORDS = tuple(f"w{i}" for i in range(40)) + ("the", "a", "movie", "film", "is", "was", "and", "it")


def _words() -> list[str]:
    verbalizers = {w for t in TASKS.values() for w in (*t.mlm_verbalizer, *t.t5_verbalizer)}
    return sorted(set(SIGNAL_WORDS) | set(FILLER_WORDS) | verbalizers)


def _bert_tokenizer():
    from transformers import BertTokenizer

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = sorted({c for w in _words() for c in w})
    vocab = specials + _words() + [c for c in chars if c not in _words()] + [f"##{c}" for c in chars]
    return BertTokenizer(vocab={tok: i for i, tok in enumerate(vocab)})


def _roberta_tokenizer():
    from transformers import RobertaTokenizer

    vocab = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    merges: list[str] = []
    seen = set(vocab)

    def add(tok: str) -> None:
        if tok not in seen:
            seen.add(tok)
            vocab.append(tok)

    verbalizers = sorted({w for t in TASKS.values() for w in t.mlm_verbalizer})
    # byte-level BPE: merges that build each whole word after a space ("Ġword"), and, as in the real
    # RoBERTa vocabulary, each verbalizer word without one (the references score those ids)
    for word in [*("Ġ" + w for w in _words()), *verbalizers]:
        for c in word:
            add(c)
        cur = word[0]
        for c in word[1:]:
            merge = f"{cur} {c}"
            if merge not in merges:
                merges.append(merge)
            cur += c
            add(cur)
    return RobertaTokenizer(vocab={t: i for i, t in enumerate(vocab)}, merges=[tuple(m.split(" ")) for m in merges])


def _t5_tokenizer():
    from transformers import T5Tokenizer

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    pieces += [("▁" + w, -1.0) for w in _words()]
    pieces += [(c, -5.0) for c in sorted({c for w in _words() for c in w})]
    return T5Tokenizer(vocab=pieces, extra_ids=0)


# Weight initialisation std per family (T5: half its initializer_factor). Far above BERT's usual 0.02,
# so that a random tiny network's outputs depend on its input as a trained one's do, but not so far
# that attention saturates: at 0.5 a tiny BERT/RoBERTa's attention is nearly one-hot (mean largest
# attention weight 0.86-0.90 in layer 1, three seeds) and a prompt can barely steer it, so whether
# prompt tuning learned depended on the random draw (best dev 0.60-0.91 over four RoBERTa seeds);
# at 0.2 it is spread (0.33-0.39) and every seed learns. T5 scales its init by 1/sqrt(d_model) and
# learns at factor 1.0 (its default), not below.
INIT_SCALE = {"bert": 0.2, "roberta": 0.2, "t5": 0.5}


def _save_pretrained_atomically(path: Path, model, tok) -> None:
    """`save_pretrained` of model and tokenizer into a fresh sibling folder, then renamed onto `path`:
    a process that loads `path` while another builds it (parallel units of the smoke profile, see
    `lib.units`) never sees a half-written model. An existing folder at `path` is replaced."""
    import os
    import shutil
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".build", dir=path.parent))
    try:
        with quiet_transformers():
            model.save_pretrained(tmp)
            tok.save_pretrained(tmp)
        # mkdtemp gives 0700 and safetensors' save_file 0600: every result follows the user's umask (lib.io)
        mask = _umask()
        os.chmod(tmp, 0o777 & ~mask)
        for sub in tmp.rglob("*"):
            os.chmod(sub, (0o777 if sub.is_dir() else 0o666) & ~mask)
        old = None
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.rename(path, old / "m")
        os.rename(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _umask() -> int:
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask


def _write_if_changed(path: Path, text: str) -> None:
    """Write `text` atomically (`lib.io`) unless the file already holds exactly it: the synthetic
    tasks are rewritten on every `Experiment.task` call, and parallel units read them meanwhile."""
    from .io import write_text

    try:
        if path.read_text(encoding="utf-8") == text:
            return
    except OSError:
        pass
    write_text(path, text)


def build_tiny_backbone(family: str, path: str | Path, seed: int = 0, init_scale: float | None = None) -> Path:
    """Write a tiny random model of `family` and its tokenizer to `path`; return the path.

    bert/roberta are saved as *ForMaskedLM (head 'mlm'); T5 as T5ForConditionalGeneration.
    `init_scale` is the weight initialisation std (default `INIT_SCALE[family]`).
    """
    from transformers import (BertConfig, BertForMaskedLM, RobertaConfig, RobertaForMaskedLM, T5Config,
                              T5ForConditionalGeneration)

    if family not in FAMILIES:
        raise unknown("tiny model family", family, FAMILIES)
    path = Path(path)
    init_scale = INIT_SCALE[family] if init_scale is None else init_scale
    torch.manual_seed(seed)
    common = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                  max_position_embeddings=160, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                  initializer_range=init_scale)
    if family == "bert":
        tok = _bert_tokenizer()
        model = BertForMaskedLM(BertConfig(vocab_size=len(tok), pad_token_id=tok.pad_token_id, **common))
    elif family == "roberta":
        tok = _roberta_tokenizer()
        model = RobertaForMaskedLM(RobertaConfig(vocab_size=len(tok), pad_token_id=tok.pad_token_id,
                                                 bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                                 type_vocab_size=1, **common))
    else:
        tok = _t5_tokenizer()
        model = T5ForConditionalGeneration(T5Config(
            vocab_size=len(tok), d_model=32, d_kv=16, d_ff=64, num_layers=2, num_decoder_layers=2, num_heads=2,
            dropout_rate=0.0, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
            decoder_start_token_id=tok.pad_token_id, initializer_factor=init_scale * 2))
    _save_pretrained_atomically(path, model, tok)
    return path


def build_base_sized_roberta(path: str | Path, seed: int = 0) -> Path:
    """A roberta-base-sized RobertaForMaskedLM (12 x 768, FFN 3072, 50,265-word output layer) with random
    weights and the tiny tokenizer: for speed benchmarks, where only the shapes matter, offline."""
    from transformers import RobertaConfig, RobertaForMaskedLM

    path = Path(path)
    torch.manual_seed(seed)
    tok = _roberta_tokenizer()
    model = RobertaForMaskedLM(RobertaConfig(vocab_size=50265, hidden_size=768, num_hidden_layers=12,
                                             num_attention_heads=12, intermediate_size=3072, max_position_embeddings=514,
                                             type_vocab_size=1, pad_token_id=tok.pad_token_id,
                                             bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id))
    _save_pretrained_atomically(path, model, tok)
    return path


def build_base_sized_t5(path: str | Path, seed: int = 0) -> Path:
    """A t5-base-sized T5ForConditionalGeneration (12 + 12 layers x 768, FFN 3072, 12 heads, 32,128-word
    vocabulary, tied embeddings) with random weights and the tiny tokenizer: for speed benchmarks,
    where only the shapes matter, offline."""
    from transformers import T5Config, T5ForConditionalGeneration

    path = Path(path)
    torch.manual_seed(seed)
    tok = _t5_tokenizer()
    model = T5ForConditionalGeneration(T5Config(
        vocab_size=32128, d_model=768, d_kv=64, d_ff=3072, num_layers=12, num_decoder_layers=12, num_heads=12,
        relative_attention_num_buckets=32, feed_forward_proj="relu", dropout_rate=0.0, tie_word_embeddings=True,
        pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, decoder_start_token_id=tok.pad_token_id))
    _save_pretrained_atomically(path, model, tok)
    return path


def synthetic_task(root: str | Path, *, name: str = "synthetic", n_train: int = 400, n_test: int = 200,
                   pair: bool = False, seed: int = 0, noise: float = 0.0) -> Task:
    """Write a separable sentiment-like task as JSONL under `root` and return its Task.

    Label 1 sentences contain 'good', label 0 sentences 'bad', among random filler words; a
    perfect prompt reaches 100 %. Pair tasks put the signal in the second text. With `noise`, that
    share of the test examples carries the opposite signal word (a crude 'adversarial' set).
    """
    check_path_component(name, "task name")  # <root>/<name>/train.jsonl
    rng = np.random.default_rng(seed)
    root = Path(root)
    files = {}
    for split, n in (("train", n_train), ("test", n_test)):
        rows = []
        for _ in range(n):
            label = int(rng.integers(2))
            words = list(rng.choice(FILLER_WORDS, size=int(rng.integers(3, 9))))
            flip = noise > 0 and split == "test" and rng.random() < noise
            shown = label if not flip else 1 - label
            words.insert(int(rng.integers(len(words) + 1)), SIGNAL_WORDS[0] if shown else SIGNAL_WORDS[1])
            text = " ".join(words)
            row = {"text": text, "label": label}
            if pair:
                row = {"first": " ".join(rng.choice(FILLER_WORDS, size=4)), "second": text, "label": label}
            rows.append(row)
        rel = f"{name}/{split}.jsonl"
        (root / name).mkdir(parents=True, exist_ok=True)
        _write_if_changed(root / rel, "".join(json.dumps(r) + "\n" for r in rows))
        files[split] = rel
    columns = ("first", "second") if pair else ("text",)
    return Task(name=name, task_type="sentiment", text_fields=columns, label_names=("negative", "positive"),
                mlm_verbalizer=("negative", "positive"), t5_verbalizer=("negative", "positive"),
                raw_labels={0: 0, 1: 1}, local=LocalSource("jsonl", files, columns, "label"),
                description="synthetic separable task (tests, smoke profile)")


def build_planted_backbone(path: str | Path, *, neuron: int = 5, seed: int = 0) -> tuple[Path, int]:
    """A one-layer BERT encoder (tied head) whose FFN neuron `neuron` alone carries the label.

    Wiring, all exact: 'good' / 'bad' embeddings carry +/- a signal on dimension 0 that no other
    token has; attention is uniform (zero queries and keys) and copies only dimension 0, so every
    position, the prompt's included, receives the sign of the signal; the planted neuron reads
    dimension 0, every other neuron's input weights are orthogonal to it (and to the all-ones
    direction that LayerNorm's mean subtraction leaks into); only the planted neuron writes to the
    two dimensions (1, 2) that the tied embeddings of 'positive' / 'negative' read. Suppressing it
    leaves the two logits exactly equal (chance); suppressing any other neuron changes nothing.
    Returns (path, neuron index).
    """
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    tok = _bert_tokenizer()
    hidden, width = 32, 64
    cfg = BertConfig(vocab_size=len(tok), hidden_size=hidden, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=width, max_position_embeddings=160, hidden_dropout_prob=0.0,
                     attention_probs_dropout_prob=0.0, initializer_range=0.5, pad_token_id=tok.pad_token_id)
    model = BertModel(cfg, add_pooling_layer=False)
    sig, out_pos, out_neg = 0, 1, 2
    ones = torch.ones(hidden)
    with torch.no_grad():
        emb = model.embeddings
        wired = [sig, out_pos, out_neg]
        others = [d for d in range(hidden) if d not in wired]
        for table in (emb.word_embeddings.weight, emb.position_embeddings.weight, emb.token_type_embeddings.weight):
            table[:, wired] = 0.0  # zero-mean rows, nothing on the wired dimensions: LayerNorm keeps them 0
            table[:, others] -= table[:, others].mean(dim=1, keepdim=True)
        direction = torch.zeros(hidden)
        direction[sig] = 1.0
        direction -= ones / hidden
        words = emb.word_embeddings.weight
        good, bad = tok.convert_tokens_to_ids(SIGNAL_WORDS[0]), tok.convert_tokens_to_ids(SIGNAL_WORDS[1])
        words[good] += 4.0 * direction
        words[bad] -= 4.0 * direction
        for word, dim in (("positive", out_pos), ("negative", out_neg)):
            words[tok.convert_tokens_to_ids(word)] = 0.0
            words[tok.convert_tokens_to_ids(word), dim] = 1.0
        layer = model.encoder.layer[0]
        att = layer.attention
        for lin in (att.self.query, att.self.key, att.self.value, att.output.dense):
            lin.weight.zero_()
            lin.bias.zero_()
        att.self.value.weight[sig, sig] = 1.0
        att.output.dense.weight[sig, sig] = 1.0
        w_in = layer.intermediate.dense.weight  # (width, hidden)
        no_sig = [d for d in range(hidden) if d != sig]
        w_in[:, sig] = 0.0  # orthogonal to the signal and to the all-ones direction
        w_in[:, no_sig] -= w_in[:, no_sig].mean(dim=1, keepdim=True)
        w_in[neuron] = 0.0
        w_in[neuron, sig] = 10.0
        layer.intermediate.dense.bias[neuron] = 0.0
        w_out = layer.output.dense.weight  # (hidden, width)
        w_out[[out_pos, out_neg], :] = 0.0
        w_out[out_pos, neuron] = 5.0
        w_out[out_neg, neuron] = -5.0
        layer.output.dense.bias[[out_pos, out_neg]] = 0.0
    _save_pretrained_atomically(Path(path), model, tok)
    return Path(path), neuron


def planted_prompt(backbone, length: int = 4, seed: int = 0) -> torch.Tensor:
    """A prompt for the planted backbone: zero-mean rows with nothing on the wired dimensions."""
    gen = torch.Generator().manual_seed(seed)
    prompt = torch.randn(length, backbone.embed_dim, generator=gen)
    prompt[:, :3] = 0.0
    prompt[:, 3:] -= prompt[:, 3:].mean(dim=1, keepdim=True)
    return prompt
