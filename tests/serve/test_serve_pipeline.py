"""The serving pipeline splits the cascade at r_t between the Sampler and the Scorer;
split, it must rank exactly as the one-call cascade (``CCRec.score_tensors``) does."""

from __future__ import annotations

import asyncio

import pytest

from ccrec.bundle import Bundle, UserRequest
from serve.features import MemoryFeatures, Popularity, UserFeatures
from serve.pipeline import (
    ColdStart,
    ModelSlot,
    ModelStatus,
    Pipeline,
    Ranked,
    SampleRequest,
    SamplerStage,
    ScoreRequest,
    ScorerStage,
    Shortlist,
)


def _users(prepared) -> list[UserRequest]:
    return [UserRequest([int(c) for c in r.past_categories],
                        [[int(i) for i in ci] for ci in r.past_items],
                        [int(f) for f in r.user_features])
            for r in prepared.examples.itertuples()]


def _rank(slot: ModelSlot, users: list[UserRequest], k: int,
          exclude: tuple[str, ...] = ()) -> list[Ranked]:
    """Both stages on one batch each, as @serve.batch would send them."""
    sampled = SamplerStage(slot).sample_many(
        [SampleRequest(UserRequest(u.past_categories, None, u.user_features), k, exclude)
         for u in users])
    assert all(isinstance(s, Shortlist) for s in sampled)
    return ScorerStage(slot).score_many(
        [ScoreRequest(u, s, k) for u, s in zip(users, sampled, strict=True)])


@pytest.mark.parametrize("k", [1, 3, 6])
def test_split_stages_rank_like_the_one_call_cascade(synthetic, bundles, k):
    slot = ModelSlot(bundles[0])
    reference = Bundle.load(bundles[0]).recommender()
    users = _users(synthetic)
    ranked = _rank(slot, users, k)
    expected = reference.recommend_batch(users, k)
    for got, want in zip(ranked, expected, strict=True):
        assert got.categories == [c for c, _ in reference.names(want)]
        assert got.scores == pytest.approx([s for _, s in want], abs=1e-5)
        assert got.version == "untrained-1" and got.cold_start is None


def test_short_pasts_fill_k_from_the_tail_in_m1_order(synthetic, bundles):
    rec = Bundle.load(bundles[0]).recommender()
    users = [u for u in _users(synthetic) if len(set(u.past_categories)) == 1]
    assert users  # |r_t| = 3 top-M1 + 1 past category at most: 2+ of |C| = 6 are left
    for user, c in zip(users, rec.sample(users, [6] * len(users)), strict=True):
        assert len(c.categories) + len(c.tail) == 6
        assert not set(c.categories) & set(c.tail)
        assert c.tail_m1 == sorted(c.tail_m1, reverse=True)
        probs = rec.model.sampler(rec._past([user]))[0].exp()
        assert c.tail_m1 == pytest.approx(probs[c.tail].tolist())


def test_excluded_categories_never_come_back_and_the_rest_keep_their_order(synthetic, bundles):
    slot = ModelSlot(bundles[0])
    reference = Bundle.load(bundles[0]).recommender()
    users = _users(synthetic)[:8]
    full = _rank(slot, users, 6)
    for user, top in zip(users, full, strict=True):
        excluded = tuple(top.categories[:2]) + ("no-such-category",)
        (again,) = _rank(slot, [user], 6, excluded)
        assert again.categories == top.categories[2:]  # 4 left of |C| = 6
        indices = [reference.category_index[c] for c in excluded[:2]]
        (want,) = reference.recommend_batch([user], 6, [indices])
        assert again.categories == [c for c, _ in reference.names(want)]


