"""The cascade driver: M1 → candidates → VAE → embeddings → M2 (paper §4–§5).

Every step is a plain function of tables and configs, so the local CLI, the
benchmark and a later Ray Train driver share them:

1. :func:`train_sampler` trains M1 on the training users (early stopping on
   the validation users);
2. :func:`candidate_arrays` turns M1's output into r_t and y^{M1} per user;
3. :func:`train_encoder` trains the VAE on the training users' past category
   interactions, :func:`embed_table` embeds every user's past ones (μ);
4. :func:`train_scorer` trains M2 on the candidates.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace

import numpy as np
import torch

from ccrec.data.prepared import PreparedData
from ccrec.data.tables import CandidateTable, UserTable, make_loader
from ccrec.metrics import ranking_metrics
from ccrec.models.base import TrainConfig
from ccrec.models.cascade import CandidateConfig, CascadeConfig, CCRec, candidates_from_m1
from ccrec.models.encoder import CategoryVAE
from ccrec.models.sampler import MLESampler
from ccrec.models.scorer import PrecisionScorer, ScorerConfig
from ccrec.train.loop import FitResult, TrainStep, evaluate_epoch, fit, fit_tables

log = logging.getLogger(__name__)

SPLITS = ("train", "valid", "warm_test", "cold_test")


def build_tables(prepared: PreparedData, config: CascadeConfig) -> dict[str, UserTable]:
    """One :class:`UserTable` per split of the prepared data."""
    return {
        name: UserTable(prepared.split(name), prepared.num_categories, config.max_past,
                        config.encoder.item_profile_dim)
        for name in SPLITS
    }


def _seeded(train: TrainConfig, seed: int) -> TrainConfig:
    return replace(train, seed=train.seed + seed)


def train_sampler(
    tables: dict[str, UserTable], num_categories: int, config: CascadeConfig
) -> tuple[MLESampler, FitResult]:
    """Stage 1: M1 on the training users, early-stopped on validation NLL."""
    torch.manual_seed(config.seed)
    model = MLESampler(num_categories, config.max_past, config.sampler)
    result = fit_tables(model, tables["train"], tables.get("valid"),
                        _seeded(config.train_sampler, config.seed), desc="M1")
    return model, result


def train_encoder(
    tables: dict[str, UserTable], feature_cardinalities: list[int], num_categories: int,
    config: CascadeConfig,
) -> tuple[CategoryVAE, FitResult]:
    """Stage 2: the VAE on the training users' past category interactions."""
    torch.manual_seed(config.seed + 1)
    model = CategoryVAE(feature_cardinalities, num_categories, config.encoder)
    valid = tables["valid"].interactions() if "valid" in tables else None
    result = fit_tables(model, tables["train"].interactions(), valid,
                        _seeded(config.train_encoder, config.seed + 1), desc="VAE")
    return model, result


@torch.no_grad()
def candidate_arrays(
    sampler: MLESampler, table: UserTable, config: CandidateConfig, batch_size: int = 2048
) -> tuple[np.ndarray, np.ndarray]:
    """r_t [N, R] and y^{M1} [N, R] for every user of ``table``."""
    sampler.eval()
    cands, probs = [], []
    for batch in make_loader(table, batch_size, shuffle=False):
        c, p = candidates_from_m1(sampler(batch.past_categories), batch.past_categories, config)
        cands.append(c.numpy())
        probs.append(p.numpy())
    return np.concatenate(cands), np.concatenate(probs)


@torch.no_grad()
def embed_table(encoder: CategoryVAE | None, table: UserTable,
                batch_size: int = 1024) -> np.ndarray:
    """μ of every past category interaction: [N, k, E] (E = 0 without an encoder)."""
    if encoder is None:
        return np.zeros((len(table), table.max_past, 0), np.float32)
    encoder.eval()
    out = [
        encoder.embed(b.user_features, b.past_profiles, b.past_categories).numpy()
        for b in make_loader(table, batch_size, shuffle=False)
    ]
    return np.concatenate(out)


def scorer_validation(table: CandidateTable, ks=(1, 3)):
    """A ``validate`` callback: loss, HR@k and Precision@k of M2 on candidate users."""

    @torch.no_grad()
    def validate(scorer: PrecisionScorer) -> dict[str, float]:
        loader = make_loader(table, 1024, shuffle=False)
        values = evaluate_epoch(TrainStep(scorer), loader)
        ranked = []
        for batch in loader:
            s = scorer.score_batch(batch).masked_fill(~batch.candidate_mask, -1.0)
            order = s.argsort(-1, descending=True)
            ranked.append(batch.candidates.gather(1, order).numpy())
        metrics = ranking_metrics(np.concatenate(ranked), table.users.future, ks)
        return {**values, **metrics}

    return validate


