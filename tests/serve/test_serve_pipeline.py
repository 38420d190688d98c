"""The serving pipeline splits the cascade at r_t between the Sampler and the Scorer;
split, it must rank exactly as the one-call cascade (``CCRec.score_tensors``) does."""

from __future__ import annotations

import asyncio
import shutil
import time

import pytest

from ccrec.bundle import Bundle, UserRequest
from features.reader import MemoryFeatures, Popularity, UserFeatures
from serve.pipeline import (
    ColdStart,
    Pipeline,
    Ranked,
    SampleRequest,
    SamplerStage,
    ScoreRequest,
    ScorerStage,
    Shortlist,
)
from serve.runtime import ModelNotReady, ModelSlots, ModelStatus


def _users(prepared) -> list[UserRequest]:
    return [UserRequest([int(c) for c in r.past_categories],
                        [[int(i) for i in ci] for ci in r.past_items],
                        [int(f) for f in r.user_features])
            for r in prepared.examples.itertuples()]


def _rank(slot: ModelSlots, users: list[UserRequest], k: int,
          exclude: tuple[str, ...] = ()) -> list[Ranked]:
    """Both stages on one batch each, as @serve.batch would send them."""
    sampled = SamplerStage(slot).sample_many(
        [SampleRequest(UserRequest(u.past_categories, None, u.user_features), k, exclude)
         for u in users])
    assert all(isinstance(s, Shortlist) for s in sampled)
    return asyncio.run(ScorerStage(slot).score_many(
        [ScoreRequest(u, s, k) for u, s in zip(users, sampled, strict=True)]))


@pytest.mark.parametrize("k", [1, 3, 6])
def test_split_stages_rank_like_the_one_call_cascade(synthetic, bundles, k):
    slot = ModelSlots(bundles[0])
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
    slot = ModelSlots(bundles[0])
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
    slot = ModelSlots(bundles[0])
    rec = slot.current().recommender
    prior = rec.popularity()  # M1 on an empty history
    assert prior[1:].sum().item() == pytest.approx(1.0, abs=1e-5)
    order = [f"c{int(c)}" for c in prior[1:].argsort(descending=True) + 1]
    no_past = UserRequest([], [], [0, 0])  # no profile either (0 = unknown)
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


def test_a_newcomer_with_a_known_profile_is_ranked_by_the_cascade(bundles):
    slot = ModelSlots(bundles[0])
    rec = slot.current().recommender
    assert rec.scores_profiles  # the debug config's M2 reads the VAE's profile embedding
    newcomer = UserRequest([], [], [1, 2])
    sampled, unknown = SamplerStage(slot).sample_many(
        [SampleRequest(newcomer, 3), SampleRequest(UserRequest([], [], []), 3)])
    assert isinstance(sampled, Shortlist) and unknown.cold_start is ColdStart.POPULARITY
    (ranked,) = asyncio.run(ScorerStage(slot).score_many([ScoreRequest(newcomer, sampled, 3)]))
    expected = rec.names(rec.recommend([], None, [1, 2], k=3))
    assert ranked.categories == [c for c, _ in expected]
    assert ranked.scores == pytest.approx([s for _, s in expected], abs=1e-5)
    assert ranked.cold_start is ColdStart.PROFILE


def test_popularity_prior_is_normalised_over_known_categories():
    prior = Popularity([2, 4, 7, 2], [3, 1, 5, 4]).prior(num_categories=4)
    assert prior.tolist() == pytest.approx([0, 0, 7 / 8, 0, 1 / 8])
    assert Popularity([9], [5]).prior(num_categories=4) is None


def test_a_broken_bundle_keeps_the_old_one_serving(bundles, tmp_path):
    slot = ModelSlots(bundles[0])
    assert not slot.load(tmp_path)  # not a bundle directory
    assert slot.status() == ModelStatus(True, "untrained-1", slot.error)
    # what failed, without the exception text or the path (the status goes to clients)
    assert slot.error == (f"bundle {tmp_path.name} did not load (BundleError); "
                          "still serving untrained-1")
    assert slot.load(bundles[1]) and slot.status() == ModelStatus(True, "untrained-2", None)


def test_two_stage_versions_show_in_the_combined_status():
    a, b = ModelStatus(True, "v1"), ModelStatus(False, "v2", "broken")
    assert ModelStatus.combine(a, a) == ModelStatus(True, "v1", None)
    assert ModelStatus.combine(a, b) == ModelStatus(False, "v1/v2", "broken")