def test_cold_start_ranks_the_bundle_popularity_or_live_popularity(bundles):
    slot = ModelSlot(bundles[0])
    rec = slot.require().recommender
    prior = rec.popularity()  # M1 on an empty history
    assert prior[1:].sum().item() == pytest.approx(1.0, abs=1e-5)
    order = [f"c{int(c)}" for c in prior[1:].argsort(descending=True) + 1]
    no_past = UserRequest([], [], [1, 2])
    live = Popularity(categories=[5, 2, 99, 3], counts=[30, 10, 1000, 0])  # 99: unknown
    bundle, by_count, excluded = SamplerStage(slot).sample_many([
        SampleRequest(no_past, 3),
        SampleRequest(no_past, 3, popularity=live),
        SampleRequest(no_past, 6, exclude=(order[0],)),
    ])
    assert bundle == Ranked("untrained-1", order[:3], pytest.approx(
        sorted(prior[1:].tolist(), reverse=True)[:3]), ColdStart.POPULARITY)
    # c5: 30 / 40, c2: 10 / 40; c3 counted 0 and c99 unknown: not in the prior
    assert by_count.categories[:2] == ["c5", "c2"]
    assert by_count.scores[:2] == pytest.approx([0.75, 0.25])
    assert excluded.categories == order[1:]


def test_popularity_prior_is_normalised_over_known_categories():
    prior = Popularity([2, 4, 7, 2], [3, 1, 5, 4]).prior(num_categories=4)
    assert prior.tolist() == pytest.approx([0, 0, 7 / 8, 0, 1 / 8])
    assert Popularity([9], [5]).prior(num_categories=4) is None


def test_a_broken_bundle_keeps_the_old_one_serving(bundles, tmp_path):
    slot = ModelSlot(bundles[0])
    assert not slot.load(tmp_path)  # not a bundle directory
    assert slot.status() == ModelStatus(True, "untrained-1", slot.error)
    assert "incomplete bundle" in slot.error
    assert slot.load(bundles[1]) and slot.status() == ModelStatus(True, "untrained-2", None)


def test_two_stage_versions_show_in_the_combined_status():
    a, b = ModelStatus(True, "v1"), ModelStatus(False, "v2", "broken")
    assert ModelStatus.combine(a, a) == ModelStatus(True, "v1", None)
    assert ModelStatus.combine(a, b) == ModelStatus(False, "v1/v2", "broken")


def test_pipeline_sends_item_lists_only_to_the_scorer(synthetic, bundles):
    slot = ModelSlot(bundles[0])
    sampler, scorer = SamplerStage(slot), ScorerStage(slot)
    user = _users(synthetic)[0]
    hops: list = []

    async def sample(request):
        hops.append(request)
        return sampler.sample_many([request])[0]

    async def score(request):
        hops.append(request)
        return scorer.score_many([request])[0]

    async def status():
        return slot.status()

    features = MemoryFeatures({"someone": UserFeatures(user, last_timestamp=1234)})
    pipeline = Pipeline(features, sample, score, status)
    rec = asyncio.run(pipeline.recommend("someone", 3, ["c1"]))
    first, second = hops
    assert first.user.past_items is None and first.exclude == ("c1",)
    assert second.user == user and second.shortlist.version == "untrained-1"
    assert rec.feature_timestamp == 1234 and "c1" not in rec.ranked.categories
    (want,) = _rank(slot, [user], 3, ("c1",))
    assert rec.ranked == want
    unknown = asyncio.run(pipeline.recommend("nobody", 2, []))
    assert len(hops) == 3 and unknown.ranked.cold_start is ColdStart.POPULARITY
    assert unknown.feature_timestamp is None


def test_memory_features_keep_each_users_latest_example(synthetic, tmp_path):
    import shutil

    import pandas as pd

    path = shutil.copytree(synthetic.path, tmp_path / "prepared")
    examples = pd.read_parquet(path / "examples.parquet")
    earlier = examples[examples["user"] == 1].copy()  # an earlier rolling origin, stored last
    latest = earlier.iloc[0]
    earlier["past_categories"] = [latest["past_categories"][:1]]
    earlier["past_items"] = [latest["past_items"][:1]]
    earlier["last_timestamp"] = latest["last_timestamp"] - 1
    pd.concat([examples, earlier]).to_parquet(path / "examples.parquet")
    user = MemoryFeatures.from_prepared(path).read_many(["1"])[0]
    assert user.user.past_categories == [int(c) for c in latest["past_categories"]]
    assert user.last_timestamp == int(latest["last_timestamp"])
