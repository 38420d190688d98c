"""The serving stages split the cascade at r_t between two deployments; split, they must
rank exactly as the model engineer's one-call ``Bundle.recommender()`` does."""

from __future__ import annotations

import pytest

from ccrec.bundle import Bundle
from serve.core import ModelSlot, SamplerStage, ScorerStage


@pytest.mark.parametrize("k", [1, 3, 8])
def test_split_stages_rank_like_the_bundle(trained, k):
    _, prepared, bundle = trained
    slot = ModelSlot(bundle)
    sampler, scorer = SamplerStage(slot), ScorerStage(slot)
    reference = Bundle.load(bundle).recommender()
    rows = list(prepared.split("warm_test").itertuples()) + list(
        prepared.split("valid").itertuples())
    requests = [{"past": [int(c) for c in r.past_categories],
                 "items": [[int(i) for i in ci] for ci in r.past_items],
                 "features": [int(f) for f in r.user_features], "k": k, "exclude": []}
                for r in rows]
    sampled = sampler.sample_many(requests)  # one batch, as @serve.batch would send it
    for req, s in zip(requests, sampled, strict=True):
        req.update({key: s[key] for key in ("candidates", "m1", "tail", "tail_m1")})
    ranked = scorer.score_many(requests)
    for req, got in zip(requests, ranked, strict=True):
        expected = reference.names(reference.recommend(
            req["past"], req["items"], req["features"], k=k))
        assert got["categories"] == [c for c, _ in expected]
        assert got["scores"] == pytest.approx([s for _, s in expected], abs=1e-5)
        assert got["version"] == bundle.name


def test_exclusion_and_cold_start_with_a_real_bundle(trained):
    _, prepared, bundle = trained
    slot = ModelSlot(bundle)
    sampler, scorer = SamplerStage(slot), ScorerStage(slot)
    row = next(prepared.split("warm_test").itertuples())
    req = {"past": [int(c) for c in row.past_categories],
           "items": [[int(i) for i in ci] for ci in row.past_items],
           "features": [int(f) for f in row.user_features], "k": 3, "exclude": []}
    top = _rank(sampler, scorer, dict(req))["categories"]
    again = _rank(sampler, scorer, {**req, "exclude": top[:1]})["categories"]
    assert top[0] not in again and len(again) == 3
    cold = sampler.sample_many([{**req, "past": [], "items": []}])[0]
    assert cold["cold"] == "popularity" and len(cold["categories"]) == 3


def _rank(sampler, scorer, req):
    s = sampler.sample_many([req])[0]
    req.update({key: s[key] for key in ("candidates", "m1", "tail", "tail_m1")})
    return scorer.score_many([req])[0]
