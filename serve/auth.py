"""Who may call the HTTP API: API keys with scopes, stored hashed.

Clients send ``Authorization: Bearer <key>``. A key is ``ccrec_<id>_<secret>``:
a 12-hex-digit id that names its record and 32 random bytes (URL-safe base64).
The server keeps only the SHA-256 of the whole key. A fast hash is enough here:
the secret has 256 bits of entropy, so there is no dictionary to try it
against, and a slow password hash would add milliseconds to every request.

The keys file (YAML; a mounted Kubernetes Secret or a compose secret), one
record per key::

    keys:
      - id: 3f2a9c1b0d4e
        name: web page
        sha256: 9b0c…            # hex digest of the whole key
        scopes: [recommendations:read, events:write]

``ccrec serve keys`` makes a key and prints its record. The server finds the
file through ``$CCREC_API_KEYS_FILE`` and re-reads it when it changes (a
rotated Secret needs no restart). Authentication is off only with
``CCREC_INSECURE_DEV=1``, for development; with neither set the app does not
start.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import yaml
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

log = logging.getLogger(__name__)

KEYS_FILE_ENV = "CCREC_API_KEYS_FILE"
INSECURE_ENV = "CCREC_INSECURE_DEV"
#: The OpenAPI security scheme's name.
SCHEME = "bearerAuth"
_KEY = re.compile(r"^ccrec_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")


class Scope(StrEnum):
    """What a key may do."""

    RECOMMENDATIONS_READ = "recommendations:read"
    EVENTS_WRITE = "events:write"
    METRICS_READ = "metrics:read"


class AuthNotConfigured(RuntimeError):
    """Neither a keys file nor the insecure development flag is set."""


@dataclass(frozen=True)
class ApiKey:
    """One key's record: everything but the secret.

    Args:
        id: names the record (the key's second part).
        name: who holds it (logs).
        sha256: hex SHA-256 of the whole key.
        scopes: what it may do.
    """

    id: str
    name: str
    sha256: str
    scopes: frozenset[Scope]

    def record(self) -> dict:
        """The keys file's entry."""
        return {"id": self.id, "name": self.name, "sha256": self.sha256,
                "scopes": sorted(s.value for s in self.scopes)}


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key(name: str, scopes: Iterable[Scope | str]) -> tuple[str, ApiKey]:
    """A fresh key and its record; the key is shown once and never stored."""
    key_id = secrets.token_hex(6)
    key = f"ccrec_{key_id}_{secrets.token_urlsafe(32)}"
    return key, ApiKey(key_id, name, _digest(key), frozenset(Scope(s) for s in scopes))


def parse_keys(text: str, source: str = "keys file") -> dict[str, ApiKey]:
    """The records of a keys file, by id.

    Raises:
        ValueError: not the documented shape, an unknown scope, a duplicate id.
    """
    data = yaml.safe_load(text) or {}
    records = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(records, list):
        raise ValueError(f"{source}: expected a mapping with a list under 'keys'")
    keys: dict[str, ApiKey] = {}
    for i, record in enumerate(records):
        try:
            key = ApiKey(record["id"], str(record.get("name", "")), record["sha256"],
                         frozenset(Scope(s) for s in record["scopes"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{source}: key #{i}: {exc!r}") from None
        # strings, so that YAML never reads an all-digit id as a number
        if not (isinstance(key.id, str) and re.fullmatch(r"[0-9a-f]{12}", key.id)
                and isinstance(key.sha256, str) and re.fullmatch(r"[0-9a-f]{64}", key.sha256)):
            raise ValueError(f"{source}: key #{i}: id must be 12 and sha256 64 lowercase hex "
                             "digits, as (quoted) strings")
        if key.id in keys:
            raise ValueError(f"{source}: key id {key.id} appears twice")
        keys[key.id] = key
    return keys


def append_key(path: Path, key: ApiKey) -> None:
    """Add a record to a keys file (created if missing)."""
    keys = parse_keys(path.read_text(), str(path)) if path.exists() else {}
    records = [k.record() for k in keys.values()] + [key.record()]
    path.write_text(yaml.safe_dump({"keys": records}, sort_keys=False))


@dataclass(frozen=True)
class Denied:
    """Why a request is refused: 401 (no or unknown key) or 403 (a key without the scope)."""

    status: int
    detail: str
    challenge: str


class Authenticator:
    """Checks a request's ``Authorization`` header against the keys and a route's scope.

    Args:
        keys: the keys, by id (ignored when ``insecure``).
        keys_file: where they came from; re-read when it changes.
        insecure: let every request through (development only).
    """

    #: Seconds between looks at the keys file.
    RECHECK_S = 1.0

    def __init__(self, keys: dict[str, ApiKey] | None = None, *, keys_file: Path | None = None,
                 insecure: bool = False) -> None:
        self.insecure = insecure
        self.keys = dict(keys or {})
        self.keys_file = keys_file
        self._stamp = self._file_stamp()
        self._checked = time.monotonic()
        self._lock = threading.Lock()

    @classmethod
    def from_file(cls, path: str | Path) -> Authenticator:
        path = Path(path)
        return cls(parse_keys(path.read_text(), str(path)), keys_file=path)

    @classmethod
    def from_env(cls) -> Authenticator:
        """``$CCREC_API_KEYS_FILE``, or no authentication with ``CCREC_INSECURE_DEV=1``.

        Raises:
            AuthNotConfigured: neither is set.
        """
        if os.environ.get(INSECURE_ENV, "") == "1":
            log.warning("authentication is OFF (%s=1): for development only", INSECURE_ENV)
            return cls(insecure=True)
        path = os.environ.get(KEYS_FILE_ENV)
        if not path:
            raise AuthNotConfigured(
                f"set {KEYS_FILE_ENV} to an API keys file (`ccrec serve keys` makes one), "
                f"or {INSECURE_ENV}=1 to serve without authentication (development only)")
        return cls.from_file(path)

    def _file_stamp(self) -> tuple[int, int] | None:
        if self.keys_file is None:
            return None
        try:
            stat = self.keys_file.stat()  # follows symlinks: a Secret volume swaps ..data
        except OSError:
            return None
        return stat.st_ino, stat.st_mtime_ns

    def _refresh(self) -> None:
        """Re-read the keys file if it changed; a broken file keeps the old keys."""
        now = time.monotonic()
        if self.keys_file is None or now - self._checked < self.RECHECK_S:
            return
        with self._lock:
            self._checked = now
            stamp = self._file_stamp()
            if stamp == self._stamp or stamp is None:
                return
            try:
                self.keys = parse_keys(self.keys_file.read_text(), str(self.keys_file))
                log.info("reloaded %d API keys from %s", len(self.keys), self.keys_file)
            except (OSError, ValueError) as exc:
                log.error("API keys file not reloaded, keeping the previous keys: %s", exc)
            self._stamp = stamp

    def identify(self, authorization: str | None) -> ApiKey | None:
        """The key a ``Bearer`` header carries, if it is a known one."""
        scheme, _, token = (authorization or "").strip().partition(" ")
        match = _KEY.match(token.strip()) if scheme.lower() == "bearer" else None
        if match is None:
            return None
        self._refresh()
        key = self.keys.get(match.group(1))
        if key is None or not hmac.compare_digest(key.sha256, _digest(token.strip())):
            return None
        return key

    def check(self, authorization: str | None, scope: Scope) -> Denied | None:
        """None if the request may go on, else why not."""
        if self.insecure:
            return None
        key = self.identify(authorization)
        if key is None:
            return Denied(401, "missing or invalid API key (send Authorization: Bearer <key>)",
                          'Bearer realm="ccrec"' + (', error="invalid_token"'
                                                    if authorization else ""))
        if scope not in key.scopes:
            return Denied(403, f"this API key lacks the scope {scope.value}",
                          f'Bearer realm="ccrec", error="insufficient_scope", '
                          f'scope="{scope.value}"')
        return None


# --- the FastAPI side -----------------------------------------------------------------------
def secured(scope: Scope | None) -> dict:
    """A route's ``openapi_extra``: the scope its key needs, or ``None`` for an open route.

    The OpenAPI ``security`` it writes is also what :class:`ScopedRoute` enforces.
    """
    return {"security": [{SCHEME: [scope.value]}] if scope else []}


#: OpenAPI responses of a route that needs a key.
AUTH_RESPONSES = {401: {"description": "No API key, or an unknown one."},
                  403: {"description": "The API key lacks the route's scope."}}


class ScopedRoute(APIRoute):
    """An API route that checks the caller's key before FastAPI reads the body.

    Checked first, so that a caller without a key learns nothing from validation
    errors. Every route declares its scope, or that it is open, with
    ``openapi_extra=secured(...)``; a route that declares neither is refused
    when the app is built.
    """

    def __init__(self, path: str, endpoint, **kwargs) -> None:
        security = (kwargs.get("openapi_extra") or {}).get("security")
        if security is None:
            raise ValueError(f"route {path} declares no scope: add "
                             "openapi_extra=serve.auth.secured(Scope.…) or secured(None)")
        self.scope = Scope(security[0][SCHEME][0]) if security else None
        super().__init__(path, endpoint, **kwargs)  # builds the handler: the scope first

    def get_route_handler(self):
        handler = super().get_route_handler()
        scope = self.scope
        if scope is None:
            return handler

        async def guarded(request: Request) -> Response:
            denied = request.app.state.auth.check(request.headers.get("authorization"), scope)
            if denied is not None:
                return JSONResponse({"detail": denied.detail}, status_code=denied.status,
                                    headers={"WWW-Authenticate": denied.challenge})
            return await handler(request)

        return guarded


def install(app: FastAPI, auth: Authenticator) -> None:
    """Check every route added to ``app`` from now on with ``auth``; document the scheme."""
    app.state.auth = auth
    app.router.route_class = ScopedRoute
    build = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = build()
            schema.setdefault("components", {}).setdefault("securitySchemes", {})[SCHEME] = {
                "type": "http", "scheme": "bearer",
                "description": "An API key from `ccrec serve keys`; each route names the "
                               "scope it needs."}
        return app.openapi_schema

    app.openapi = openapi
