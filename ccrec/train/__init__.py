"""Training: the per-epoch loop, the local cascade driver and its Ray Train twin."""
