"""Baselines behind the :class:`~ccrec.models.base.CategoryRecommender` interface."""
