"""The local cascade driver: M1 → candidates → VAE → embeddings → M2 in one process (paper §4–§5).

Each stage is built, seeded and validated from the one stage table
(:mod:`ccrec.train.stages`) and trained by the one loop
(:func:`ccrec.train.loop.fit`), as on Ray (:mod:`ccrec.train.distributed`):

1. M1 on the training users, early-stopped on the validation users;
2. the VAE on the training users' past category interactions; it embeds
   every user's past ones (μ, :func:`embed_table`);
3. M1's candidates r_t and y^{M1} per user (:func:`candidate_arrays`);
4. M2 on the candidates, early-stopped on validation HR@1.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace

import numpy as np
import torch

from ccrec.data.prepared import PreparedData
from ccrec.data.tables import CandidateTable, Table, UserTable, make_loader
from ccrec.models.base import TrainConfig
from ccrec.models.cascade import CandidateConfig, CascadeConfig, CCRec, candidates_from_m1
from ccrec.models.encoder import CategoryVAE
from ccrec.models.sampler import MLESampler
from ccrec.models.scorer import PrecisionScorer, ScorerConfig
from ccrec.train.loop import FitResult, fit_tables
from ccrec.train.stages import StageSpec

log = logging.getLogger(__name__)

SPLITS = ("train", "valid", "warm_test", "cold_test")


def build_tables(prepared: PreparedData, config: CascadeConfig) -> dict[str, UserTable]:
    """One :class:`UserTable` per split of the prepared data."""
    return {
        name: UserTable(prepared.split(name), prepared.num_categories, config.max_past,
                        config.encoder.item_profile_dim)
        for name in SPLITS
    }


def train_stage(spec: StageSpec, train: Table, valid: Table | None) -> tuple[torch.nn.Module,
                                                                             FitResult]:
    """One stage in this process: built and seeded by ``spec``, validated on ``valid``
    (no validation when it is None or empty: every epoch trains, the last weights stay)."""
    model = spec.build()
    validate = spec.validator(valid) if valid is not None and len(valid) else None
    return model, fit_tables(model, train, None, spec.train, validate=validate,
                             desc=spec.stage.upper())


@torch.no_grad()
def candidate_arrays(
    sampler: MLESampler, table: UserTable, config: CandidateConfig, batch_size: int = 2048
) -> tuple[np.ndarray, np.ndarray]:
    """r_t [N, R] and y^{M1} [N, R] for every user of ``table``."""
    sampler.eval()
    if not len(table):  # an empty split
        width = min(config.size, sampler.num_categories) + (
            table.max_past if config.include_past else 0)
        return np.zeros((0, width), np.int64), np.zeros((0, width), np.float32)
    cands, probs = [], []
    for batch in make_loader(table, batch_size, shuffle=False):
        c, p = candidates_from_m1(sampler(batch.past_categories), batch.past_categories, config)
        cands.append(c.numpy())
        probs.append(p.numpy())
    return np.concatenate(cands), np.concatenate(probs)


@torch.no_grad()
def embed_table(encoder: CategoryVAE | None, table: UserTable,
                batch_size: int = 1024) -> np.ndarray:
    """μ of every user's profile and past category interactions: [N, k+1, E]
    (slot 0 the profile; E = 0 without an encoder)."""
    if encoder is None or not len(table):
        dim = 0 if encoder is None else encoder.latent_dim
        return np.zeros((len(table), table.max_past + 1, dim), np.float32)
    encoder.eval()
    out = [
        encoder.user_embeddings(b.user_features, b.past_profiles, b.past_categories).numpy()
        for b in make_loader(table, batch_size, shuffle=False)
    ]
    return np.concatenate(out)


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
        config = replace(self.config, scorer=scorer_config, candidates=candidates,
                         train_scorer=train_config or self.config.train_scorer)
        tables = self.candidate_tables(candidates, scorer_config.use_vae)
        use_encoder = scorer_config.use_vae and self.model.encoder is not None
        spec = StageSpec("m2", self.model.num_categories, (), config,
                         embedding_dim=self.model.encoder.latent_dim if use_encoder else 0)
        scorer, result = train_stage(spec, tables["train"], tables.get("valid"))
        model = CCRec(self.model.sampler, self.model.encoder if scorer_config.use_vae else None,
                      scorer, candidates)  # type: ignore[arg-type]
        return model.eval(), result


def train_cascade(prepared: PreparedData, config: CascadeConfig) -> CascadeResult:
    """Train the three stages in order and return the cascade."""
    started = time.perf_counter()
    seconds: dict[str, float] = {}
    tables = build_tables(prepared, config)
    seconds["tables"] = time.perf_counter() - started
    stage = {name: StageSpec(name, prepared.num_categories,
                             tuple(prepared.feature_cardinalities), config,
                             embedding_dim=config.encoder.latent_dim)
             for name in ("m1", "vae")}

    t = time.perf_counter()
    m1 = stage["m1"]
    sampler, m1_fit = train_stage(m1, m1.table(tables["train"]), m1.table(tables["valid"]))
    seconds["m1"] = time.perf_counter() - t

    t = time.perf_counter()
    vae = stage["vae"]
    encoder, vae_fit = train_stage(vae, vae.table(tables["train"]), vae.table(tables["valid"]))
    embeddings = {name: embed_table(encoder, table) for name, table in tables.items()}
    seconds["vae"] = time.perf_counter() - t

    t = time.perf_counter()
    partial = CascadeResult(
        model=CCRec(sampler, encoder, PrecisionScorer(prepared.num_categories,  # type: ignore[arg-type]
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
