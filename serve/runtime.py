"""What runs a model: the version-keyed bundle slots of each stage, and Ray + Serve on one machine.

**Slots.** The model bundles a serving stage holds, keyed by version.

A response is computed by one bundle version end to end. The Sampler samples
with its current version and names it in the :class:`~serve.pipeline.Shortlist`;
the Scorer scores with that version's weights. A stage keeps the previous
version beside the new one (``keep=2``), so a request sampled just before a
switch still scores with the weights that sampled it; a version older than
both is dropped when a newer one loads. A Scorer asked for a version it does
not hold (its replica has not seen the rollout yet, or started after it)
loads it from the bundle directory the Shortlist names before scoring: such
requests wait for the load, they never fail and never mix versions.

A configured bundle path may be a symlink (``/data/bundles/current``). The
stage loads its target, and a watcher thread resolves the link again every
``watch_s`` seconds and loads the new target when it moves: rolling out is
re-pointing the link. A load that fails leaves the stage serving what it
served, with the failure in its status (never ready for the new version), and
is not tried again until the link points elsewhere.

**Ray + Serve.** Starting them for CCRec on one machine: the fast request path, ports,
shutdown.

Serve's faster request path is switched on by environment variables that
every Ray process must see, so they are set *before* Ray starts
(:func:`fast_path_env`):

* ``RAY_SERVE_THROUGHPUT_OPTIMIZED=1`` — direct ingress (the Ingress replica
  serves HTTP itself, no proxy hop), gRPC between replicas, user code and the
  router on the replica's own event loop, buffered request logs;
* ``RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT`` — the first Ingress replica's
  HTTP port (the next replicas take the following ports); the Serve proxy
  still listens on the ``http_options`` port and routes to every replica.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from ccrec.bundle import Bundle, CascadeRecommender

log = logging.getLogger(__name__)


class ModelNotReady(RuntimeError):
    """No bundle is loaded, or the one a request needs cannot be (the API answers 503)."""


@dataclass(frozen=True)
class ModelStatus:
    """A stage's bundle (or both stages', :meth:`combine`).

    Args:
        ready: a bundle is loaded.
        version: the version it serves.
        error: why the last load failed, if it did (no file paths: this goes to clients).
    """

    ready: bool
    version: str | None
    error: str | None = None

    @staticmethod
    def combine(sampler: ModelStatus, scorer: ModelStatus) -> ModelStatus:
        version = sampler.version if sampler.version == scorer.version else \
            f"{sampler.version}/{scorer.version}"
        return ModelStatus(sampler.ready and scorer.ready, version,
                           sampler.error or scorer.error)


@dataclass(frozen=True)
class Served:
    """A loaded bundle.

    Args:
        recommender: its model.
        version: its version id (from its manifest).
        path: its directory, symlinks resolved.
    """

    recommender: CascadeRecommender
    version: str
    path: str


class ModelSlots:
    """The bundles of one stage: the current one and the ones loaded before it, by version.

    Args:
        path: a bundle directory (or a symlink to one) to serve now; None starts empty.
        keep: how many versions to hold.
        watch_s: seconds between looks at a symlinked path's target.
    """

    def __init__(self, path: str | Path | None = None, *, keep: int = 2,
                 watch_s: float = 2.0) -> None:
        self.keep, self.watch_s = keep, watch_s
        self._held: dict[str, Served] = {}  # version → bundle, oldest first
        self._current: Served | None = None
        self._lock = threading.Lock()  # one load at a time
        self._source: str | None = None
        self._target: str | None = None  # the last target tried, loaded or not
        self._watcher: threading.Thread | None = None
        self._stop = threading.Event()
        self.error: str | None = None
        if path:
            self.configure(path)

    # -- what the stages call ---------------------------------------------------------------
    def current(self) -> Served:
        served = self._current
        if served is None:
            raise ModelNotReady(self.error or "no model bundle loaded")
        return served

    def held(self, version: str) -> Served | None:
        return self._held.get(version)

    def fetch(self, version: str, path: str) -> Served:
        """The bundle ``version``, loaded from ``path`` if this stage does not hold it.

        Raises:
            ModelNotReady: it does not load, or ``path`` holds another version.
        """
        served = self._held.get(version) or self._load(path, make_current=False)
        if served is None or served.version != version:
            raise ModelNotReady(f"bundle version {version} is not available here")
        return served

    def status(self) -> ModelStatus:
        served = self._current
        return ModelStatus(served is not None, served.version if served else None, self.error)

    # -- rollout ----------------------------------------------------------------------------
    def configure(self, path: str | Path) -> bool:
        """Serve the bundle at ``path`` (its target, if a symlink) and follow the link."""
        self._source = os.path.abspath(path)
        target = os.path.realpath(self._source)
        self._target = target
        loaded = self._load(target, make_current=True) is not None
        if target != self._source and self._watcher is None:
            self._watcher = threading.Thread(target=self._watch, name="bundle-watch",
                                             daemon=True)
            self._watcher.start()
        return loaded

    def load(self, path: str | Path) -> bool:
        """Serve the bundle at ``path`` (no symlink watch); False if it did not load."""
        return self._load(os.path.realpath(path), make_current=True) is not None

    def close(self) -> None:
        """Stop watching the symlink."""
        self._stop.set()

    def _watch(self) -> None:
        while not self._stop.wait(self.watch_s):
            target = os.path.realpath(self._source)
            if target != self._target:
                self._target = target
                log.info("%s now points to %s", self._source, target)
                self._load(target, make_current=True)

    def _load(self, path: str, *, make_current: bool) -> Served | None:
        with self._lock:
            served = next((s for s in self._held.values() if s.path == path), None)
            if served is None:
                try:
                    bundle = Bundle.load(path)
                except Exception as exc:  # a missing or broken bundle must not stop the stage
                    log.warning("bundle %s not loaded: %s: %s", path, type(exc).__name__, exc)
                    if make_current:
                        self.error = (f"bundle {Path(path).name} did not load "
                                      f"({type(exc).__name__}); still serving "
                                      f"{self._current.version if self._current else 'none'}")
                    return None
                served = Served(bundle.recommender(), bundle.version, path)
                held = {v: s for v, s in self._held.items() if v != served.version}
                held[served.version] = served
                evictable = [v for v in held
                             if self._current is None or v != self._current.version]
                for version in evictable[:max(0, len(held) - self.keep)]:
                    del held[version]
                self._held = held
                log.info("loaded bundle %s (version %s)", path, served.version)
            if make_current:
                self._current, self.error = served, None
            return served


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fast_path_env(direct_port: int) -> dict[str, str]:
    """Environment for Serve's fast request path with the Ingress on ``direct_port``."""
    return {
        "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
        "RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT": str(direct_port),
        "RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT": str(direct_port + 50),
        "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "1",
        "OMP_NUM_THREADS": "1",
    }


