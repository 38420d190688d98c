"""The bad-request sweep (benchmarks/bad_requests.py) against the single-process host behind
a real HTTP server (uvicorn, as `ccrec serve plain`): bad auth, bad JSON, wrong types, bad
timestamps, huge and chunked bodies, unknown routes and methods, malformed HTTP. Every case
is a 4xx, no answer shows internals. (Through Serve: test_serve_graph.py.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.bad_requests import LEAK, cases, sweep
from features.reader import MemoryFeatures
from serve.api import Clicks
from serve.auth import Authenticator, Scope, new_key
from serve.plain import PlainHost, serving

KEY, RECORD = new_key("sweep", list(Scope))
LIMITED, LIMITED_RECORD = new_key("reader", [Scope.RECOMMENDATIONS_READ])
ROOT = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def url(bundles, broker):
    auth = Authenticator({RECORD.id: RECORD, LIMITED_RECORD.id: LIMITED_RECORD})
    host = PlainHost(bundles[0], MemoryFeatures(), Clicks(broker), auth=auth)
    with serving(host.app) as running:
        yield running


def test_every_bad_request_gets_a_4xx_and_no_internals(url):
    result = sweep(url, KEY, LIMITED)
    summary = result.summary()
    print(json.dumps(summary, indent=1))
    assert result.failures == [], summary
    assert summary["cases"] == len(cases(KEY, LIMITED)) >= 150
    # each kind of refusal happens: auth, scope, route, method, size, body, validation
    assert {"400", "401", "403", "404", "405", "413", "422"} <= set(summary["by_status"])


def test_the_sweep_counts_what_is_not_a_4xx():
    """The sweep is a check that can fail: a 5xx, a dropped connection and a leaked
    traceback each count."""
    from benchmarks.bad_requests import SweepResult

    result = SweepResult({"a": 422, "b": 500, "c": 0, "d": 404}, ["d"])
    assert result.failures == ["b", "c", "d"]
    assert result.summary()["5xx"] == 1 and result.summary()["no_answer"] == 1
    assert LEAK.search('File "/app/serve/api.py", line 3') and not LEAK.search(
        '{"detail": [{"loc": ["body", "k"], "msg": "Input should be a valid integer"}]}')


def test_script_sweeps_a_running_api(url):
    script = [sys.executable, "-m", "benchmarks.bad_requests", "--url", url]
    ok = subprocess.run([*script, "--key-env", "SWEEP_KEY"], capture_output=True, text=True,
                        env={**os.environ, "SWEEP_KEY": KEY}, cwd=ROOT, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["5xx"] == 0
    missing = subprocess.run([*script, "--key-env", "NO_SUCH_VAR"], capture_output=True,
                             text=True, cwd=ROOT, timeout=60)
    assert missing.returncode == 2 and "NO_SUCH_VAR" in missing.stderr
