"""The stream worker's liveness: a heartbeat of its loop, served over HTTP for a probe.

The worker beats on every pass of its loop (each poll) and before each
backoff wait. ``GET /healthz`` answers 200 while the last beat is younger
than the timeout and 503 after it: the loop is stuck (a hung call, a
deadlock), and a restart is the cure. A worker that waits for an unavailable
broker or store keeps beating: restarting it would not help.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

log = logging.getLogger(__name__)


class Liveness:
    """The time of the worker loop's last beat.

    Args:
        timeout_s: how long without a beat means stuck.
    """

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.last_beat = time.monotonic()
        self._server: ThreadingHTTPServer | None = None

    def beat(self) -> None:
        self.last_beat = time.monotonic()

    @property
    def age_s(self) -> float:
        return time.monotonic() - self.last_beat

    @property
    def alive(self) -> bool:
        return self.age_s < self.timeout_s

    def serve(self, port: int, host: str = "0.0.0.0", registry=None) -> int:
        """Answer ``GET /healthz`` (and ``GET /metrics`` from ``registry``, a
        prometheus_client registry) on ``host:port`` from a daemon thread; returns the
        port (a free one for port 0)."""
        liveness = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server name
                if self.path == "/metrics" and registry is not None:
                    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

                    self._answer(200, CONTENT_TYPE_LATEST, generate_latest(registry))
                    return
                if self.path != "/healthz":
                    self.send_error(404)
                    return
                status = 200 if liveness.alive else 503
                body = json.dumps({"alive": status == 200,
                                   "last_beat_s": round(liveness.age_s, 3)}).encode()
                self._answer(status, "application/json", body)

            def _answer(self, status: int, content_type: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base name
                return  # a probe every few seconds is not worth a log line

        self._server = ThreadingHTTPServer((host, port), Handler)
        threading.Thread(target=self._server.serve_forever, name="ccrec-stream-liveness",
                         daemon=True).start()
        bound = self._server.server_address[1]
        log.info("liveness at http://%s:%d/healthz (stuck after %.0f s)", host, bound,
                 self.timeout_s)
        return bound

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
