"""``--gpu``: refused where it cannot work, with a message that says why (no Ray needed)."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

from ccrec.cli import cli


def test_gpu_needs_ray_workers():
    result = CliRunner().invoke(cli, ["train", "--dataset", "ml-1m", "--local", "--gpu"])
    assert result.exit_code == 2  # a usage error, before any data is read
    assert "--gpu trains on Ray workers" in result.output


def test_gpu_on_a_local_instance_without_cuda_is_refused(monkeypatch, tmp_path):
    from ccrec.models.cascade import CascadeConfig
    from ccrec.train.run import train_with_ray

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="no CUDA device"):
        train_with_ray(tmp_path, CascadeConfig(), tmp_path / "bundles", gpu=True)


def test_elastic_range_and_resize_interval_reach_ray_train():
    from ccrec.train.stage_runner import RayConfig

    scaling = RayConfig(min_workers=1, max_workers=3, resize_interval_s=2.5).scaling()
    assert (scaling.min_workers, scaling.max_workers) == (1, 3)
    assert scaling.elastic_resize_monitor_interval_s == 2.5
    fixed = RayConfig(num_workers=2, use_gpu=True).scaling()
    assert fixed.num_workers == 2 and fixed.use_gpu
