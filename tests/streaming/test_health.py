"""The liveness endpoint: 200 while the worker loop beats, 503 once it stops."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

from streaming.health import Liveness


def _get(port: int, path: str = "/healthz") -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        body = error.read()
        return error.code, json.loads(body) if body.startswith(b"{") else {}


def test_healthz_follows_the_heartbeat() -> None:
    liveness = Liveness(timeout_s=0.3)
    port = liveness.serve(0, host="127.0.0.1")
    try:
        status, body = _get(port)
        assert status == 200 and body["alive"] is True
        time.sleep(0.4)  # no beat for longer than the timeout: stuck
        status, body = _get(port)
        assert status == 503 and body["alive"] is False and body["last_beat_s"] >= 0.3
        liveness.beat()
        assert _get(port)[0] == 200
        assert _get(port, "/other")[0] == 404
    finally:
        liveness.close()
