"""Training: tensorised tables and loaders, the per-epoch loop, the cascade driver."""
