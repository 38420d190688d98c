"""A deployment that starts: the stream worker and Serve run with exactly the command lines,
configuration files and environment of deploy/compose/compose.yaml (which the Kubernetes
manifests repeat) and answer a recommendation that includes a click.

What is real: the Feast SQL registry on the PostgreSQL of every development machine (a
schema of its own), a Redis started with compose's own command line and the ACL file that
make-secrets.sh writes (the user ccrec, keys with the production TTL), a Ray node started
with `ray start` and the application deployed by `serve run` from
deploy/serve/serve_config.yaml, the worker started by `ccrec stream run` on a bundle's
vocabulary, and an API key from `ccrec serve keys`.

What is mapped, and only this (the machine has no compose network): the service names to
127.0.0.1 ports, the /data volume and /run/secrets to a temporary directory, fixed ports
(Serve's 8000, Ray's 6379, the worker's health port) to free ones, and Kafka to the
embedded broker, which speaks PLAINTEXT (so the SASL_SSL client settings are left out;
test_deploy_security.py checks them).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import psycopg
import pytest
import redis
import yaml
from deploy_schemas import DEPLOY, REPO, compose_config, find, load_manifests

pytestmark = pytest.mark.slow

PG_DSN = "postgresql://postgres@127.0.0.1:5432/test"
BIN = Path(sys.executable).parent
#: Client settings the embedded (PLAINTEXT) broker cannot honour.
SASL = {"KAFKA_SECURITY_PROTOCOL", "KAFKA_SASL_MECHANISM", "KAFKA_SASL_USERNAME",
        "KAFKA_SASL_PASSWORD", "KAFKA_SSL_CAFILE"}


def _free_port() -> int:
    from serve.runtime import free_port

    return free_port()


#: Starts again of a service that exits, as compose's ``restart: unless-stopped`` (every
#: service this test runs has it) would do, before the test fails.
RESTARTS = 2


class Processes:
    """Processes this test starts, each in its own session; stopped by process group.

    A service that exits is started again, at most :data:`RESTARTS` times, as compose
    restarts it: a Ray head whose raylet misses Ray's fixed 30 s registration window on
    a loaded machine exits, and so does the ``serve run`` that was connecting to it.
    """

    def __init__(self, logs: Path) -> None:
        self.logs, self.running = logs, []
        self.commands: dict[str, tuple[list[str], dict[str, str]]] = {}
        self.restarts: dict[str, int] = {}

    def start(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "w")  # noqa: SIM115 (closed with the process)
        self.commands[name], self.restarts[name] = (args, env), 0
        process = self._popen(name, log)
        self.running.append((name, process, log))
        return process

    def _popen(self, name: str, log) -> subprocess.Popen:
        args, env = self.commands[name]
        return subprocess.Popen(args, env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)

    def restart_exited(self) -> str | None:
        """Start again each service that exited; the name of one that exited too often."""
        for i, (name, process, log) in enumerate(self.running):
            if process.poll() is None:
                continue
            if self.restarts[name] >= RESTARTS:
                return name
            self.restarts[name] += 1
            with contextlib.suppress(ProcessLookupError):  # what is left of its session
                os.killpg(process.pid, signal.SIGKILL)
            log.write(f"\n--- exited ({process.returncode}); restart {self.restarts[name]} ---\n")
            log.flush()
            self.running[i] = (name, self._popen(name, log), log)
        return None

    def tail(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text()[-3000:]

    def stop(self) -> None:
        """As ``docker compose stop`` does: SIGTERM, and SIGKILL 10 s later."""
        for _, process, log in reversed(self.running):
            for sig, grace in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
                try:
                    os.killpg(process.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    process.wait(grace)
                    break
                except subprocess.TimeoutExpired:
                    continue
            log.close()


def _wait(what: str, ready, timeout: float, processes: Processes, name: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        exited = processes.restart_exited()
        if exited is not None:  # a service that keeps exiting never starts
            pytest.fail(f"{exited} exited {RESTARTS + 1} times:\n{processes.tail(exited)}")
        time.sleep(1)
    raise TimeoutError(f"{what} not ready after {timeout:.0f}s:\n{processes.tail(name)}")


@pytest.fixture
def stack(tmp_path, synthetic_bundle):
    """Compose's settings mapped onto this machine; yields them and the process runner."""
    try:
        with psycopg.connect(PG_DSN, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as e:  # started before every session and CI run: a broken machine
        pytest.fail(f"PostgreSQL at 127.0.0.1:5432 unreachable: {e}")
    if shutil.which("redis-server") is None or shutil.which("openssl") is None:
        pytest.fail("redis-server and openssl are needed (the development machine and CI "
                    "have them)")
    suffix = uuid.uuid4().hex[:10]
    schema = f"ccrec_deploy_starts_{suffix}"
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    processes = Processes(tmp_path)
    try:
        yield _settings(tmp_path, schema, suffix, synthetic_bundle), processes
    finally:
        processes.stop()
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def broker():
    """The embedded broker, with the topics compose's kafka-topics one-shot creates."""
    from streaming.broker import EmbeddedBroker, KafkaSettings
    from streaming.events import ensure_topics

    with EmbeddedBroker() as running:
        ensure_topics(KafkaSettings.from_env(running.bootstrap_servers))
        yield running.bootstrap_servers


@pytest.fixture
def synthetic_bundle(tmp_path):
    """/data/bundles/<version> with /data/bundles/current pointing at it (`ln -sfn`)."""
    sys.path.insert(0, str(REPO / "tests" / "serve"))
    from untrained import save_untrained_bundle

    from ccrec.data.prepared import load_prepared
    from ccrec.data.synthetic import write_synthetic

    prepared = load_prepared(write_synthetic(tmp_path / "prepared"))
    data = tmp_path / "data"
    bundle = save_untrained_bundle(prepared, data / "bundles", "deploy-1", seed=5)
    (data / "bundles" / "current").symlink_to(bundle.name)
    return prepared, bundle


def _settings(tmp: Path, schema: str, suffix: str, bundle) -> dict:
    data, secrets = tmp / "data", tmp / "secrets"
    passwords = {"REDIS_PASSWORD": f"redis-{suffix}", "KAFKA_CLIENT_PASSWORD": "unused",
                 "POSTGRES_PASSWORD": "unused", "RAY_AUTH_TOKEN": f"ray-{suffix}"}
    compose_dir = tmp / "compose"
    compose_dir.mkdir()
    shutil.copy(DEPLOY / "compose" / "make-secrets.sh", compose_dir)
    (compose_dir / ".env").write_text("".join(f"{k}={v}\n" for k, v in passwords.items()))
    made = subprocess.run(["sh", str(compose_dir / "make-secrets.sh")], capture_output=True,
                          text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    shutil.copytree(compose_dir / "secrets", secrets)
    key = subprocess.run([str(BIN / "ccrec"), "serve", "keys", "--name", "deploy-test",
                          "--scope", "recommendations:read", "--scope", "events:write",
                          "--file", str(secrets / "api_keys.yaml")],
                         capture_output=True, text=True, timeout=120, check=True).stdout.strip()
    return {"tmp": tmp, "data": data, "secrets": secrets, "schema": schema, "key": key,
            "project": f"ccrec_deploy_starts_{suffix}", "passwords": passwords,
            "bundle": bundle, "redis_port": _free_port()}


#: The /data volume in a value: a path that starts with it.
VOLUME = re.compile(r"(^|[\s'\":=,])/data(?=/|$|\s)", re.M)


def _mapped(value: str, s: dict, broker: str) -> str:
    """One compose value (or a whole file's text) on this machine."""
    value = (value.replace("redis:6379", f"127.0.0.1:{s['redis_port']}")
             .replace("kafka:9092", broker)
             .replace("/run/secrets/api_keys", str(s["secrets"] / "api_keys.yaml")))
    return VOLUME.sub(lambda m: m.group(1) + str(s["data"]), value)


def _environment(service: dict, s: dict, broker: str) -> dict[str, str]:
    """A compose service's environment on this machine (on top of this process's PATH)."""
    env = {k: _mapped(str(v), s, broker) for k, v in service["environment"].items()
           if k not in SASL}
    assert env["FEAST_REGISTRY_URL"].startswith("postgresql+psycopg://")
    env["FEAST_REGISTRY_URL"] = (f"postgresql+psycopg://postgres@127.0.0.1:5432/test"
                                 f"?options=-csearch_path%3D{s['schema']}")
    env["FEAST_PROJECT"] = s["project"]
    return {"PATH": f"{BIN}:{os.environ['PATH']}", "HOME": str(s["tmp"]), **env}


def test_worker_and_serve_start_from_the_deploy_files_and_answer(stack, broker) -> None:
    s, processes = stack
    compose = compose_config(s["passwords"])
    services = compose["services"]
    # Kubernetes runs the same worker command line as compose
    (worker,) = find(load_manifests(), "Deployment", "ccrec-stream")
    assert worker.body["spec"]["template"]["spec"]["containers"][0]["command"] == \
        services["stream"]["command"]

    # Redis: compose's command line with the ACL file make-secrets.sh wrote
    redis_cmd = [a.replace("/run/secrets/redis_acl", str(s["secrets"] / "redis-users.acl"))
                 for a in services["redis"]["command"]]
    processes.start("redis", [*redis_cmd, "--port", str(s["redis_port"]), "--bind",
                              "127.0.0.1", "--dir", str(s["tmp"])], dict(os.environ))
    client = redis.Redis(port=s["redis_port"], username="ccrec",
                         password=s["passwords"]["REDIS_PASSWORD"])
    _wait("redis", lambda: _pings(client), 30, processes, "redis")
    with pytest.raises(redis.AuthenticationError):  # the default user is off
        redis.Redis(port=s["redis_port"]).ping()

    env = _environment(services["stream"], s, broker)
    # feast-apply: compose's one-shot, as is
    applied = subprocess.run(services["feast-apply"]["command"], env=env, cwd=REPO,
                             capture_output=True, text=True, timeout=600)
    assert applied.returncode == 0, applied.stdout[-2000:] + applied.stderr[-3000:]

    # the stream worker: compose's command line
    health = str(_free_port())
    command = [_mapped(a, s, broker) for a in services["stream"]["command"]]
    if "--health-port" in command:
        command[command.index("--health-port") + 1] = health
    processes.start("stream", command, env)

    # Serve: a Ray node as compose's `serve` service starts one, then `serve run` of
    # deploy/serve/serve_config.yaml (its port mapped), with the service's environment
    serve_env = _environment(services["serve"], s, broker)
    http, gcs, direct = _free_port(), _free_port(), _free_port()
    serve_env["RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT"] = str(direct)
    serve_env["RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT"] = str(direct + 50)
    config = yaml.safe_load((DEPLOY / "serve" / "serve_config.yaml").read_text())
    config["http_options"].update(host="127.0.0.1", port=http)
    mapped = s["tmp"] / "serve_config.yaml"
    mapped.write_text(_mapped(yaml.safe_dump(config), s, broker))
    node = services["serve"]["command"][-1]
    cpus = node.split("--num-cpus=")[1].split()[0]
    temp_dir = Path(f"/tmp/ccrs-{uuid.uuid4().hex[:6]}")  # short: Ray's socket paths
    processes.start("ray", [str(BIN / "ray"), "start", "--head", f"--port={gcs}",
                            f"--num-cpus={cpus}", f"--temp-dir={temp_dir}",
                            "--include-dashboard=false", "--block"], serve_env)
    assert "exec serve run --address=auto deploy/serve/serve_config.yaml" in node
    processes.start("serve", [str(BIN / "serve"), "run", f"--address=127.0.0.1:{gcs}",
                              str(mapped)], serve_env)
    url = f"http://127.0.0.1:{http}"
    _wait("Serve", lambda: _status(url + "/readyz") == 200, 600, processes, "serve")
    ready = httpx.get(url + "/readyz").json()
    assert ready["model"]["version"] == "deploy-1" and ready["features"] is True

    # a click through the API → broker → worker → Redis → the next recommendation
    prepared, _ = s["bundle"]
    vocab = prepared.vocab
    headers = {"authorization": f"Bearer {s['key']}"}
    user = f"deploy-user-{uuid.uuid4().hex[:6]}"
    click = {"user_id": user, "item_id": vocab["items"][1], "category_id": "c1",
             "timestamp": int(time.time()) - 60}
    assert httpx.post(url + "/v1/recommendations", json={"user_id": user}).status_code == 401
    sent = httpx.post(url + "/v1/events", json=click, headers=headers, timeout=30)
    assert sent.status_code == 202, sent.text

    def refreshed() -> bool:
        r = httpx.post(url + "/v1/recommendations", json={"user_id": user, "k": 3},
                       headers=headers, timeout=30)
        return r.status_code == 200 and r.json()["cold_start"] is False

    _wait("the click in the recommendation", refreshed, 180, processes, "stream")
    answer = httpx.post(url + "/v1/recommendations", json={"user_id": user, "k": 3},
                        headers=headers).json()
    assert answer["model_version"] == "deploy-1" and len(answer["categories"]) == 3
    # the row is in Redis under the project, with the production TTL (30 days)
    keys = [k for k in client.scan_iter(match=b"*" + s["project"].encode())]
    assert keys and all(30 * 86400 - 600 <= client.ttl(k) <= 30 * 86400 for k in keys)
    # and the registry is the SQL one, in PostgreSQL
    with psycopg.connect(PG_DSN) as conn:
        views = {r[0] for r in conn.execute(
            f'SELECT feature_view_name FROM "{s["schema"]}".feature_views WHERE project_id = %s',
            (s["project"],))}
    assert "user_category_sequence" in views


def _pings(client: redis.Redis) -> bool:
    try:
        return client.ping()
    except redis.RedisError:
        return False


def _status(url: str) -> int:
    try:
        return httpx.get(url, timeout=5).status_code
    except httpx.HTTPError:
        return 0
