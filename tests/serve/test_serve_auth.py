"""Authentication: API keys with scopes, stored hashed; 401 without a valid key, 403 without
the route's scope, checked before the body is read; the keys file, its rotation, the
insecure development flag and `ccrec serve keys`."""

from __future__ import annotations

import asyncio
import hashlib

import httpx
import pytest
import yaml
from click.testing import CliRunner
from fastapi import FastAPI

from features.reader import MemoryFeatures
from serve.auth import (
    Authenticator,
    AuthNotConfigured,
    Scope,
    install,
    new_key,
    parse_keys,
    secured,
)
from serve.plain import PlainHost

FULL, FULL_RECORD = new_key("operator", list(Scope))
READER, READER_RECORD = new_key("web page", [Scope.RECOMMENDATIONS_READ])
AUTH = Authenticator({k.id: k for k in (FULL_RECORD, READER_RECORD)})
CLICK = {"user_id": "u", "item_id": "i", "category_id": "c", "timestamp": 1700000000}


@pytest.fixture(scope="module")
def app(bundles):
    return PlainHost(bundles[0], MemoryFeatures(), auth=AUTH).app


def call(app, method: str, path: str, authorization: str | None = None,
         **kwargs) -> httpx.Response:
    headers = {**kwargs.pop("headers", {}),
               **({"authorization": authorization} if authorization is not None else {})}

    async def go():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.request(method, path, headers=headers, **kwargs)

    return asyncio.run(go())


def test_a_key_is_its_id_and_secret_and_only_its_hash_is_kept():
    assert FULL.startswith(f"ccrec_{FULL_RECORD.id}_") and len(FULL) == 6 + 12 + 1 + 43
    assert FULL_RECORD.sha256 == hashlib.sha256(FULL.encode()).hexdigest()
    assert FULL.split("_", 2)[2] not in yaml.safe_dump(FULL_RECORD.record())
    digits = FULL_RECORD.record() | {"id": "012345678901"}  # YAML keeps it a string
    assert parse_keys(yaml.safe_dump({"keys": [digits]}))["012345678901"].id == "012345678901"
    assert FULL_RECORD.record()["scopes"] == ["events:write", "metrics:read",
                                              "recommendations:read"]


@pytest.mark.parametrize("authorization", [
    None,                                   # no header
    "",                                     # empty
    f"Basic {FULL}",                        # another scheme
    "Bearer",                               # no token
    "Bearer not-a-ccrec-key",               # not the key format
    f"Bearer {FULL[:-1]}",                  # one character short
    f"Bearer {FULL[:-1]}{'A' if FULL[-1] != 'A' else 'B'}",  # known id, wrong secret
    f"Bearer ccrec_000000000000_{FULL.split('_', 2)[2]}",      # unknown id
], ids=["none", "empty", "basic", "no-token", "not-a-key", "short", "wrong-secret", "unknown-id"])
@pytest.mark.parametrize("method,path,body", [
    ("POST", "/v1/recommendations", {"user_id": "u"}),
    ("POST", "/v1/events", CLICK),
    ("GET", "/metrics", None),
])
def test_no_valid_key_is_401_with_a_bearer_challenge(app, authorization, method, path, body):
    r = call(app, method, path, authorization, json=body)
    assert r.status_code == 401, r.text
    assert r.json() == {"detail": "missing or invalid API key "
                                  "(send Authorization: Bearer <key>)"}
    assert r.headers["www-authenticate"].startswith('Bearer realm="ccrec"')


def test_a_key_without_the_scope_is_403(app):
    reader = f"Bearer {READER}"
    assert call(app, "POST", "/v1/recommendations", reader,
                json={"user_id": "u"}).status_code == 200
    for method, path, body, scope in [("POST", "/v1/events", CLICK, "events:write"),
                                      ("GET", "/metrics", None, "metrics:read")]:
        r = call(app, method, path, reader, json=body)
        assert r.status_code == 403, r.text
        assert r.json() == {"detail": f"this API key lacks the scope {scope}"}
        assert r.headers["www-authenticate"] == (
            f'Bearer realm="ccrec", error="insufficient_scope", scope="{scope}"')


def test_the_key_is_checked_before_the_body_is_read(app):
    """A caller without a key learns nothing from validation: 401, not 422 or 400."""
    for content in (b"{not json", b'{"user_id": 12}', b"[]"):
        r = call(app, "POST", "/v1/recommendations", None, content=content,
                 headers={"content-type": "application/json"})
        assert r.status_code == 401, r.text
    valid = call(app, "POST", "/v1/recommendations", f"Bearer {FULL}", content=b"{not json",
                 headers={"content-type": "application/json"})
    assert valid.status_code == 422


def test_probes_and_docs_are_open(app):
    assert call(app, "GET", "/healthz").json() == {"status": "ok"}
    assert call(app, "GET", "/readyz").status_code == 200
    spec = call(app, "GET", "/openapi.json").json()
    assert spec["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    security = {(path, method): op.get("security") for path, ops in spec["paths"].items()
                for method, op in ops.items()}
    assert security == {
        ("/v1/recommendations", "post"): [{"bearerAuth": ["recommendations:read"]}],
        ("/v1/events", "post"): [{"bearerAuth": ["events:write"]}],
        ("/metrics", "get"): [{"bearerAuth": ["metrics:read"]}],
        ("/healthz", "get"): [],
        ("/readyz", "get"): [],
    }


