"""Ray Data ingest of the cascade's stages: prepared examples in, M2's candidate rows out.

* :func:`split_dataset` reads one split of ``examples.parquet`` as a Ray
  dataset (column selection and split filter pushed into the read; rows go to
  the object store, never through the driver); :func:`shard_frame` is a
  Ray Train worker's shard of it as one frame.
* :func:`read_split` reads a small split (the validation users) straight
  from parquet: every worker validates on all of them.
* :class:`CascadeInference` is the batch-inference UDF (M1's candidates r_t
  and y^{M1}, the VAE's μ) that :func:`infer_candidates` maps over the
  training users with ``map_batches``; :func:`candidate_table` turns its
  columns back into a :class:`~ccrec.data.tables.CandidateTable`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import ray
import ray.train
import torch

from ccrec.data.tables import CandidateTable, UserTable
from ccrec.models.cascade import candidates_from_m1
from ccrec.models.encoder import CategoryVAE
from ccrec.models.sampler import MLESampler
from ccrec.train.stages import StageSpec

#: The examples columns the stages read (the rest of the parquet stays on disk).
EXAMPLE_COLUMNS = ["user", "past_categories", "past_starts", "past_items", "user_features",
                   "future_categories", "split"]


def split_dataset(examples: Path | str, split: str = "train") -> ray.data.Dataset:
    """One split of the prepared examples as a Ray dataset (read by Ray Data tasks)."""
    ds = ray.data.read_parquet(str(examples)).select_columns(EXAMPLE_COLUMNS)
    return ds.filter(expr=f"split == '{split}'")


def read_split(examples: str | Path, split: str) -> pd.DataFrame:
    """One (small) split read straight from parquet, e.g. the validation users."""
    return pq.read_table(str(examples), columns=EXAMPLE_COLUMNS,
                         filters=[("split", "=", split)]).to_pandas()


def shard_frame(name: str) -> pd.DataFrame:
    """This Ray Train worker's shard of dataset ``name`` as one frame (worker memory)."""
    shard = ray.train.get_dataset_shard(name)
    frames = list(shard.iter_batches(batch_format="pandas", batch_size=4096))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def candidate_table(users: UserTable, frame: pd.DataFrame, embedding_dim: int) -> CandidateTable:
    """A :class:`CandidateTable` from the columns :class:`CascadeInference` wrote."""
    n, k = len(users), users.max_past

    def stacked(column: str, dtype: type) -> np.ndarray:
        if n == 0:
            return np.zeros((0, 0), dtype)
        return np.stack([np.asarray(v, dtype) for v in frame[column]])

    embeddings = stacked("ci_embeddings", np.float32).reshape(n, k + 1, embedding_dim)
    return CandidateTable(users, stacked("candidates", np.int64),
                          stacked("candidate_m1", np.float32), embeddings)


class CascadeInference:
    """Ray Data UDF: M1's candidates r_t, y^{M1} and the VAE's μ for a batch of users.

    Args:
        spec: the M2 stage spec (model shapes and the candidate rule).
        sampler_path, encoder_path: the kept M1 / VAE weights (state dicts).
        device: ``cpu`` or ``cuda``.
    """

    def __init__(self, spec: StageSpec, sampler_path: str, encoder_path: str,
                 device: str = "cpu") -> None:
        c = spec.cascade
        self.spec, self.device = spec, torch.device(device)
        self.sampler = MLESampler(spec.num_categories, c.max_past, c.sampler)
        self.sampler.load_state_dict(torch.load(sampler_path, weights_only=True))
        self.encoder = CategoryVAE(list(spec.feature_cardinalities), spec.num_categories,
                                   c.encoder)
        self.encoder.load_state_dict(torch.load(encoder_path, weights_only=True))
        self.sampler.to(self.device).eval()
        self.encoder.to(self.device).eval()

    @torch.no_grad()
    def __call__(self, frame: pd.DataFrame) -> pd.DataFrame:
        users = self.spec.users(frame)
        b = users.batch(np.arange(len(users))).to(self.device)  # CategoryBatch [B, …]
        cands, probs = candidates_from_m1(self.sampler(b.past_categories), b.past_categories,
                                          self.spec.cascade.candidates)  # [B, R] each
        emb = self.encoder.user_embeddings(b.user_features, b.past_profiles,
                                           b.past_categories)  # [B, k+1, E]
        out = frame.copy()
        out["candidates"] = list(cands.cpu().numpy())
        out["candidate_m1"] = list(probs.cpu().numpy())
        out["ci_embeddings"] = list(emb.reshape(len(users), -1).cpu().numpy())
        return out

    def table(self, frame: pd.DataFrame) -> CandidateTable:
        """M2's candidate table of a frame of users (the validation users)."""
        return candidate_table(self.spec.users(frame), self(frame), self.spec.embedding_dim)


def infer_candidates(users: ray.data.Dataset, inference: dict[str, Any], *, actors: int,
                     cpus_per_actor: float, use_gpu: bool, batch_size: int = 1024,
                     out_dir: Path | None = None) -> ray.data.Dataset:
    """Stage-1 (and VAE) batch inference with Ray Data ``map_batches``.

    Args:
        users: a Ray dataset of examples (the training users).
        inference: :class:`CascadeInference` arguments.
        actors: the most inference actors at once.
        cpus_per_actor, use_gpu: each actor's resources.
        out_dir: also write the candidates as parquet there.
    Returns:
        The materialised dataset with ``candidates``, ``candidate_m1`` and
        ``ci_embeddings`` columns added, M2's training data.
    """
    ds = users.map_batches(
        CascadeInference,
        fn_constructor_kwargs=inference,
        batch_format="pandas",
        batch_size=batch_size,
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=max(1, actors)),
        num_cpus=cpus_per_actor,
        num_gpus=1 if use_gpu else 0,
    ).materialize()
    if out_dir is not None:
        ds.write_parquet(str(out_dir))
    return ds
