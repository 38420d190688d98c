"""Shapes, masking and one-step training of the three stages."""

from __future__ import annotations

import math

import torch

from ccrec.batch import CandidateBatch, CategoryBatch, InteractionBatch
from ccrec.models.cascade import CandidateConfig, CCRec, candidates_from_m1
from ccrec.models.encoder import CategoryVAE, EncoderConfig
from ccrec.models.sampler import MLESampler, SamplerConfig
from ccrec.models.scorer import PrecisionScorer, ScorerConfig

C, K, P, CARDS = 7, 5, 16, [3, 4]


def _batch(b: int = 4) -> CategoryBatch:
    g = torch.Generator().manual_seed(0)
    past = torch.randint(1, C + 1, (b, K), generator=g)
    past[0, 2:] = 0
    past[1, 1:] = 0
    profiles = torch.rand(b, K, P, generator=g) * (past != 0).unsqueeze(-1)
    profiles = profiles / profiles.sum(-1, keepdim=True).clamp(min=1e-9)
    targets = torch.zeros(b, C + 1)
    targets[torch.arange(b), torch.randint(1, C + 1, (b,), generator=g)] = 1
    feats = torch.stack([torch.randint(0, c, (b,), generator=g) for c in CARDS], 1)
    return CategoryBatch(past, profiles, feats, targets, torch.arange(b))


def _sampler() -> MLESampler:
    torch.manual_seed(0)
    return MLESampler(C, K, SamplerConfig(d_model=16, n_heads=2, n_layers=2, ff_dim=32,
                                          hidden=32, dropout=0.0)).eval()


def test_sampler_shapes_and_log_probs():
    out = _sampler()(_batch().past_categories)
    assert out.shape == (4, C + 1)
    assert torch.allclose(out.exp().sum(-1), torch.ones(4), atol=1e-5)
    assert (out[:, 0] < -100).all()  # padding is never predicted


def test_sampler_padding_never_attends():
    model = _sampler()
    seq = torch.tensor([[3, 5, 2]])
    padded = torch.tensor([[3, 5, 2, 0, 0]])
    assert torch.allclose(model(seq), model(padded), atol=1e-5)
    # what the padding embedding holds cannot matter either
    with torch.no_grad():
        model.embedding.weight[0] = 10.0
    assert torch.allclose(model(seq), model(padded), atol=1e-5)


def test_vae_shapes_and_embedding_masks_padding():
    vae = CategoryVAE(CARDS, C, EncoderConfig(item_profile_dim=P, hidden=32, latent_dim=8))
    b = _batch()
    x = vae.inputs(b.user_features, b.past_profiles[:, 0], b.past_categories[:, 0])
    assert x.shape == (4, sum(CARDS) + P + C + 1)
    recon, mu, logvar = vae(x)
    assert [r.shape[-1] for r in recon] == [*CARDS, P, C + 1]
    assert mu.shape == logvar.shape == (4, 8)
    emb = vae.eval().embed(b.user_features, b.past_profiles, b.past_categories)
    assert emb.shape == (4, K, 8)
    assert (emb[0, 2:] == 0).all() and (emb[1, 1:] == 0).all()


def test_scorer_scores_each_candidate_on_its_own():
    torch.manual_seed(0)
    scorer = PrecisionScorer(C, 8, ScorerConfig(d_model=16, hidden=32)).eval()
    b = _batch()
    emb, m1 = torch.randn(4, K + 1, 8), torch.rand(4, 3)  # slot 0: the profile
    cands = torch.tensor([[1, 2, 0], [3, 4, 5], [6, 7, 1], [2, 0, 0]])
    s = scorer(b.past_categories, emb, cands, m1)
    assert s.shape == (4, 3)
    # swapping two candidates swaps their scores and changes nothing else
    swapped = scorer(b.past_categories, emb, cands[:, [1, 0, 2]], m1[:, [1, 0, 2]])
    assert torch.allclose(swapped, s[:, [1, 0, 2]], atol=1e-6)
    # with a zero last layer every score is sigmoid(bias): log 3 → 3 / (1 + 3)
    with torch.no_grad():
        scorer.mlp[-1].weight.zero_()
        scorer.mlp[-1].bias.fill_(math.log(3.0))
    assert torch.allclose(scorer(b.past_categories, emb, cands, m1), torch.full((4, 3), 0.75))


def test_candidates_top_and_past_deduplicated():
    log_probs = torch.log_softmax(torch.tensor([[-1e4, 5.0, 4.0, 3.0, 0, 0, 0, 0]]), -1)
    past = torch.tensor([[2, 6, 0, 0, 0]])
    cands, probs = candidates_from_m1(log_probs, past, CandidateConfig(size=2))
    assert cands.tolist() == [[1, 2, 0, 6, 0, 0, 0]]
    e = math.e
    z = e**5 + e**4 + e**3 + 4  # softmax denominator (category 0 adds e^-10000 ≈ 0)
    assert torch.allclose(probs, torch.tensor([[e**5 / z, e**4 / z, 0, 1 / z, 0, 0, 0]]))