def test_every_route_declares_its_scope():
    app = FastAPI()
    install(app, AUTH)
    app.get("/open", openapi_extra=secured(None))(lambda: {})
    with pytest.raises(ValueError, match="route /forgotten declares no scope"):
        app.get("/forgotten")(lambda: {})


def test_insecure_development_mode_lets_everything_through(bundles):
    app = PlainHost(bundles[0], MemoryFeatures(), auth=Authenticator(insecure=True)).app
    assert call(app, "POST", "/v1/recommendations", json={"user_id": "u"}).status_code == 200
    assert call(app, "GET", "/metrics").status_code == 200


def test_the_environment_must_choose_keys_or_insecure(monkeypatch, tmp_path):
    monkeypatch.delenv("CCREC_API_KEYS_FILE", raising=False)
    monkeypatch.delenv("CCREC_INSECURE_DEV", raising=False)
    with pytest.raises(AuthNotConfigured, match="CCREC_API_KEYS_FILE"):
        Authenticator.from_env()
    with pytest.raises(AuthNotConfigured):
        PlainHost(None, MemoryFeatures())
    monkeypatch.setenv("CCREC_INSECURE_DEV", "yes")  # only "1" turns authentication off
    with pytest.raises(AuthNotConfigured):
        Authenticator.from_env()
    monkeypatch.setenv("CCREC_INSECURE_DEV", "1")
    assert Authenticator.from_env().insecure
    monkeypatch.delenv("CCREC_INSECURE_DEV")
    keys = tmp_path / "keys.yaml"
    keys.write_text(yaml.safe_dump({"keys": [READER_RECORD.record()]}))
    monkeypatch.setenv("CCREC_API_KEYS_FILE", str(keys))
    auth = Authenticator.from_env()
    assert not auth.insecure and auth.identify(f"Bearer {READER}") == READER_RECORD
    assert auth.identify(f"Bearer {FULL}") is None


def test_a_rotated_keys_file_is_read_again_and_a_broken_one_is_not(tmp_path):
    path = tmp_path / "keys.yaml"
    path.write_text(yaml.safe_dump({"keys": [READER_RECORD.record()]}))
    auth = Authenticator.from_file(path)
    auth.RECHECK_S = 0.0
    assert auth.check(f"Bearer {FULL}", Scope.EVENTS_WRITE).status == 401
    # a Secret volume swaps the file for a new one
    new = tmp_path / "keys.new"
    new.write_text(yaml.safe_dump({"keys": [FULL_RECORD.record()]}))
    new.replace(path)
    assert auth.check(f"Bearer {FULL}", Scope.EVENTS_WRITE) is None
    assert auth.check(f"Bearer {READER}", Scope.RECOMMENDATIONS_READ).status == 401  # revoked
    path.write_text("keys: [{id: nope}]")
    assert auth.check(f"Bearer {FULL}", Scope.EVENTS_WRITE) is None  # old keys kept


@pytest.mark.parametrize("text,problem", [
    ("[]", "a list under 'keys'"),
    ("keys: [{id: 0123456789ab, sha256: x, scopes: [events:write]}]", "64 lowercase hex"),
    (f"keys: [{{id: 123456789012, sha256: '{'0' * 64}', scopes: []}}]", "quoted"),  # a number
    (f"keys: [{{id: 0123456789ab, sha256: '{'0' * 64}', scopes: [admin]}}]", "admin"),
    (f"keys: [{{id: 0123456789ab, sha256: '{'0' * 64}'}}]", "scopes"),
    (f"keys: [{{id: 0123456789ab, sha256: '{'0' * 64}', scopes: []}},"
     f" {{id: 0123456789ab, sha256: '{'1' * 64}', scopes: []}}]", "appears twice"),
])
def test_a_malformed_keys_file_is_refused(text, problem):
    with pytest.raises(ValueError, match=problem):
        parse_keys(text)


def test_cli_makes_a_key_and_stores_only_its_hash(tmp_path):
    from serve.cli import serve

    keys = tmp_path / "keys.yaml"
    runner = CliRunner()
    made = [runner.invoke(serve, ["keys", "--name", name, "--file", str(keys), *scopes])
            for name, scopes in [("page", ["--scope", "recommendations:read",
                                           "--scope", "events:write"]),
                                 ("prometheus", ["--scope", "metrics:read"])]]
    assert all(r.exit_code == 0 for r in made), [r.output for r in made]
    page, prometheus = (r.stdout.strip() for r in made)
    text = keys.read_text()
    assert page not in text and prometheus not in text
    auth = Authenticator.from_file(keys)
    assert auth.check(f"Bearer {page}", Scope.EVENTS_WRITE) is None
    assert auth.check(f"Bearer {page}", Scope.METRICS_READ).status == 403
    assert auth.check(f"Bearer {prometheus}", Scope.METRICS_READ) is None
    printed = runner.invoke(serve, ["keys", "--name", "x", "--scope", "events:write"])
    key, _, record = printed.stdout.partition("\n")
    (entry,) = yaml.safe_load(record)
    assert entry["sha256"] == hashlib.sha256(key.encode()).hexdigest()
    bad = runner.invoke(serve, ["keys", "--name", "x", "--scope", "admin"])
    assert bad.exit_code == 2 and "admin" in bad.output
