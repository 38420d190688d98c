"""The embedded broker counts as started only when its own process listens on its port."""

from __future__ import annotations

import socket

import psutil
import pytest

from streaming import broker
from streaming.broker import EmbeddedBroker, PortTaken


@pytest.fixture
def taken_port():
    """A port another process's socket listens on (here: this test's)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_a_port_someone_else_listens_on_is_not_taken_for_the_broker(taken_port) -> None:
    # The port answers connections, but not from the broker: it must not count as started.
    with pytest.raises(PortTaken):
        EmbeddedBroker(port=taken_port).start(timeout=10)


def test_a_chosen_port_taken_meanwhile_is_replaced_by_a_free_one(taken_port, monkeypatch):
    ports = iter([taken_port, broker.free_port()])
    monkeypatch.setattr(broker, "free_port", lambda: next(ports))
    with EmbeddedBroker() as running:
        assert running.port != taken_port
        listening = {c.laddr.port for c in psutil.Process(running.process.pid)
                     .net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN}
        assert running.port in listening
