"""Every kind of bad HTTP request against a running CCRec API, and what it answered.

Bad auth, bad JSON, wrong types and ranges, bad timestamps, huge and chunked
bodies, wrong content types, unknown routes and methods, and malformed HTTP
sent over a raw socket. The contract: every case gets a 4xx, never a 5xx and
never a dropped connection, and no answer shows internals (a traceback, a
source file). ``CCREC_API_KEY=… python -m benchmarks.bad_requests --url …`` runs it against
any deployment (JSON; exit 1 on any 5xx, dropped connection or leak);
the tests run it against both hosts.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx

from serve.api import MAX_BODY_BYTES

#: Signs of internals in an answer: a Python traceback or a source file path.
LEAK = re.compile(r"Traceback|File \"|\.py\b|/site-packages/|/home/|/tmp/|/data/")

RECS, EVENTS = "/v1/recommendations", "/v1/events"
JSON = (("content-type", "application/json"),)


@dataclass(frozen=True)
class Case:
    """One bad request.

    Args:
        name: what is wrong with it.
        method, path, headers, body: the request (httpx).
        chunked: send the body with ``Transfer-Encoding: chunked``.
        raw: bytes sent as they are over a socket instead (malformed HTTP).
    """

    name: str
    method: str = "POST"
    path: str = RECS
    headers: tuple[tuple[str, str], ...] = JSON
    body: bytes | None = None
    chunked: bool = False
    raw: bytes | None = None


@dataclass
class SweepResult:
    """What each case got: its status (0: no answer) and whether the answer leaked."""

    status: dict[str, int] = field(default_factory=dict)
    leaked: list[str] = field(default_factory=list)

    @property
    def failures(self) -> list[str]:
        return [n for n, s in self.status.items() if not 400 <= s < 500] + self.leaked

    def summary(self) -> dict:
        return {"cases": len(self.status),
                "4xx": sum(400 <= s < 500 for s in self.status.values()),
                "5xx": sum(s >= 500 for s in self.status.values()),
                "no_answer": sum(s == 0 for s in self.status.values()),
                "leaked_internals": len(self.leaked),
                "by_status": dict(sorted(Counter(map(str, self.status.values())).items())),
                "failures": {n: self.status[n] for n in self.failures if n in self.status}}


def _json(value) -> bytes:
    return json.dumps(value).encode()


def _event(**fields) -> dict:
    return {"user_id": "sweep-user", "item_id": "i1", "category_id": "c1",
            "timestamp": "2024-01-01T00:00:00Z", **fields}


def cases(key: str, limited_key: str | None = None) -> list[Case]:
    """The bad requests; ``key`` has every scope, ``limited_key`` (if any) only
    recommendations:read."""
    return list(_auth(key, limited_key)) + [
        Case(c.name, c.method, c.path, c.headers + (("authorization", f"Bearer {key}"),),
             c.body, c.chunked, c.raw)
        for c in (*_bodies(), *_fields(), *_timestamps(), *_transport(), *_routes())
    ] + list(_raw(key))


def _auth(key: str, limited_key: str | None) -> Iterator[Case]:
    valid = _json({"user_id": "u"})
    key_id, secret = key.split("_", 2)[1:]
    for name, value in [
        ("no Authorization header", None), ("empty Authorization", ""),
        ("Basic scheme", f"Basic {key}"), ("Bearer without a token", "Bearer"),
        ("not a ccrec key", "Bearer abc.def.ghi"), ("key one character short", key[:-1]),
        ("unknown key id", f"ccrec_{'0' * 12}_{secret}"),
        ("known id, wrong secret", f"ccrec_{key_id}_{secret[::-1]}"),
        ("key with trailing junk", f"{key}x"), ("two tokens", f"Bearer {key} {key}"),
        ("non-ASCII token", "Bearer ccrec_é"),
    ]:
        token = value if value is None or value.split(" ")[0] in ("", "Basic", "Bearer") \
            else f"Bearer {value}"
        headers = JSON + ((("authorization", token),) if token is not None else ())
        for path, body in ((RECS, valid), (EVENTS, _json(_event()))):
            yield Case(f"auth: {name} ({path})", "POST", path, headers, body)
        yield Case(f"auth: {name} (/metrics)", "GET", "/metrics", headers[1:])
    if limited_key:
        headers = JSON + (("authorization", f"Bearer {limited_key}"),)
        yield Case("auth: key without events:write", "POST", EVENTS, headers, _json(_event()))
        yield Case("auth: key without metrics:read", "GET", "/metrics", headers[1:])


def _bodies() -> Iterator[Case]:
    for name, body in [
        ("empty body", b""), ("not JSON", b"{not json"), ("trailing comma", b'{"user_id":"u",}'),
        ("truncated JSON", b'{"user_id": "u"'), ("JSON null", b"null"), ("JSON array", b"[]"),
        ("JSON string", b'"u"'), ("JSON number", b"3"), ("invalid UTF-8", b'{"user_id":"\xff"}'),
        ("NaN literal", b'{"user_id": "u", "k": NaN}'),
        ("Infinity literal", b'{"user_id": "u", "k": Infinity}'),
        ("huge number", b'{"user_id": "u", "k": 1e999}'),
        ("deep nesting", b"[" * 5000 + b"]" * 5000),
        ("duplicate keys, bad last", b'{"user_id": "u", "user_id": 3}'),
        ("lone surrogate user", b'{"user_id": "\\ud800"}'),
        ("NUL bytes", b'{"user_id": "u\x00"}'),
    ]:
        yield Case(f"body: {name}", body=body)
        yield Case(f"event body: {name}", path=EVENTS, body=body)


def _fields() -> Iterator[Case]:
    for name, value in [
        ("user_id number", {"user_id": 12}), ("user_id null", {"user_id": None}),
        ("user_id empty", {"user_id": ""}), ("user_id 300 chars", {"user_id": "x" * 300}),
        ("user_id list", {"user_id": ["u"]}), ("user_id object", {"user_id": {"a": 1}}),
        ("user_id true", {"user_id": True}), ("no user_id", {"k": 3}),
        ("k string", {"user_id": "u", "k": "3"}), ("k 2.5", {"user_id": "u", "k": 2.5}),
        ("k true", {"user_id": "u", "k": True}), ("k 0", {"user_id": "u", "k": 0}),
        ("k 21", {"user_id": "u", "k": 21}), ("k -1", {"user_id": "u", "k": -1}),
        ("k 10**30", {"user_id": "u", "k": 10**30}), ("k null", {"user_id": "u", "k": None}),
        ("exclude string", {"user_id": "u", "exclude": "c1"}),
        ("exclude numbers", {"user_id": "u", "exclude": [1, 2]}),
        ("exclude 101 ids", {"user_id": "u", "exclude": ["c"] * 101}),
        ("exclude nested", {"user_id": "u", "exclude": [["c1"]]}),
        ("unknown field", {"user_id": "u", "admin": True}),
    ]:
        yield Case(f"field: {name}", body=_json(value))
    for name, value in [
        ("no user_id", {k: v for k, v in _event().items() if k != "user_id"}),
        ("item_id number", _event(item_id=7)), ("category_id empty", _event(category_id="")),
        ("event_type unknown", _event(event_type="stare")),
        ("event_type null", _event(event_type=None)),
        ("schema_version 99", _event(schema_version=99)),
        ("schema_version string", _event(schema_version="1")),
        ("event_id 300 chars", _event(event_id="e" * 300)),
        ("user_features list", _event(user_features=["a"])),
        ("user_features numbers", _event(user_features={"age": 3})),
        ("unknown field", _event(referrer="x")), ("lone surrogate item", _event(item_id="\ud800")),
    ]:
        yield Case(f"event field: {name}", path=EVENTS,
                   body=json.dumps(value).encode("utf-8", "surrogatepass"))


def _timestamps() -> Iterator[Case]:
    next_year = time.time() + 366 * 86400
    for name, value in [
        ("year 1500", "1500-01-01T00:00:00Z"), ("year 9999 -23:59", "9999-12-31T23:59:59-23:59"),
        ("year 1 +01:00", "0001-01-01T00:00:00+01:00"), ("before 1970", "1969-12-31T23:59:59Z"),
        ("next year", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(next_year))),
        ("next year, epoch", int(next_year)), ("not a date", "yesterday"), ("empty", ""),
        ("month 13", "2024-13-01T00:00:00Z"), ("hour 25", "2024-01-01T25:00:00Z"),
        ("negative epoch", -1), ("epoch 1e20", 1e20), ("epoch true", True), ("null", None),
        ("list", [2024, 1, 1]), ("object", {"seconds": 1}),
        ("offset +25:00", "2024-01-01T00:00:00+25:00"), ("date only", "2024-01-01"),
    ]:
        yield Case(f"timestamp: {name}", path=EVENTS, body=_json(_event(timestamp=value)))


def _transport() -> Iterator[Case]:
    over = _json({"user_id": "u", "exclude": ["x" * 200] * ((MAX_BODY_BYTES // 200) + 10)})
    yield Case("size: body over the limit", body=over)
    yield Case("size: event over the limit", path=EVENTS, body=_json(_event(event_id="e" * 200))
               [:-1] + b"," + b" " * MAX_BODY_BYTES + b"}")
    yield Case("size: chunked body over the limit", body=over, chunked=True)
    yield Case("size: chunked event over the limit", path=EVENTS, body=over, chunked=True)
    yield Case("size: chunked, 1 MB", body=b"[" + b"1," * 500_000 + b"1]", chunked=True)
    yield Case("size: chunked invalid JSON", body=b"{not json", chunked=True)
    for name, value in [("text/plain", "text/plain"), ("form", "application/x-www-form-urlencoded"),
                        ("xml", "application/xml"), ("multipart", "multipart/form-data; b=x")]:
        yield Case(f"content-type: {name}", headers=(("content-type", value),),
                   body=_json({"user_id": "u"}))
    yield Case("content-type: missing, not JSON", headers=(), body=b"user_id=u")


def _routes() -> Iterator[Case]:
    for path in ["/index.html", "/v2/recommendations", f"{RECS}/extra", "/v1", "/admin", "/.env",
                 "/../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/v1/recommendations%00",
                 "/" + "a" * 4000, "/docs/../metrics/../../x"]:
        yield Case(f"route: {path[:40]}", "GET", path, headers=())
    for method, path in [("GET", RECS), ("PUT", RECS), ("DELETE", RECS), ("PATCH", EVENTS),
                         ("GET", EVENTS), ("POST", "/healthz"), ("DELETE", "/readyz"),
                         ("POST", "/metrics"), ("TRACE", "/healthz")]:
        yield Case(f"method: {method} {path}", method, path, body=None)


def _raw(key: str) -> Iterator[Case]:
    auth = f"Authorization: Bearer {key}\r\n".encode()
    body = b'{"user_id": "u"}'
    head = b"POST /v1/recommendations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    for name, raw in [
        ("garbage request line", b"HELLO\r\n\r\n"),
        ("HTTP/9.9", b"GET /healthz HTTP/9.9\r\nHost: x\r\n\r\n"),
        ("header without colon", b"GET /healthz HTTP/1.1\r\nHost: x\r\nbroken header\r\n\r\n"),
        ("64 KiB Authorization", head + b"Authorization: Bearer " + b"a" * 65536
         + b"\r\nContent-Length: 16\r\n\r\n" + body),
        ("Content-Length not a number", head + auth + b"Content-Length: abc\r\n\r\n" + body),
        ("negative Content-Length", head + auth + b"Content-Length: -5\r\n\r\n" + body),
        ("two Content-Lengths", head + auth + b"Content-Length: 16\r\nContent-Length: 3\r\n\r\n"
         + body),
        ("Content-Length and chunked", head + auth + b"Content-Length: 16\r\n"
         b"Transfer-Encoding: chunked\r\n\r\n10\r\n" + body + b"\r\n0\r\n\r\n"),
        ("bad chunk size", head + auth + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n"
         + body + b"\r\n0\r\n\r\n"),
        ("huge declared length", head + auth + b"Content-Length: 1000000000000\r\n\r\n" + body),
    ]:
        yield Case(f"http: {name}", raw=raw)


def send(client: httpx.Client, url: str, case: Case) -> tuple[int, str]:
    """(status, body) of one case; status 0 if the server closed without an answer."""
    if case.raw is not None:
        return _send_raw(url, case.raw)
    content = case.body
    if case.chunked and content is not None:
        chunks = [content[i:i + 4096] for i in range(0, len(content), 4096)]
        content = iter(chunks)
    try:
        r = client.request(case.method, url + case.path,
                           headers=[(k, v.encode()) for k, v in case.headers],
                           content=content)
    except httpx.HTTPError:
        return 0, ""
    return r.status_code, r.text


def _send_raw(url: str, raw: bytes) -> tuple[int, str]:
    where = urlsplit(url)
    with socket.create_connection((where.hostname, where.port or 80), timeout=30) as sock:
        try:
            sock.sendall(raw)
            sock.shutdown(socket.SHUT_WR)
        except OSError:  # the server answered and closed before reading it all
            pass
        answer = b""
        while chunk := _recv(sock):
            answer += chunk
    match = re.match(rb"HTTP/1\.[01] (\d{3})", answer)
    return (int(match.group(1)) if match else 0), answer.decode("latin-1")


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(65536)
    except OSError:
        return b""


def sweep(url: str, key: str, limited_key: str | None = None) -> SweepResult:
    """Send every case to ``url``; what each got."""
    result = SweepResult()
    with httpx.Client(timeout=30) as client:
        for case in cases(key, limited_key):
            status, text = send(client, url, case)
            result.status[case.name] = status
            if LEAK.search(text):
                result.leaked.append(case.name)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="the API's base URL, e.g. http://127.0.0.1:8000")
    parser.add_argument("--key-env", default="CCREC_API_KEY",
                        help="environment variable holding a key with every scope")
    parser.add_argument("--limited-key-env", default=None,
                        help="environment variable holding a key with recommendations:read only "
                             "(adds the 403 cases)")
    args = parser.parse_args()
    key = os.environ.get(args.key_env)
    if not key:
        parser.error(f"set {args.key_env} to an API key with every scope")
    result = sweep(args.url.rstrip("/"), key, os.environ.get(args.limited_key_env or "") or None)
    print(json.dumps(result.summary(), indent=2))
    if result.failures:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
