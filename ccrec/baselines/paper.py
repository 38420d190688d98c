"""The paper's baselines (§6.2), by their table names, for the evaluation harness.

Every entry is a factory ``(spec, train_config) -> CategoryRecommender`` with
an explicit import behind it (no lookup by class-name string); the neural
models come paired with their training settings in a
:class:`~ccrec.train.loop.Trainable`. The harness
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
from ccrec.models.base import CategoryRecommender, TrainConfig
from ccrec.train.loop import Trainable


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
    "SASRec": lambda spec, train: Trainable(SASRec(spec.num_categories, spec.max_past), train),
    "FMLPRec": lambda spec, train: Trainable(FMLPRec(spec.num_categories, spec.max_past), train),
    "Mamba4Rec": lambda spec, train: Trainable(Mamba4Rec(spec.num_categories, spec.max_past),
                                               train),
    "CLRec": lambda spec, train: Trainable(CLRec(spec.num_categories, spec.max_past), train),
    "VAERec": lambda spec, train: Trainable(VAERec(
        spec.num_categories, list(spec.feature_cardinalities), spec.profile_dim), train),
    "VAERec+": lambda spec, train: Trainable(vaerec_plus(
        spec.num_categories, list(spec.feature_cardinalities), spec.profile_dim), train),
    "MeLU": lambda spec, train: Trainable(MeLU(
        spec.num_categories, list(spec.feature_cardinalities)), train),
    "TIGER": lambda spec, train: Trainable(TIGER(spec.num_categories, spec.max_past), train),
}