def train_scorer(
    cand_tables: dict[str, CandidateTable], num_categories: int, embedding_dim: int,
    scorer_config: ScorerConfig, train_config: TrainConfig, seed: int = 0,
) -> tuple[PrecisionScorer, FitResult]:
    """Stage 3: M2 on the training users' candidates, early-stopped on validation."""
    torch.manual_seed(seed + 2)
    model = PrecisionScorer(num_categories, embedding_dim, scorer_config)
    validate = scorer_validation(cand_tables["valid"]) if "valid" in cand_tables else None
    train_loader = make_loader(cand_tables["train"], train_config.batch_size, shuffle=True,
                               seed=train_config.seed + seed + 2)
    result = fit(model, train_loader, None, _seeded(train_config, seed + 2),
                 validate=validate, desc="M2")
    return model, result


@dataclass
class CascadeResult:
    """A trained cascade with what is needed to train more scorers on it.

    Args:
        model: the :class:`CCRec` cascade.
        config: its configuration.
        fits: the training record of each stage (``m1``, ``vae``, ``m2``).
        tables: the user tables per split.
        embeddings: VAE embeddings per split.
        seconds: wall time per stage and in total.
    """

    model: CCRec
    config: CascadeConfig
    fits: dict[str, FitResult]
    tables: dict[str, UserTable]
    embeddings: dict[str, np.ndarray]
    seconds: dict[str, float]

    def candidate_tables(self, candidates: CandidateConfig, use_vae: bool = True,
                         splits: tuple[str, ...] = ("train", "valid")
                         ) -> dict[str, CandidateTable]:
        out = {}
        for name in splits:
            cands, probs = candidate_arrays(self.model.sampler, self.tables[name], candidates)
            emb = self.embeddings[name] if use_vae else self.embeddings[name][..., :0]
            out[name] = CandidateTable(self.tables[name], cands, probs, emb)
        return out

    def with_scorer(self, scorer_config: ScorerConfig,
                    candidates: CandidateConfig | None = None,
                    train_config: TrainConfig | None = None) -> tuple[CCRec, FitResult]:
        """Train another M2 on this cascade's M1 and VAE (ablations, |r_t| sweep)."""
        candidates = candidates or self.config.candidates
        tables = self.candidate_tables(candidates, scorer_config.use_vae)
        emb_dim = self.model.encoder.latent_dim if self.model.encoder is not None else 0
        scorer, result = train_scorer(
            tables, self.model.num_categories, emb_dim, scorer_config,
            train_config or self.config.train_scorer, self.config.seed,
        )
        model = CCRec(self.model.sampler, self.model.encoder if scorer_config.use_vae else None,
                      scorer, candidates)
        return model.eval(), result


def train_cascade(prepared: PreparedData, config: CascadeConfig) -> CascadeResult:
    """Train the three stages in order and return the cascade."""
    started = time.perf_counter()
    seconds: dict[str, float] = {}
    tables = build_tables(prepared, config)
    seconds["tables"] = time.perf_counter() - started

    t = time.perf_counter()
    sampler, m1_fit = train_sampler(tables, prepared.num_categories, config)
    seconds["m1"] = time.perf_counter() - t

    t = time.perf_counter()
    encoder, vae_fit = train_encoder(
        tables, prepared.feature_cardinalities, prepared.num_categories, config)
    embeddings = {name: embed_table(encoder, table) for name, table in tables.items()}
    seconds["vae"] = time.perf_counter() - t

    t = time.perf_counter()
    partial = CascadeResult(
        model=CCRec(sampler, encoder, PrecisionScorer(prepared.num_categories,
                    encoder.latent_dim, config.scorer), config.candidates),
        config=config, fits={"m1": m1_fit, "vae": vae_fit}, tables=tables,
        embeddings=embeddings, seconds=seconds,
    )
    model, m2_fit = partial.with_scorer(config.scorer)
    seconds["m2"] = time.perf_counter() - t
    seconds["total"] = time.perf_counter() - started
    partial.model = model
    partial.fits["m2"] = m2_fit
    log.info("cascade trained in %.1fs: %s", seconds["total"], seconds)
    return partial
