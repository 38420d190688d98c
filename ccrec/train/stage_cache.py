"""Finished M1 and VAE stages kept by a digest of what determines them.

Tuning trials that change only M2 or the candidate settings train the same
M1 and VAE; :class:`StageCache` lets the second trial reuse the first one's
result. The key covers the data directory, the stage, ``max_past``, the seed, the
rule that builds the stage's rows and its own model and training settings,
nothing else.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import torch

from ccrec.config import to_dict
from ccrec.models.cascade import CascadeConfig
from ccrec.train.loop import FitResult
from ccrec.train.stage_runner import StageResult

log = logging.getLogger(__name__)

#: The CascadeConfig sections each cacheable stage depends on.
STAGE_SECTIONS = {"m1": ("sampler", "train_sampler"), "vae": ("encoder", "train_encoder")}
#: How each stage builds its training rows from the examples; a change of the rule gets a
#: new number, so that entries trained on the old rows are not reused (VAE 2: each distinct
#: (user, CI) version once, not once per example).
STAGE_ROWS = {"m1": 1, "vae": 2}


class StageCache:
    """A directory of ``{stage}-{key}.pt`` (weights) and ``.json`` (training record).

    Args:
        directory: where the entries live (created on the first store).
    """

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    @staticmethod
    def key(data: Path, stage: str, config: CascadeConfig) -> str:
        c = to_dict(config)
        payload = {"data": str(data), "stage": stage, "max_past": c["max_past"],
                   "seed": c["seed"], "rows": STAGE_ROWS[stage],
                   **{p: c[p] for p in STAGE_SECTIONS[stage]}}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]

    def load(self, key: str, stage: str) -> StageResult | None:
        meta = self.directory / f"{stage}-{key}.json"
        if not meta.exists():
            return None
        record = json.loads(meta.read_text())
        weights = torch.load(self.directory / f"{stage}-{key}.pt", weights_only=True)
        log.info("stage %s: reusing cached result %s", stage, key)
        fit = FitResult(record["history"], record["best_epoch"], record["best_value"],
                        record["seconds"])
        return StageResult(stage, fit, weights, record["checkpoint_path"])

    def store(self, key: str, result: StageResult) -> None:
        """Write an entry atomically (weights first, then the record that marks it done)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.directory / f".{result.stage}-{key}.{os.getpid()}"
        torch.save(result.state_dict, f"{tmp}.pt")
        fit = result.fit
        Path(f"{tmp}.json").write_text(json.dumps(
            {"history": fit.history, "best_epoch": fit.best_epoch, "best_value": fit.best_value,
             "seconds": fit.seconds, "checkpoint_path": result.checkpoint_path}))
        os.replace(f"{tmp}.pt", self.directory / f"{result.stage}-{key}.pt")
        os.replace(f"{tmp}.json", self.directory / f"{result.stage}-{key}.json")
