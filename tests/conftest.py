"""Shared test fixtures: an isolated CCREC_HOME per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session", autouse=True)
def ccrec_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Prepared data goes to a fresh directory; downloaded wheels are shared.

    Wheels are cached under ``~/.cache/ccrec-test-wheels`` so that repeated test
    runs do not download the data sets again (they are verified by checksum).
    """
    home = tmp_path_factory.mktemp("ccrec-home")
    shared_wheels = Path.home() / ".cache" / "ccrec-test-wheels"
    shared_wheels.mkdir(parents=True, exist_ok=True)
    (home / "wheels").symlink_to(shared_wheels, target_is_directory=True)
    patcher = pytest.MonkeyPatch()
    patcher.setenv("CCREC_HOME", str(home))
    yield home
    patcher.undo()


@pytest.fixture
def cj_fixture_dir() -> Path:
    return FIXTURES / "complete-journey"


def pytest_collection_modifyitems(config, items):
    """The files with a test on the session's Ray instance, the longest, run first.
    (``make test`` runs ``pytest -n 2 --dist loadfile``: a file's tests stay in one worker,
    so its module fixtures start once.)"""
    on_ray = {item.path for item in items if "ray_cluster" in getattr(item, "fixturenames", ())}
    items.sort(key=lambda item: item.path not in on_ray)  # stable: file order kept otherwise


@pytest.fixture(scope="session")
def ray_cluster():
    """One local Ray instance for the whole test session (Ray takes ~7 s to start).

    Tests that need Ray (Train, Tune, Serve) take this fixture; it is shut
    down once at the end of the session.
    """
    import ray

    if not ray.is_initialized():
        ray.init(
            address="local",  # a new instance, never another process's cluster
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
            runtime_env={"env_vars": {"CCREC_HOME": str(ccrec_home_path())}},
        )
    yield ray
    from ray import serve

    serve.shutdown()
    ray.shutdown()


def ccrec_home_path() -> Path:
    import os

    return Path(os.environ["CCREC_HOME"])
