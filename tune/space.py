"""The cascade's search space and how a sampled point becomes a :class:`CascadeConfig`.

Each searched hyperparameter has one flat, named entry; :func:`apply_params`
maps it onto the nested configuration (width, dropout, learning rate and batch
size apply to every stage that has them).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ray import tune

from ccrec.models.cascade import CascadeConfig

#: Objectives ``ccrec tune`` can maximise (validation metrics of the cascade's M2).
#: The first is the task's: HR@1 + Precision@3 of the final ranking.
OBJECTIVES = ("HR@1+Precision@3", "HR@1", "F1@3")


def search_space() -> dict[str, Any]:
    """The full space: |r_t|, width, layers, heads, dropout, lr, batch size, latent, λ."""
    return {
        "candidates_size": tune.choice([3, 5, 10, 15]),   # |r_t|
        "width": tune.choice([32, 64, 128]),              # d_model of M1 and M2
        "layers": tune.choice([1, 2, 3]),                 # M1 Transformer layers
        "heads": tune.choice([1, 2, 4]),                  # M1 attention heads
        "dropout": tune.uniform(0.0, 0.3),
        "lr": tune.loguniform(1e-4, 1e-2),                # every stage
        "batch_size": tune.choice([64, 128, 256]),        # every stage (global batch)
        "latent_dim": tune.choice([32, 64, 128, 256]),    # VAE embedding size
        "precision_lambda": tune.uniform(0.0, 2.0),       # weight of L_precision
    }


def split_space(fixed: dict[str, Any]) -> dict[str, Any]:
    """The search space without the ``fixed`` keys (they are applied as constants)."""
    space = search_space()
    unknown = set(fixed) - set(space)
    if unknown:
        raise ValueError(f"unknown hyperparameters {sorted(unknown)}; known: {sorted(space)}")
    return {k: v for k, v in space.items() if k not in fixed}


def apply_params(base: CascadeConfig, params: dict[str, Any]) -> CascadeConfig:
    """``base`` with the sampled hyperparameters set (unknown keys are an error)."""
    c = base
    for key, value in params.items():
        if key == "candidates_size":
            c = replace(c, candidates=replace(c.candidates, size=int(value)))
        elif key == "width":
            c = replace(c, sampler=replace(c.sampler, d_model=int(value)),
                        scorer=replace(c.scorer, d_model=int(value)))
        elif key == "layers":
            c = replace(c, sampler=replace(c.sampler, n_layers=int(value)))
        elif key == "heads":
            c = replace(c, sampler=replace(c.sampler, n_heads=int(value)))
        elif key == "dropout":
            c = replace(c, sampler=replace(c.sampler, dropout=float(value)),
                        encoder=replace(c.encoder, dropout=float(value)),
                        scorer=replace(c.scorer, dropout=float(value)))
        elif key in ("lr", "batch_size"):
            cast = float if key == "lr" else int
            c = replace(c, **{stage: replace(getattr(c, stage), **{key: cast(value)})
                              for stage in ("train_sampler", "train_encoder", "train_scorer")})
        elif key == "latent_dim":
            c = replace(c, encoder=replace(c.encoder, latent_dim=int(value)))
        elif key == "precision_lambda":
            c = replace(c, scorer=replace(c.scorer, precision_lambda=float(value)))
        else:
            raise ValueError(f"unknown hyperparameter {key!r}")
    return c
