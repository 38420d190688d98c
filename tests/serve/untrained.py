"""Real ccrec bundles with random weights, for the serving and deployment tests."""

from __future__ import annotations

from pathlib import Path

DEBUG_CONFIG = Path(__file__).parents[2] / "ccrec" / "configs" / "debug.yaml"


def save_untrained_bundle(prepared, root: Path, version: str, seed: int) -> Path:
    """A real ccrec bundle with random weights: the debug config on ``prepared``'s vocabulary."""
    import torch

    from ccrec.bundle import save_bundle
    from ccrec.config import load
    from ccrec.models.cascade import CascadeConfig, CCRec
    from ccrec.models.encoder import CategoryVAE
    from ccrec.models.sampler import MLESampler
    from ccrec.models.scorer import PrecisionScorer

    config = load(CascadeConfig, DEBUG_CONFIG, [])
    num_categories = prepared.num_categories
    torch.manual_seed(seed)
    encoder = CategoryVAE(prepared.feature_cardinalities, num_categories, config.encoder)
    model = CCRec(MLESampler(num_categories, config.max_past, config.sampler), encoder,
                  PrecisionScorer(num_categories, config.encoder.latent_dim, config.scorer),
                  config.candidates)
    return save_bundle(model, config, prepared.vocab, root, dataset="synthetic", version=version)
