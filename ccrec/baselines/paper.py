"""The paper's baselines (§6.2), by their table names, for the evaluation harness.

Every entry is a factory ``(spec, train_config) -> CategoryRecommender`` with
an explicit import behind it (no lookup by class-name string): the harness
builds a :class:`DataSpec` once per data set and calls each factory, so
baselines with different constructor arguments (sequence length, user-feature
vocabularies, item-profile width) sit in one dict.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ccrec.baselines.clrec import CLRec
from ccrec.baselines.fmlprec import FMLPRec
from ccrec.baselines.mamba4rec import Mamba4Rec
from ccrec.baselines.melu import MeLU
from ccrec.baselines.sasrec import SASRec
from ccrec.baselines.tiger import TIGER
from ccrec.baselines.vaerec import VAERec, vaerec_plus
from ccrec.models.base import CategoryRecommender
from ccrec.train.loop import TrainConfig


@dataclass(frozen=True)
class DataSpec:
    """What a baseline's constructor may need to know about the data set.

    Args:
        num_categories: |C| (scores have C+1 columns, column 0 is padding).
        max_past: k, the width of ``past_categories`` in the batches.
        profile_dim: P, the width of the item profiles in the batches.
        feature_cardinalities: vocabulary size of each f_t column (0 = unknown).
    """

    num_categories: int
    max_past: int
    profile_dim: int
    feature_cardinalities: tuple[int, ...] = ()


BaselineFactory = Callable[[DataSpec, TrainConfig | None], CategoryRecommender]

PAPER_BASELINES: dict[str, BaselineFactory] = {
    "SASRec": lambda spec, train: SASRec(spec.num_categories, spec.max_past,
                                         train_config=train),
    "FMLPRec": lambda spec, train: FMLPRec(spec.num_categories, spec.max_past,
                                           train_config=train),
    "Mamba4Rec": lambda spec, train: Mamba4Rec(spec.num_categories, spec.max_past,
                                               train_config=train),
    "CLRec": lambda spec, train: CLRec(spec.num_categories, spec.max_past,
                                       train_config=train),
    "VAERec": lambda spec, train: VAERec(spec.num_categories, list(spec.feature_cardinalities),
                                         spec.profile_dim, train_config=train),
    "VAERec+": lambda spec, train: vaerec_plus(spec.num_categories,
                                               list(spec.feature_cardinalities),
                                               spec.profile_dim, train_config=train),
    "MeLU": lambda spec, train: MeLU(spec.num_categories, list(spec.feature_cardinalities),
                                     train_config=train),
    "TIGER": lambda spec, train: TIGER(spec.num_categories, spec.max_past, train_config=train),
}
