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


#: The files that take minutes (each starts Ray work of its own: a simulated cluster, a Tune
#: search, a deployment from the deploy files, Ray Train worker groups), longest first.
LONGEST_FILES = ("train/test_elastic.py", "tune/test_tune.py",
                 "deploy/test_deployment_starts.py", "train/test_distributed.py")


def pytest_collection_modifyitems(config, items):
    """Longest first: the files of :data:`LONGEST_FILES`, then the other files with a test on
    the session's Ray instance, then the rest in file order. ``make test`` runs ``pytest -n 3
    --dist loadfile --no-loadscope-reorder`` (three workers on two cores: much of a Ray
    test is waiting for processes to start): a file's tests stay in one worker (its module
    fixtures start once), and a worker that runs out of work takes the next file in this
    order, so no worker is left alone with a long file at the end."""
    root = Path(__file__).parent
    rank = {root / name: i for i, name in enumerate(LONGEST_FILES)}
    on_ray = {item.path for item in items if "ray_cluster" in getattr(item, "fixturenames", ())}
    # stable: file order kept within each group
    items.sort(key=lambda item: rank.get(item.path, len(rank) + (item.path not in on_ray)))


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
