"""Epochs per stage on the driver's console while a stage trains as a Ray Train job.

The workers report once per epoch (``ray.train.report``); Ray Train hands those
reports to :class:`EpochLog`, a callback that runs in the job's controller, which
appends each epoch's numbers as a JSON line to a file in the run's storage. The
driver, blocked in ``trainer.fit()``, follows the file in a thread
(:func:`epoch_lines`) and logs one line per epoch::

    m1 epoch 2/30  loss 1.8421  valid loss 1.9012  3,210 examples/s  (14 s)

The file lives in the run's storage, so it works where the storage is shared
(a cluster) as on one machine.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ray.train import UserCallback

log = logging.getLogger(__name__)

#: How often the driver looks for new epochs (seconds).
POLL_S = 0.5
#: The validation numbers an epoch line shows (all of them are in the run's history).
SHOWN = ("valid_loss", "valid_HR@1")


class EpochLog(UserCallback):
    """Appends rank 0's report of every epoch to ``path`` as a JSON line."""

    def __init__(self, path: str) -> None:
        self.path = path

    def after_report(self, run_context, metrics: list[dict[str, Any]], checkpoint) -> None:
        if not metrics:
            return
        row = {k: v for k, v in metrics[0].items() if isinstance(v, int | float | str)}
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")


def epoch_line(row: dict[str, Any], epochs: int) -> str:
    """One epoch in words (see the module docstring)."""
    parts = [f"{row.get('stage', '')} epoch {int(row['epoch']) + 1}/{epochs}"]
    if "train_loss" in row:
        parts.append(f"loss {row['train_loss']:.4f}")
    parts += [f"{k.replace('_', ' ', 1)} {row[k]:.4f}" for k in SHOWN if k in row]
    if "examples_per_s" in row:
        parts.append(f"{row['examples_per_s']:,.0f} examples/s")
    if "train_seconds" in row:
        parts.append(f"({row['train_seconds']:.0f} s)")
    return "  ".join(parts)


def _follow(path: Path, epochs: int, stop: threading.Event) -> None:
    done = 0
    while True:
        finished = stop.is_set()  # read once more after the job ends
        if path.exists():
            lines = path.read_text(encoding="utf-8").splitlines()
            for line in lines[done:]:
                try:
                    log.info("%s", epoch_line(json.loads(line), epochs))
                except (ValueError, KeyError):
                    continue  # a line still being written
            done = len(lines)
        if finished:
            return
        stop.wait(POLL_S)


@contextmanager
def epoch_lines(path: Path, epochs: int) -> Iterator[EpochLog]:
    """While the block runs, log each epoch :class:`EpochLog` writes to ``path``
    (emptied first); yields the callback to give the trainer."""
    path.unlink(missing_ok=True)
    stop = threading.Event()
    follower = threading.Thread(target=_follow, args=(path, epochs, stop), daemon=True,
                                name="epoch-lines")
    follower.start()
    started = time.perf_counter()
    try:
        yield EpochLog(str(path))
    finally:
        stop.set()
        follower.join(timeout=5 + POLL_S)
        log.debug("epoch lines of %s followed for %.1fs", path, time.perf_counter() - started)