def apply_fast_path(direct_port: int | None = None) -> int:
    """Set the fast-path variables in this process (call before ``ray.init``); the port."""
    port = direct_port or int(os.environ.get("RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT", 0)) \
        or free_port()
    for key, value in fast_path_env(port).items():
        os.environ.setdefault(key, value)
    return int(os.environ["RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT"])


def wait_ready(url: str, timeout: float = 180.0, path: str = "/readyz") -> None:
    """Poll ``url + path`` until it answers 200."""
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            r = httpx.get(url + path, timeout=5)
            if r.status_code == 200:
                return
            last = f"{r.status_code} {r.text[:200]}"
        except httpx.HTTPError as exc:
            last = str(exc)
        time.sleep(0.5)
    raise TimeoutError(f"{url}{path} not ready after {timeout:.0f}s: {last}")


CONFIG_PATH = Path(__file__).with_name("serve_config.yaml")


def serve_config(bundle: str | None = None, features: dict | None = None,
                 kafka: str | None = None, replicas: int | None = None,
                 port: int | None = None, batch: dict | None = None,
                 env: dict[str, str] | None = None, impressions: bool | None = None) -> dict:
    """``serve_config.yaml`` with the bundle, feature source, broker and port filled in.

    Args:
        bundle: the model bundle directory (Sampler and Scorer user_config).
        features: the Ingress's feature source (:func:`features.reader.reader_from_config`).
        kafka: bootstrap servers for POST /v1/events.
        replicas: a fixed replica count for every deployment instead of autoscaling.
        port: the proxy's HTTP port.
        batch: ``max_batch_size`` / ``batch_wait_timeout_s`` of both stages.
        env: environment variables of every replica (the application's
            ``runtime_env``), e.g. the API keys file (:mod:`serve.auth`).
        impressions: the Ingress's impression log on or off (None: the file's, on).
    """
    import copy

    import yaml

    config = copy.deepcopy(yaml.safe_load(CONFIG_PATH.read_text()))
    if port is not None:
        config["http_options"]["port"] = port
    if env:
        config["applications"][0]["runtime_env"] = {"env_vars": dict(env)}
    for deployment in config["applications"][0]["deployments"]:
        user = deployment.setdefault("user_config", {})
        if deployment["name"] == "Ingress":
            if features is not None:
                user["features"] = features
            if kafka is not None:
                user["kafka"] = kafka
            if impressions is not None:
                user["impressions"] = impressions
        else:
            if bundle is not None:
                user["bundle"] = str(bundle)
            user.update(batch or {})
        if replicas:
            deployment.update(num_replicas=replicas, autoscaling_config=None)
    return config


def deploy(config: dict, timeout: float = 300.0) -> None:
    """Apply a Serve config to the running Serve instance (what ``serve deploy`` does).

    Deploying the same import path again with only ``user_config`` changed
    reconfigures the live replicas in place — the hot-reload path.
    """
    from ray import serve
    from ray.serve.context import _get_global_client
    from ray.serve.schema import ServeDeploySchema

    _get_global_client().deploy_apps(ServeDeploySchema.model_validate(config))
    names = [app["name"] for app in config["applications"]]
    deadline = time.time() + timeout
    while time.time() < deadline:
        apps = serve.status().applications
        states = [apps[n].status if n in apps else None for n in names]
        if all(s == "RUNNING" for s in states):
            return
        if any(s == "DEPLOY_FAILED" for s in states):
            raise RuntimeError(f"Serve deploy failed: {apps}")
        time.sleep(0.5)
    raise TimeoutError(f"Serve applications {names} not running after {timeout:.0f}s")


def with_bundle(config: dict, bundle: str, stages: tuple[str, ...] = ("Sampler", "Scorer")
                ) -> dict:
    """``config`` with ``bundle`` as the user_config bundle of ``stages``."""
    import copy

    config = copy.deepcopy(config)
    for deployment in config["applications"][0]["deployments"]:
        if deployment["name"] in stages:
            deployment.setdefault("user_config", {})["bundle"] = str(bundle)
    return config


def roll_out(config: dict, bundle: str, timeout: float = 300.0) -> dict:
    """Serve ``bundle`` on the running application ``config`` describes, in two in-place
    steps: every Scorer replica loads it (keeping the version it had), then the Sampler
    switches. Each answer is one version's either way (:mod:`serve.runtime`); this order
    also spares the first requests of the new version a load in the Scorer.

    Returns the config now deployed.
    """
    deploy(with_bundle(config, bundle, ("Scorer",)), timeout)
    rolled = with_bundle(config, bundle)
    deploy(rolled, timeout)
    return rolled
