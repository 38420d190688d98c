"""Choosing a baseline's hyperparameters on the validation users only."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np
import torch

from ccrec.metrics import ranking_metrics

T = TypeVar("T")


@torch.no_grad()
def validation_metrics(recommender: Any, table: Any, batch_size: int = 1024) -> dict[str, float]:
    """HR@1, HR@3 and Precision@3 of ``recommender.score`` on a table's rows."""
    tops = []
    for start in range(0, len(table), batch_size):
        batch = table.batch(np.arange(start, min(start + batch_size, len(table))))
        scores = recommender.score(batch).clone()
        scores[:, 0] = -torch.inf
        tops.append(scores.topk(min(3, scores.shape[1] - 1), -1).indices.numpy())
    return ranking_metrics(np.concatenate(tops), table.future, ks=(1, 3))


def choose(candidates: Sequence[T], apply: Callable[[T], Any], valid: Any) -> T:
    """The candidate with the best validation HR@1 (ties: Precision@3, then the
    earlier candidate); ``apply(candidate)`` sets it and returns the recommender."""
    best, best_key = candidates[0], None
    for candidate in candidates:
        m = validation_metrics(apply(candidate), valid)
        key = (m["HR@1"], m["Precision@3"])
        if best_key is None or key > best_key:
            best, best_key = candidate, key
    apply(best)
    return best
