"""The publication gate: a retrained model ships only if it is not worse than the served one.

Both models score the same held-out users (the newest window's gate users, which
neither fine-tuning nor its early stopping saw); the difference of their HR@1 gets a
paired bootstrap interval (:func:`ccrec.bootstrap.paired_test`, users resampled). The
candidate passes when its HR@1 is at least the served model's minus ``margin``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ccrec.bootstrap import paired_test
from ccrec.data.tables import UserTable
from ccrec.evaluate import evaluate_sums


@dataclass(frozen=True)
class GateResult:
    """The gate's decision and its evidence.

    Args:
        publish: the candidate may replace the served model.
        metric: the compared metric (HR@1).
        candidate, current: the metric of each model on the held-out users.
        diff, diff_ci: candidate − current and its 95 % paired bootstrap interval.
        p: the paired test's two-sided p-value.
        n: held-out users.
        margin: the largest drop that still publishes.
    """

    publish: bool
    metric: str
    candidate: float
    current: float
    diff: float
    diff_ci: tuple[float, float]
    p: float
    n: int
    margin: float

    def summary(self) -> dict[str, Any]:
        return asdict(self)


def gate(current: Any, candidate: Any, held_out: UserTable, margin: float = 0.0,
         metric: str = "HR@1", seed: int = 0) -> GateResult:
    """Compare ``candidate`` with ``current`` (anything with ``score(batch)``) on ``held_out``.

    Raises:
        ValueError: ``held_out`` has no users, or ``margin`` is negative.
    """
    if len(held_out) == 0:
        raise ValueError("the gate needs held-out users; the newest window has none")
    if margin < 0:
        raise ValueError(f"margin must be at least 0, got {margin}")
    ours, theirs = evaluate_sums(candidate, held_out), evaluate_sums(current, held_out)
    test = paired_test(ours, theirs, metric, seed=seed)
    score, served = ours.metrics()[metric], theirs.metrics()[metric]
    return GateResult(publish=score - served >= -margin, metric=metric, candidate=score,
                      current=served, diff=test.diff, diff_ci=test.diff_ci, p=test.p,
                      n=len(held_out), margin=margin)