def test_pipeline_sends_item_lists_only_to_the_scorer(synthetic, bundles):
    slot = ModelSlots(bundles[0])
    sampler, scorer = SamplerStage(slot), ScorerStage(slot)
    user = _users(synthetic)[0]
    hops: list = []

    async def sample(request):
        hops.append(request)
        return sampler.sample_many([request])[0]

    async def score(request):
        hops.append(request)
        return (await scorer.score_many([request]))[0]

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


# --- bundles by version: one version per response, symlink rollouts, failed loads ----------
def _warm_requests(synthetic, k: int = 3) -> tuple[list[UserRequest], list[SampleRequest]]:
    users = _users(synthetic)[:12]
    return users, [SampleRequest(UserRequest(u.past_categories, None, u.user_features), k)
                   for u in users]


def _expected(bundle, users: list[UserRequest], k: int = 3) -> list[list[str]]:
    reference = Bundle.load(bundle).recommender()
    return [[c for c, _ in reference.names(r)] for r in reference.recommend_batch(users, k)]


def test_the_scorer_scores_with_the_version_that_sampled(synthetic, bundles, wide_bundle):
    """Sampler and Scorer on different versions (6 and 9 categories): each request is ranked
    by one bundle end to end, whichever the Scorer held."""
    users, requests = _warm_requests(synthetic)
    sampler_slots, scorer_slots = ModelSlots(bundles[0]), ModelSlots(bundles[0])
    sampler, scorer = SamplerStage(sampler_slots), ScorerStage(scorer_slots)
    narrow = sampler.sample_many(requests)
    assert sampler_slots.load(wide_bundle)  # the Sampler switches first
    wide = sampler.sample_many(requests)
    assert {s.version for s in wide} == {"untrained-wide"}
    assert scorer_slots.held("untrained-wide") is None
    # one batch mixing both versions: the Scorer loads the wide bundle from the Shortlist's path
    mixed = asyncio.run(scorer.score_many(
        [ScoreRequest(u, s, 3) for u, s in zip(users + users, narrow + wide, strict=True)]))
    assert [r.version for r in mixed] == ["untrained-1"] * 12 + ["untrained-wide"] * 12
    assert [r.categories for r in mixed[:12]] == _expected(bundles[0], users)
    assert [r.categories for r in mixed[12:]] == _expected(wide_bundle, users)
    assert scorer_slots.status().version == "untrained-1"  # fetched, not switched to


def test_a_stage_keeps_the_previous_version_and_drops_older_ones(bundles, wide_bundle):
    slots = ModelSlots(bundles[0])
    assert slots.load(bundles[1])
    assert slots.held("untrained-1") and slots.current().version == "untrained-2"
    assert slots.load(wide_bundle)
    assert slots.held("untrained-1") is None  # older than the previous one: dropped
    assert slots.held("untrained-2") and slots.current().version == "untrained-wide"
    assert slots.fetch("untrained-1", str(bundles[0])).version == "untrained-1"
    assert slots.current().version == "untrained-wide"  # a fetch is never served as current
    with pytest.raises(ModelNotReady, match="untrained-9 is not available"):
        slots.fetch("untrained-9", str(bundles[0]))  # the path holds another version


def test_re_pointing_the_current_symlink_rolls_out_and_a_broken_target_does_not(
        bundles, wide_bundle, tmp_path):
    current = tmp_path / "current"
    current.symlink_to(bundles[0])
    slots = ModelSlots(current, watch_s=0.05)
    try:
        assert slots.status() == ModelStatus(True, "untrained-1")

        def point(target) -> None:
            link = tmp_path / "current.new"
            link.symlink_to(target)
            link.replace(current)  # atomic, as `ln -sfn` + mv

        def settles(version: str) -> ModelStatus:
            deadline = time.monotonic() + 30
            while slots.status().version != version and time.monotonic() < deadline:
                time.sleep(0.02)
            return slots.status()

        point(wide_bundle)
        assert settles("untrained-wide") == ModelStatus(True, "untrained-wide")
        broken = tmp_path / "broken"
        shutil.copytree(bundles[1], broken)
        (broken / "scorer.safetensors").write_bytes(b"not weights")
        point(broken)
        deadline = time.monotonic() + 30
        while slots.error is None and time.monotonic() < deadline:
            time.sleep(0.02)
        # never ready for the broken version: the old one serves, the failure is reported
        assert slots.status() == ModelStatus(True, "untrained-wide", slots.error)
        assert slots.error.startswith("bundle broken did not load (BundleError)")
        point(bundles[1])
        assert settles("untrained-2") == ModelStatus(True, "untrained-2")
    finally:
        slots.close()
