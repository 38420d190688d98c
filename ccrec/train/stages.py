"""The cascade's three stages as data: what each one builds, trains on and validates with.

Both trainers read this table: the local driver (:mod:`ccrec.train.cascade`)
and every Ray Train worker (:mod:`ccrec.train.stage_runner`). A stage's seeds
come from one place, :data:`SEED_OFFSET`: stage s initialises its model with
``cascade.seed + SEED_OFFSET[s]`` and trains (shuffling, dropout) with
``train.seed + cascade.seed + SEED_OFFSET[s]``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file
from torch import nn

from ccrec.bundle import WEIGHT_FILES
from ccrec.data.tables import CandidateTable, Table, UserTable, make_loader
from ccrec.metrics import ranking_metrics
from ccrec.models.base import TrainConfig
from ccrec.models.cascade import CascadeConfig
from ccrec.models.encoder import CategoryVAE
from ccrec.models.sampler import MLESampler
from ccrec.models.scorer import PrecisionScorer
from ccrec.train.loop import TrainStep, Validate, device_of, evaluate_epoch, loss_validation

STAGES = ("m1", "vae", "m2")
#: Each stage's name in a bundle (:data:`ccrec.bundle.WEIGHT_FILES`).
BUNDLE_STAGE = {"m1": "sampler", "vae": "encoder", "m2": "scorer"}
#: The one stage-seed table (see the module docstring).
SEED_OFFSET = {"m1": 0, "vae": 1, "m2": 2}
#: Cut-offs of the ranking metrics every stage that ranks validates with.
VALID_KS = (1, 3)


@dataclass(frozen=True)
class StageSpec:
    """One stage of one cascade: plain, picklable data (shipped to Ray workers).

    Args:
        stage: ``m1``, ``vae`` or ``m2``.
        num_categories, feature_cardinalities: from the prepared vocabulary.
        cascade: the cascade configuration (model and training settings).
        embedding_dim: E of the VAE embeddings M2 reads (M2 only; 0 = none).
    """

    stage: str
    num_categories: int
    feature_cardinalities: tuple[int, ...]
    cascade: CascadeConfig
    embedding_dim: int = 0

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, not {self.stage!r}")

    @property
    def seed(self) -> int:
        return self.cascade.seed + SEED_OFFSET[self.stage]

    @property
    def train(self) -> TrainConfig:
        """How the stage trains, with its seed from the stage-seed table."""
        c = self.cascade
        base = {"m1": c.train_sampler, "vae": c.train_encoder, "m2": c.train_scorer}[self.stage]
        return replace(base, seed=base.seed + self.seed)

    def build(self) -> nn.Module:
        """The stage's model, initialised with the stage's seed, or with the stage's
        weights in the ``warm_start`` bundle."""
        c = self.cascade
        torch.manual_seed(self.seed)
        model: nn.Module
        if self.stage == "m1":
            model = MLESampler(self.num_categories, c.max_past, c.sampler)
        elif self.stage == "vae":
            model = CategoryVAE(list(self.feature_cardinalities), self.num_categories, c.encoder)
        else:
            model = PrecisionScorer(self.num_categories, self.embedding_dim, c.scorer)
        if c.warm_start:
            weights = Path(c.warm_start) / WEIGHT_FILES[BUNDLE_STAGE[self.stage]]
            model.load_state_dict(load_file(str(weights)))
        return model

    def users(self, frame: pd.DataFrame) -> UserTable:
        """A frame of prepared examples as a :class:`UserTable`."""
        c = self.cascade
        return UserTable(frame, self.num_categories, c.max_past, c.encoder.item_profile_dim)

    def table(self, users: UserTable, candidates: CandidateTable | None = None) -> Table:
        """What the stage trains or validates on: the users (M1), their past
        interactions (VAE) or their candidates (M2, given)."""
        if self.stage == "m1":
            return users
        if self.stage == "vae":
            return users.interactions()
        if candidates is None:
            raise ValueError("M2 trains on candidates: pass the CandidateTable")
        return candidates

    def validator(self, table: Table) -> Validate:
        """The stage's ``validate`` callback on its validation ``table``."""
        if self.stage == "m1":
            return sampler_validation(table, self.num_categories)  # type: ignore[arg-type]
        if self.stage == "vae":
            return loss_validation(table)
        return scorer_validation(table)  # type: ignore[arg-type]


def sampler_validation(table: UserTable, num_categories: int, ks=VALID_KS) -> Validate:
    """M1's loss and its HR@k / F1@k … when its top categories are recommended."""
    loader = make_loader(table, 1024, shuffle=False)

    @torch.no_grad()
    def validate(sampler: nn.Module) -> dict[str, float]:
        values = evaluate_epoch(TrainStep(sampler), loader)
        top = min(max(ks), num_categories)
        device = device_of(sampler)
        ranked = [sampler.score(b.to(device))[:, 1:]  # type: ignore[operator]
                  .topk(top, -1).indices.cpu().numpy() + 1 for b in loader]
        return {**values, **ranking_metrics(np.concatenate(ranked), table.future, ks)}

    return validate


def combined(metrics: dict[str, float]) -> dict[str, float]:
    """``HR@1+Precision@3``: the one number M2 is early-stopped on (both goals)."""
    if "HR@1" in metrics and "Precision@3" in metrics:
        return {"HR@1+Precision@3": metrics["HR@1"] + metrics["Precision@3"]}
    return {}


def scorer_validation(table: CandidateTable, ks=VALID_KS) -> Validate:
    """M2's loss and HR@k / Precision@k … on validation users' candidates."""
    loader = make_loader(table, 1024, shuffle=False)

    @torch.no_grad()
    def validate(scorer: nn.Module) -> dict[str, float]:
        values = evaluate_epoch(TrainStep(scorer), loader)
        device = device_of(scorer)
        ranked = []
        for batch in loader:
            batch = batch.to(device)
            s = scorer.score_batch(batch).masked_fill(~batch.candidate_mask, -1.0)  # type: ignore[operator]
            ranked.append(batch.candidates.gather(1, s.argsort(-1, descending=True)).cpu().numpy())
        ranking = ranking_metrics(np.concatenate(ranked), table.users.future, ks)
        return {**values, **ranking, **combined(ranking)}

    return validate