def test_one_training_step_each_stage():
    b = _batch()
    sampler = _sampler().train()
    vae = CategoryVAE(CARDS, C, EncoderConfig(item_profile_dim=P, hidden=32, latent_dim=8))
    scorer = PrecisionScorer(C, 8, ScorerConfig(d_model=16, hidden=32))
    ib = InteractionBatch(b.user_features, b.past_profiles[:, 0], b.past_categories[:, 0])
    cands = torch.tensor([[1, 2], [3, 4], [5, 6], [7, 1]])
    cb = CandidateBatch(b.past_categories, torch.randn(4, K + 1, 8), cands, torch.rand(4, 2),
                        torch.tensor([[1.0, 0], [0, 0], [0, 1], [1, 1]]), torch.arange(4))
    for model, batch in ((sampler, b), (vae, ib), (scorer, cb)):
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        before = [p.detach().clone() for p in model.parameters()]
        loss = model.loss(batch)
        assert loss.ndim == 0 and torch.isfinite(loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
        assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters(), strict=True))


def test_cascade_ranks_candidates_by_m2_and_the_rest_by_m1():
    vae = CategoryVAE(CARDS, C, EncoderConfig(item_profile_dim=P, hidden=32, latent_dim=8))
    scorer = PrecisionScorer(C, 8, ScorerConfig(d_model=16, hidden=32))
    model = CCRec(_sampler(), vae, scorer, CandidateConfig(size=3)).eval()
    batch = _batch()
    with torch.no_grad():
        scores = model.score(batch)
        log_probs = model.sampler(batch.past_categories)
        emb = vae.user_embeddings(batch.user_features, batch.past_profiles,
                                  batch.past_categories)
        cands, m1 = candidates_from_m1(log_probs, batch.past_categories, CandidateConfig(size=3))
        m2 = scorer(batch.past_categories, emb, cands, m1)
    assert scores.shape == (4, C + 1) and (scores[:, 0] == -2.0).all()
    for user in range(4):
        present = cands[user] != 0
        candidates = cands[user][present]
        # candidates get M2's score in (0, 1); every other category y^{M1} - 1 < 0
        assert torch.allclose(scores[user, candidates], m2[user][present])
        others = [c for c in range(1, C + 1) if c not in candidates.tolist()]
        assert torch.allclose(scores[user, others], log_probs[user, others].exp() - 1.0)


def test_residual_scorer_starts_as_m1_order():
    torch.manual_seed(0)
    scorer = PrecisionScorer(C, 8, ScorerConfig(d_model=16, hidden=32, residual=True)).eval()
    b = _batch()
    cands = torch.tensor([[1, 2, 0], [3, 4, 5], [6, 7, 1], [2, 5, 0]])
    m1 = torch.tensor([[0.5, 0.25, 0.0], [0.1, 0.3, 0.2], [0.05, 0.6, 0.2], [0.2, 0.4, 0.0]])
    s = scorer(b.past_categories, torch.randn(4, K + 1, 8), cands, m1)
    # σ(1 · log p) = p / (1 + p): the zero last layer adds nothing yet
    present = cands != 0
    assert torch.allclose(s[present], (m1 / (1 + m1))[present], atol=1e-6)


def test_profile_slot_reaches_the_scores_only_with_use_profile():
    b = _batch()
    b.past_categories[:] = 0  # newcomers: no past at all
    cands, m1 = torch.tensor([[1, 2, 3]] * 4), torch.full((4, 3), 0.2)
    emb = torch.zeros(4, K + 1, 8)
    other = emb.clone()
    other[:, 0] = torch.randn(4, 8)  # another profile
    for use_profile, differs in ((True, True), (False, False)):
        torch.manual_seed(0)
        scorer = PrecisionScorer(C, 8, ScorerConfig(d_model=16, hidden=32,
                                                    use_profile=use_profile)).eval()
        a = scorer(b.past_categories, emb, cands, m1)
        assert (not torch.allclose(a, scorer(b.past_categories, other, cands, m1))) == differs


def test_user_embeddings_are_the_profile_then_each_past_interaction():
    vae = CategoryVAE(CARDS, C, EncoderConfig(item_profile_dim=P, hidden=32, latent_dim=8))
    b = _batch()
    emb = vae.eval().user_embeddings(b.user_features, b.past_profiles, b.past_categories)
    assert emb.shape == (4, K + 1, 8)
    x = vae.inputs(b.user_features, torch.zeros(4, P), torch.zeros(4, dtype=torch.long))
    assert torch.allclose(emb[:, 0], vae.mu(x), atol=1e-6)  # μ of [f_t; 0; 0]
    assert torch.allclose(emb[:, 1:], vae.embed(b.user_features, b.past_profiles,
                                                b.past_categories))
