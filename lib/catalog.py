"""The named profiles and their transfer studies: data, not code.

Kept apart from `lib.profiles` and `lib.transfer_study` (the classes) so that adding or changing a
profile does not change `lib.store.code_version()`: a profile's values enter every cache key of the
results computed with it (`Profile.as_dict()`, the study's fields), so only those results change.

- smoke: a tiny random BERT and synthetic tasks; minutes on CPU; what the tests execute;
- mini: all-MiniLM-L6-v2 on the real data available offline (../shared/data or the hub);
- paper / paper_t5: roberta-base / t5-base with the references' tasks and hyper-parameters (GPU, hub).
"""
from __future__ import annotations

CACHE_NEUTRAL = True  # lib.code_identity: nothing here changes what a cached result contains

from types import MappingProxyType
from typing import Mapping

from .data import DataConfig
from .profiles import Profile
from .transfer_study import TransferStudy
from .tuning import TuneConfig

def _paper(name: str, model: str, lr: float, lr_text: str, epochs: int, **readout) -> Profile:
    """The references' set-up (Robust-Neurons' configs): the two paper profiles differ in backbone, lr,
    epoch budget (76 RoBERTa, 200 T5; early stopping after 10 dev evaluations without improvement)
    and readout (RoBERTa: no-space verbalizer ids, zero position embeddings on the prompt slots)."""
    return Profile(
        name=name, model=model, tasks=("sst2", "imdb", "mrpc", "qqp", "mnli", "qnli"), seeds=(0, 1, 2, 3, 4),
        tune=TuneConfig(prompt_length=100, lr=lr, batch_size=16, max_steps=30000, max_epochs=float(epochs),
                        eval_every=1000, max_length=128, patience=10),
        data=DataConfig(), adversarial={"sst2": "adv_sst2", "qqp": "adv_qqp", "mnli": "adv_mnli", "qnli": "adv_qnli"},
        description=f"{model} as Robust-Neurons (lr {lr_text}, 100 tokens, batch 16, {epochs} epochs); GPU and hub",
        **readout)


PROFILES: Mapping[str, Profile] = MappingProxyType({
    "smoke": Profile(
        name="smoke", model="tiny-bert", tasks=("synthetic", "synthetic_pair"), seeds=(0, 1),
        tune=TuneConfig(prompt_length=8, lr=0.3, batch_size=16, max_steps=150, eval_every=50, max_length=32),
        data=DataConfig(source="local"), adversarial={"synthetic": "synthetic_adv"},
        suppression_fractions=(0.0, 0.05, 0.1), n_random_draws=2, top_fraction=0.05, threshold_examples=200,
        synthetic=True, description="tiny random BERT, synthetic separable tasks: tests the pipeline, not science"),
    "mini": Profile(
        name="mini", model="all-MiniLM-L6-v2", tasks=("sst2", "imdb", "newsgroups", "reuters", "mrpc", "qnli", "rte"),
        seeds=(0, 1, 2, 3, 4),  # five prompts per task, as the references: intervals resample prompts
        tune=TuneConfig(prompt_length=20, lr=0.02, batch_size=32, max_steps=200, eval_every=50, max_length=64),
        data=DataConfig(data_root="../shared/data", max_train=5000, max_dev=300, max_test=500,
                        carve_train_from_test=True),
        adversarial={"sst2": "adv_sst2", "qnli": "adv_qnli", "rte": "adv_rte"},
        suppression_fractions=(0.0, 0.01, 0.05), n_random_draws=8, threshold_examples=1000,
        task_tune={"imdb": {"max_length": 128}},  # reviews: 64 tokens held too little (recipe screen)
        description="all-MiniLM-L6-v2 on the data available offline; 2 CPU cores"),
    "class": Profile(
        name="class", model="all-MiniLM-L6-v2", tasks=("sst2", "newsgroups"), seeds=(0,),
        tune=TuneConfig(prompt_length=20, lr=0.02, batch_size=16, max_steps=60, eval_every=20, max_length=64),
        # dev 300 as mini: on 100 dev examples the learned gate's interval cannot clear SST-2's dev majority
        data=DataConfig(data_root="../shared/data", max_train=1000, max_dev=300, max_test=200,
                        carve_train_from_test=True),
        adversarial={"sst2": "adv_sst2"}, suppression_fractions=(0.0, 0.01, 0.05), n_random_draws=1,
        threshold_examples=200,
        # SST-2 stayed at its majority class with 60 steps of batch 16; the class recipe screen (dev only,
        # results/class/recipe_search.csv) chose 200 steps of batch 32 at lr 0.02
        task_tune={"sst2": {"max_steps": 200, "batch_size": 32, "eval_every": 50}},
        description="a 90-minute lab (book/teaching.md): all-MiniLM-L6-v2, SST-2 (200 steps of batch 32) and "
                    "20 Newsgroups (60 steps of batch 16), one seed, 1,000 training examples"),
    "paper": _paper("paper", "roberta-base", lr=1e-3, lr_text="1e-3", epochs=76, verbalizer_space=False,
                    prompt_positions="zero"),
    "paper_t5": _paper("paper_t5", "t5-base", lr=5e-3, lr_text="5e-3", epochs=200),
})


def _paper_study(projector_target: str) -> TransferStudy:
    """Su et al.'s set-up: ON at the readout positions, the flattened-prompt projector into the other backbone."""
    return TransferStudy(pairs=(("sst2", "imdb"), ("imdb", "sst2"), ("mnli", "qnli"), ("qqp", "mrpc"),
                                ("sst2", "mrpc"), ("qnli", "imdb")), seeds=(0, 1, 2), steps=5000, eval_every=250,
                         projector_train=("sst2", "qqp", "mnli"), projector_heldout=("imdb", "mrpc", "qnli"),
                         projector_seeds=(0, 1, 2), projector_target=projector_target, projector_flat=True,
                         on_positions="readout")


STUDIES: Mapping[str, TransferStudy] = MappingProxyType({
    "smoke": TransferStudy(pairs=(("synthetic", "synthetic_pair"), ("synthetic_pair", "synthetic")), seeds=(0, 1),
                           steps=60, eval_every=20, projector_train=("synthetic",),
                           projector_heldout=("synthetic_pair",), projector_seeds=(0,),
                           projector_distance_steps=200, projector_task_steps=30, projector_hidden=64),
    # two pairs within sentiment, one across types (topic -> sentiment) as the control; the projector is
    # trained and judged on tasks whose prompts learned (see the prompt-tuning chapter)
    "mini": TransferStudy(pairs=(("sst2", "imdb"), ("imdb", "sst2"), ("newsgroups", "sst2")), seeds=(0, 1),
                          steps=100, eval_every=20, projector_train=("sst2", "newsgroups"),
                          projector_heldout=("imdb", "reuters"), projector_seeds=(0, 1)),
    # one pair into the task the class prompt learns (SST-2 at 60 steps stays near chance), 12 steps: the
    # whole class run stays within 10 minutes on 2 cores
    "class": TransferStudy(pairs=(("sst2", "newsgroups"),), seeds=(0,), steps=12,
                           eval_every=6, projector_train=("sst2",), projector_heldout=("newsgroups",),
                           projector_seeds=(0,), projector_distance_steps=100, projector_task_steps=20,
                           projector_hidden=64),
    "paper": _paper_study(projector_target="paper_t5"),
    "paper_t5": _paper_study(projector_target="paper"),  # T5 prompts projected into RoBERTa, not into T5 itself
})
