"""What the serving stages need from a model bundle, and a tiny stand-in bundle.

The two stages talk to the model through :class:`ServingModel`, four calls on
padded index tensors (category indices 1..C, 0 = padding, as in
:mod:`ccrec.batch`):

* ``sample(past) -> [B, C+1]`` — M1's log-probabilities of every category, and
  ``candidates(log_probs, past)`` — r_t with their M1 probabilities;
* ``score(past, past_items, user_features, candidates, m1) -> [B, R]`` — M2's
  scores of the candidates (VAE embeddings of the past category interactions
  inside);
* ``popularity() -> [C+1]`` and ``profile_prior(user_features) -> [C+1]`` for
  cold users.

:func:`load_model` opens a bundle directory: the model engineer's
``ccrec.bundle.Bundle`` when the directory is one of theirs, otherwise the
:class:`ToyCascade` format written by :func:`write_toy_bundle` (small torch
models with random weights, used by the latency benchmark and the API tests so
that they do not need a trained model).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

TOY_FORMAT = "ccrec-serve-toy/1"


@runtime_checkable
class ServingModel(Protocol):
    """The cascade as the serving stages call it (inference only, no grad)."""

    version: str
    num_categories: int

    def category_name(self, index: int) -> str:
        """The external id of category ``index`` (1..C)."""

    def category_index(self, name: str) -> int | None:
        """The index of the category with external id ``name``; None if unknown."""

    def sample(self, past: Tensor) -> Tensor:
        """past [B, k] long → [B, C+1] M1 log-probabilities (column 0 is padding)."""

    def candidates(self, log_probs: Tensor, past: Tensor) -> tuple[Tensor, Tensor]:
        """r_t [B, R] (0 = none) and their M1 probabilities [B, R]."""

    def score(self, past: Tensor, past_items: list[list[list[int]]], user_features: Tensor,
              candidates: Tensor, m1: Tensor) -> Tensor:
        """Candidates [B, R] with M1 probabilities [B, R] → M2 scores [B, R]."""

    def popularity(self) -> Tensor:
        """[C+1] popularity prior (column 0 is padding)."""

    def profile_prior(self, user_features: Tensor) -> Tensor | None:
        """[C+1] prior for a cold user with known f_t [F]; None if the bundle has none."""


@dataclass(frozen=True)
class ToyConfig:
    """Sizes of the stand-in cascade.

    Args:
        num_categories: |C|.
        num_feature_values: values of all f_t columns together (index 0 = unknown).
        num_features: F, the number of f_t columns.
        d: embedding size.
        hidden: MLP width.
        num_items: item vocabulary for the item-profile bag.
    """

    num_categories: int = 18
    num_feature_values: int = 40
    num_features: int = 3
    d: int = 32
    hidden: int = 64
    num_items: int = 4000


class _ToyNet(nn.Module):
    def __init__(self, c: ToyConfig) -> None:
        super().__init__()
        self.category = nn.Embedding(c.num_categories + 1, c.d, padding_idx=0)
        self.m1 = nn.Sequential(nn.Linear(c.d, c.hidden), nn.ReLU(),
                                nn.Linear(c.hidden, c.num_categories + 1))
        self.feature = nn.Embedding(c.num_feature_values + 1, c.d, padding_idx=0)
        self.item = nn.EmbeddingBag(c.num_items + 1, c.d, mode="mean")
        self.encoder = nn.Sequential(nn.Linear(3 * c.d, c.hidden), nn.ReLU(),
                                     nn.Linear(c.hidden, c.d))  # the "VAE μ" stand-in
        self.m2 = nn.Sequential(nn.Linear(3 * c.d + 1, c.hidden), nn.ReLU(),
                                nn.Linear(c.hidden, 1))
        self.register_buffer("counts", torch.zeros(c.num_categories + 1))


class ToyCascade:
    """A random-weight M1 → VAE-embedding → M2 stand-in with the real call shapes.

    Args:
        config: :class:`ToyConfig`.
        net: the weights.
        version: the bundle version it reports.
    """

    def __init__(self, config: ToyConfig, net: _ToyNet, version: str) -> None:
        self.config, self.net, self.version = config, net.eval(), version
        self.num_categories = config.num_categories

    def category_name(self, index: int) -> str:
        return f"cat-{index}"

    def category_index(self, name: str) -> int | None:
        head, _, tail = name.partition("-")
        ok = head == "cat" and tail.isdigit() and 0 < int(tail) <= self.num_categories
        return int(tail) if ok else None

    @torch.inference_mode()
    def sample(self, past: Tensor) -> Tensor:
        # past: [B, k]
        mask = (past != 0).unsqueeze(-1).float()  # [B, k, 1]
        h = (self.net.category(past) * mask).sum(1) / mask.sum(1).clamp(min=1)  # [B, d]
        logits = self.net.m1(h)  # [B, C+1]
        logits[:, 0] = -1e9
        return torch.log_softmax(logits, -1)

    @torch.inference_mode()
    def candidates(self, log_probs: Tensor, past: Tensor) -> tuple[Tensor, Tensor]:
        top = log_probs.topk(min(10, self.num_categories), -1)
        return top.indices, top.values.exp()

    @torch.inference_mode()
    def score(self, past, past_items, user_features, candidates, m1):
        b, k = past.shape
        n = self.config.num_items
        flat, offsets = [], []
        for user in past_items:  # one bag per (user, past slot)
            for slot in range(k):
                offsets.append(len(flat))
                items = user[slot] if slot < len(user) else []
                flat.extend(min(int(i), n) for i in items)
        bags = self.net.item(torch.tensor(flat or [0], dtype=torch.long),
                             torch.tensor(offsets, dtype=torch.long)).view(b, k, -1)  # [B,k,d]
        f = self.net.feature(user_features).mean(1, keepdim=True).expand(b, k, -1)  # [B,k,d]
        e = self.net.encoder(torch.cat([f, bags, self.net.category(past)], -1))  # [B, k, d]
        mask = (past != 0).unsqueeze(-1).float()
        user = (e * mask).sum(1) / mask.sum(1).clamp(min=1)  # [B, d]
        cand = self.net.category(candidates)  # [B, R, d]
        r = candidates.shape[1]
        x = torch.cat([user.unsqueeze(1).expand(b, r, -1), cand,
                       f[:, :1].expand(b, r, -1), m1.unsqueeze(-1)], -1)  # [B, R, 3d+1]
        return torch.sigmoid(self.net.m2(x).squeeze(-1))  # [B, R]

    def popularity(self) -> Tensor:
        counts = self.net.counts.clone()
        counts[0] = 0
        return counts / counts.sum().clamp(min=1)

    def profile_prior(self, user_features: Tensor) -> Tensor | None:
        with torch.inference_mode():
            f = self.net.feature(user_features.view(1, -1)).mean(1)  # [1, d]
            logits = self.net.m1(f)[0]
            logits[0] = -1e9
            return torch.softmax(logits, -1)


def write_toy_bundle(path: Path | str, version: str = "toy-1", seed: int = 0,
                     config: ToyConfig | None = None) -> Path:
    """Write a :class:`ToyCascade` bundle directory (safetensors + JSON) and return it."""
    config = config or ToyConfig()
    torch.manual_seed(seed)
    net = _ToyNet(config)
    with torch.no_grad():
        net.counts.copy_(torch.arange(config.num_categories + 1, 0, -1).float())
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    weights = {k: v.contiguous() for k, v in net.state_dict().items()}
    save_file(weights, path / "weights.safetensors")
    meta = {"format": TOY_FORMAT, "version": version, "config": config.__dict__}
    (path / "bundle.json").write_text(json.dumps(meta, indent=2))
    return path


def _load_toy(path: Path) -> ToyCascade:
    meta = json.loads((path / "bundle.json").read_text())
    config = ToyConfig(**meta["config"])
    net = _ToyNet(config)
    net.load_state_dict(load_file(path / "weights.safetensors"))
    return ToyCascade(config, net, meta["version"])


def load_model(path: Path | str) -> ServingModel:
    """Open a bundle directory: a toy bundle, or the model engineer's ``ccrec.bundle``."""
    path = Path(path)
    meta_path = path / "bundle.json"
    if meta_path.exists() and json.loads(meta_path.read_text()).get("format") == TOY_FORMAT:
        return _load_toy(path)
    from serve.bundle_adapter import load_ccrec_bundle

    return load_ccrec_bundle(path)
