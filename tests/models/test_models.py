"""Shapes, masking and one-step training of the three stages."""

from __future__ import annotations

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


def test_scorer_shapes_in_unit_interval():
    scorer = PrecisionScorer(C, 8, ScorerConfig(d_model=16, hidden=32))
    b = _batch()
    cands = torch.tensor([[1, 2, 0], [3, 4, 5], [6, 7, 1], [2, 0, 0]])
    s = scorer(b.past_categories, torch.randn(4, K, 8), cands, torch.rand(4, 3))
    assert s.shape == (4, 3) and ((s > 0) & (s < 1)).all()


def test_candidates_top_and_past_deduplicated():
    log_probs = torch.log_softmax(torch.tensor([[-1e4, 5.0, 4.0, 3.0, 0, 0, 0, 0]]), -1)
    past = torch.tensor([[2, 6, 0, 0, 0]])
    cands, probs = candidates_from_m1(log_probs, past, CandidateConfig(size=2))
    assert cands.tolist() == [[1, 2, 0, 6, 0, 0, 0]]
    assert (probs[cands == 0] == 0).all() and probs[0, 0] > probs[0, 1] > 0


def test_one_training_step_each_stage():
    b = _batch()
    sampler = _sampler().train()
    vae = CategoryVAE(CARDS, C, EncoderConfig(item_profile_dim=P, hidden=32, latent_dim=8))
    scorer = PrecisionScorer(C, 8, ScorerConfig(d_model=16, hidden=32))
    ib = InteractionBatch(b.user_features, b.past_profiles[:, 0], b.past_categories[:, 0])
    cands = torch.tensor([[1, 2], [3, 4], [5, 6], [7, 1]])
    cb = CandidateBatch(b.past_categories, torch.randn(4, K, 8), cands, torch.rand(4, 2),
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


def test_cascade_scores_all_categories():
    vae = CategoryVAE(CARDS, C, EncoderConfig(item_profile_dim=P, hidden=32, latent_dim=8))
    scorer = PrecisionScorer(C, 8, ScorerConfig(d_model=16, hidden=32))
    model = CCRec(_sampler(), vae, scorer, CandidateConfig(size=3)).eval()
    scores = model.score(_batch())
    assert scores.shape == (4, C + 1)
    # candidates (scores in (0, 1)) rank above every other category (scores < 0)
    assert ((scores[:, 1:] > 0).sum(-1) >= 3).all()
