"""A trained cascade's stages as traced graphs: the same ops without the Python around them.

A one-user request through the eager cascade is about 150 small torch ops;
most of its time is Python (module calls, the Transformer's fast-path
checks, each op dispatched from the interpreter), not arithmetic.
:func:`fast_stages` records each stage once with ``torch.jit.trace`` and
checks it against the eager stage on probe inputs of several shapes (batch
sizes 1 and 5, empty, short and full pasts, several candidate widths): a
traced stage is used only if every probe output is bitwise equal to the eager
one. Otherwise, or if tracing fails, the eager stage serves and a warning
says why.
"""

from __future__ import annotations

import logging
import warnings
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ccrec.batch import item_profiles
from ccrec.models.cascade import CCRec, candidates_from_m1

log = logging.getLogger(__name__)

#: Batch sizes, past lengths and seeds of the probe inputs a traced stage must reproduce.
PROBE_BATCHES = ((1, 0), (1, 3), (5, 1))


class _Cascade(nn.Module):
    """``CCRec.score_tensors`` on given VAE embeddings, as a module's forward."""

    def __init__(self, model: CCRec) -> None:
        super().__init__()
        self.model = model

    def forward(self, past: Tensor, emb: Tensor) -> Tensor:
        use_vae = self.model.scorer.config.use_vae
        return self.model.score_tensors(past, None, None, emb if use_vae else None)


