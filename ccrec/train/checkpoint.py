"""A stage's checkpoint directory: what a restarted Ray Train worker resumes from.

::

    model.pt       the weights after the last finished epoch
    optimizer.pt   the optimiser's state then
    best.pt        the weights early stopping keeps
    state.json     the :class:`~ccrec.train.loop.FitState` record (early-stopping
                   state, history, last epoch)

Weights are saved from CPU copies, so a checkpoint written on a GPU worker
loads anywhere.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from ccrec.train.loop import FitState, cpu_state


def save_checkpoint(directory: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                    state: FitState) -> None:
    """Write the four files into ``directory`` (which exists)."""
    torch.save(cpu_state(model), directory / "model.pt")
    torch.save(state.best_state, directory / "best.pt")
    torch.save(optimizer.state_dict(), directory / "optimizer.pt")
    (directory / "state.json").write_text(json.dumps(state.record()))


def resume(directory: Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> FitState:
    """Load the last weights and optimiser state in place; return the fit's state."""
    model.load_state_dict(torch.load(directory / "model.pt", weights_only=True))
    optimizer.load_state_dict(torch.load(directory / "optimizer.pt", weights_only=True,
                                         map_location="cpu"))
    return read_state(directory)


def read_state(directory: Path) -> FitState:
    """The fit's state with its kept weights (on the CPU)."""
    best = torch.load(directory / "best.pt", weights_only=True, map_location="cpu")
    return FitState.from_record(json.loads((directory / "state.json").read_text()), best)