class _Shortlist(nn.Module):
    """M1 and the shortlist it gives, as :meth:`ccrec.bundle.CascadeRecommender.sample`
    needs them: r_t, y^{M1} and every other category's log-probability."""

    def __init__(self, model: CCRec) -> None:
        super().__init__()
        self.model = model

    def forward(self, past: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        log_probs = self.model.sampler(past)  # [B, C+1]
        cands, m1 = candidates_from_m1(log_probs, past, self.model.candidate_config)  # [B, R]
        rest = log_probs.scatter(1, cands, -torch.inf)  # [B, C+1]: not a candidate
        rest[:, 0] = -torch.inf
        return cands, m1, rest


class _Embed(nn.Module):
    """The VAE's embeddings of the profile and the past category interactions (M2's
    [B, k+1, E] input, :meth:`~ccrec.models.encoder.CategoryVAE.user_embeddings`)."""

    def __init__(self, model: CCRec) -> None:
        super().__init__()
        self.encoder = model.encoder

    def forward(self, features: Tensor, profiles: Tensor, past: Tensor) -> Tensor:
        assert self.encoder is not None
        return self.encoder.user_embeddings(features, profiles, past)


class _Score(nn.Module):
    """M2 over the candidates; without VAE embeddings when the scorer ignores them."""

    def __init__(self, model: CCRec) -> None:
        super().__init__()
        self.scorer = model.scorer

    def forward(self, past: Tensor, emb: Tensor, cands: Tensor, m1: Tensor) -> Tensor:
        return self.scorer(past, emb if self.scorer.config.use_vae else None, cands, m1)


@dataclass
class Stages:
    """The callables :class:`ccrec.bundle.CascadeRecommender` runs, traced or eager.

    Args:
        shortlist: M1 and its shortlist, past [B, k] → (r_t [B, R], y^{M1} [B, R],
            the other categories' log-probabilities [B, C+1], -inf at r_t and padding).
        embed: VAE μ of the profile and each past CI, (f_t [B, F], π [B, k, P],
            past [B, k]) → [B, k+1, E].
        scorer: M2, (past, embeddings, candidates [B, R], y^{M1} [B, R]) → [B, R].
        cascade: the one-call cascade on given embeddings, (past, embeddings) → [B, C+1].
        traced: the names of the stages that run traced.
    """

    shortlist: Callable[..., tuple[Tensor, Tensor, Tensor]]
    embed: Callable[..., Tensor]
    scorer: Callable[..., Tensor]
    cascade: Callable[..., Tensor]
    traced: tuple[str, ...] = ()


def _probes(model: CCRec, max_past: int, profile_dim: int, cardinalities: list[int]
            ) -> list[tuple[Tensor, Tensor, Tensor]]:
    """(past, π, f_t) probe inputs: every row a different past length, 0 to k."""
    gen = torch.Generator().manual_seed(0)
    out = []
    for batch, shortest in PROBE_BATCHES:
        lengths = [min(max_past, shortest + 2 * i) for i in range(batch)]
        if batch > 1:
            lengths[-1] = max_past
        past = torch.zeros(batch, max_past, dtype=torch.long)
        profiles = torch.zeros(batch, max_past, profile_dim)
        for i, n in enumerate(lengths):
            past[i, :n] = torch.randint(1, model.num_categories + 1, (n,), generator=gen)
            profiles[i, :n] = torch.rand(n, profile_dim, generator=gen)
        features = torch.stack([torch.randint(0, max(c, 1), (batch,), generator=gen)
                                for c in cardinalities], 1) if cardinalities else \
            torch.zeros(batch, 0, dtype=torch.long)
        out.append((past, profiles, features))
    return out


def _trace(name: str, module: nn.Module, probes: list[tuple[Tensor, ...]]
           ) -> Callable[..., Tensor] | None:
    """``module`` traced on the first probe and checked on all; None if it
    cannot be traced or any probe's output differs from the eager module's."""
    try:
        with warnings.catch_warnings(), torch.no_grad():
            # tracing warns that it is deprecated and that C (a constant per bundle)
            # is read as a Python number; the probes below are the check that counts
            warnings.simplefilter("ignore")
            # not frozen: freezing re-lays out the weights of some layers, and their
            # matrix products then round differently (1 ulp) from the eager ones
            graph = torch.jit.trace(module.eval(), probes[0], check_trace=False)
        with torch.inference_mode():
            for args in probes:
                if not _same(graph(*args), module(*args)):
                    log.warning("the traced %s differs from the eager one; serving eager", name)
                    return None
    except Exception as exc:  # noqa: BLE001 - any tracing failure leaves the eager stage
        log.warning("the %s could not be traced (%s: %s); serving eager", name,
                    type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
        return None
    return graph


def _same(a: Tensor | tuple[Tensor, ...], b: Tensor | tuple[Tensor, ...]) -> bool:
    """Bitwise equality of two outputs (tensors or tuples of tensors)."""
    if isinstance(a, Tensor) or isinstance(b, Tensor):
        return isinstance(a, Tensor) and isinstance(b, Tensor) and torch.equal(a, b)
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def eager_stages(model: CCRec) -> Stages:
    """The model's own modules (no tracing)."""
    return Stages(shortlist=_Shortlist(model),
                  embed=_Embed(model) if model.encoder else _no_encoder,
                  scorer=_Score(model), cascade=_Cascade(model))


def _no_encoder(*args: Tensor) -> Tensor:
    raise RuntimeError("this cascade has no VAE encoder")


def fast_stages(model: CCRec, max_past: int, profile_dim: int,
                cardinalities: list[int]) -> Stages:
    """Each stage of ``model`` traced where that reproduces it exactly (see the module doc).

    Args:
        model: the cascade, in eval mode.
        max_past: k.
        profile_dim: P.
        cardinalities: the vocabulary size of each f_t column.
    """
    stages = eager_stages(model)
    probes = _probes(model, max_past, profile_dim, cardinalities)
    traced = []
    with torch.inference_mode():
        scorer_probes, cascade_probes = [], []
        for past, profiles, features in probes:
            log_probs = model.sampler(past)
            cands, m1 = candidates_from_m1(log_probs, past, model.candidate_config)
            emb = model.encoder.user_embeddings(features, profiles, past) if model.encoder \
                else torch.zeros(len(past), max_past + 1, 1)
            cascade_probes.append((past, emb))
            for width in (cands.shape[1], 3):  # a batch's width is its longest shortlist
                scorer_probes.append((past, emb, cands[:, :width], m1[:, :width]))
    candidates: list[tuple[str, nn.Module, list[tuple[Tensor, ...]]]] = [
        ("shortlist", _Shortlist(model), [(p,) for p, _, _ in probes]),
        ("scorer", _Score(model), scorer_probes),
        ("cascade", _Cascade(model), cascade_probes),
    ]
    if model.encoder is not None:
        candidates.append(("embed", _Embed(model), [(f, pr, p) for p, pr, f in probes]))
    for name, module, args in candidates:
        graph = _trace(name, module, args)
        if graph is not None:
            setattr(stages, name, graph)
            traced.append(name)
    stages.traced = tuple(traced)
    return stages


class EmbeddingCache:
    """The VAE μ of each past category interaction (CI) and of the profile alone, kept
    by content (the profile is kept as a CI of category 0 with no items: slot 0 of
    M2's [B, k+1, E] input).

    A CI's embedding depends only on (f_t, its category, its items), so a user
    whose last k CIs are all held skips the VAE: a returning user's request
    without a new click, the common case. A user with any CI not held is
    embedded as the eager model embeds them, all k slots in one call with the
    other such users of the batch, and the result is kept; so a single user's
    answer is the eager model's bit for bit. (Batched, the eager model's own
    float rounding depends on which users share the batch; the cache's does
    too, by at most as much.)

    Args:
        embed: (f_t [B, F], π [B, k, P], past [B, k]) → [B, k+1, E], as
            :meth:`ccrec.models.encoder.CategoryVAE.user_embeddings`.
        max_past: k; a longer past keeps its last k CIs (:func:`ccrec.batch.pad_sequences`).
        profile_dim: P.
        dim: E.
        size: most CIs kept (least recently used dropped first).
    """

    def __init__(self, embed: Callable[..., Tensor], max_past: int, profile_dim: int, dim: int,
                 size: int = 50_000) -> None:
        self.embed, self.max_past, self.profile_dim = embed, max_past, profile_dim
        self.dim, self.size = dim, size
        self.rows: OrderedDict[tuple, Tensor] = OrderedDict()
        self.hits = self.misses = 0  # users answered from the cache / embedded

    def __call__(self, past: Tensor, categories: Sequence[Sequence[int]],
                 items: Sequence[Sequence[Sequence[int]]], features: Tensor) -> Tensor:
        """[B, k+1, E] embeddings of B users' profiles and last k CIs: ``past`` [B, k] as
        :func:`ccrec.batch.pad_sequences` pads ``categories``, their ``items`` lists,
        f_t ``features`` [B, F]."""
        k = self.max_past
        out = torch.zeros(len(categories), k + 1, self.dim)
        held, missing = [], []  # (user, slot, row) of held CIs; users to embed
        for i, (cats, user_items) in enumerate(zip(categories, items, strict=True)):
            cats = list(cats)[max(len(cats) - k, 0):]
            user_items = list(user_items)[max(len(user_items) - k, 0):]
            feats = tuple(features[i].tolist())
            keys = [(feats, 0, ())] + [  # slot 0: the profile
                (feats, int(c), tuple(user_items[j]) if j < len(user_items) else ())
                for j, c in enumerate(cats)]
            rows = [self.rows.get(key) for key in keys]
            if all(row is not None for row in rows):
                held += [(i, j, row) for j, row in enumerate(rows)]
                for key in keys:
                    self.rows.move_to_end(key)
            else:
                missing.append((i, keys, user_items))
        self.hits += len(categories) - len(missing)
        if held:
            users, slots, rows = zip(*held, strict=True)
            out[list(users), list(slots)] = torch.stack(rows)
        if missing:
            self.misses += len(missing)
            index = [i for i, _, _ in missing]
            emb = self.embed(features[index],
                             item_profiles([u for _, _, u in missing], k, self.profile_dim),
                             past[index])  # [m, k+1, E]
            out[index] = emb
            for (_, keys, _), user_emb in zip(missing, emb, strict=True):
                self.rows.update(zip(keys, user_emb[:len(keys)].clone(), strict=True))
            while len(self.rows) > self.size:
                self.rows.popitem(last=False)
        return out
