"""The HTTP API (FastAPI): routes, request/response models, error handling.

:func:`create_app` builds the same app for both hosts — the Ray Serve Ingress
and the single-process app — around a :class:`~serve.pipeline.Pipeline` and
:class:`Clicks`. The OpenAPI schema at ``/openapi.json`` (docs at ``/docs``)
documents it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    WithJsonSchema,
    model_validator,
)

from ccrec.schema import SCHEMA_VERSION, Event, Identifier
from serve.auth import AUTH_RESPONSES, Authenticator, Scope, install, secured
from serve.pipeline import ColdStart, Pipeline, Readiness, Recommendation
from serve.runtime import ModelNotReady
from streaming.events import EventProducer, StreamUnavailable

log = logging.getLogger(__name__)

API_VERSION = "1.0.0"
#: Largest request body accepted (bytes); larger ones get 413.
MAX_BODY_BYTES = 16 * 1024
MAX_K = 20
MAX_EXCLUDE = 100
ROUTES = {"/", "/v1/recommendations", "/v1/events", "/healthz", "/readyz", "/metrics"}
#: The live page (static HTML and JS; its API calls carry the key it asks for).
PAGE = Path(__file__).parent / "static" / "index.html"


def _integral(value):
    """JSON Schema counts 3.0 as an integer; pydantic's strict mode would not."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


#: An integer as JSON Schema defines it: 3 and 3.0, never "3", 2.5 or true.
JsonInt = Annotated[int, BeforeValidator(_integral), Strict()]


def _unicode(value):
    """Every string in a request body is valid Unicode: JSON can carry a lone surrogate
    (``"\\ud800"``), which no store, topic or answer can encode."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("strings must be valid Unicode (no lone surrogates)") from None
    elif isinstance(value, dict):
        for key, item in value.items():
            _unicode(key)
            _unicode(item)
    elif isinstance(value, list):
        for item in value:
            _unicode(item)
    return value


class ValidUnicode(BaseModel):
    """A request body whose strings are all valid Unicode."""

    @model_validator(mode="before")
    @classmethod
    def _valid_unicode(cls, data):
        return _unicode(data)


class RecommendationRequest(ValidUnicode):
    """Ask for a user's top-k categories."""

    model_config = ConfigDict(extra="forbid", strict=True)

    user_id: Identifier = Field(description="The user's id in the source system.")
    k: JsonInt = Field(3, ge=1, le=MAX_K, description=f"How many categories (1..{MAX_K}).")
    exclude: Annotated[list[Identifier], Field(max_length=MAX_EXCLUDE)] = Field(
        default_factory=list, description="Category ids never to return.")


def _timestamp(value):
    if isinstance(value, bool):
        raise ValueError("timestamp must be an ISO 8601 date-time or epoch seconds")
    if isinstance(value, str) and not _ISO.match(value):
        raise ValueError("timestamp string must be an ISO 8601 date-time")
    if isinstance(value, int | float) and not 0 <= value <= MAX_EPOCH:
        raise ValueError(f"epoch seconds must be within 0..{MAX_EPOCH}")
    return value


MAX_EPOCH = 253402300799  # 9999-12-31T23:59:59Z
_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")

Timestamp = Annotated[
    datetime, BeforeValidator(_timestamp),
    WithJsonSchema({"anyOf": [{"type": "string", "format": "date-time"},
                              {"type": "number", "minimum": 0, "maximum": MAX_EPOCH}],
                    "description": Event.model_fields["timestamp"].description}),
]


class ClickEvent(Event, ValidUnicode):
    """One interaction (:class:`ccrec.schema.Event`); JSON ``true`` is not 1, a timestamp
    is an ISO 8601 date-time or a number of epoch seconds."""

    timestamp: Timestamp
    schema_version: JsonInt = Field(SCHEMA_VERSION, ge=1, le=SCHEMA_VERSION)


class ScoredCategory(BaseModel):
    category_id: str
    score: float = Field(description="M2's score (warm users) or the prior (cold start).")


class RecommendationResponse(BaseModel):
    """The user's top categories, best first."""

    user_id: str
    categories: list[ScoredCategory]
    model_version: str
    feature_timestamp: datetime | None = Field(
        description="Time of the user's latest event the features include (null: none).")
    cold_start: bool = Field(description="True when the user has no known past interactions.")
    cold_start_strategy: ColdStart | None = Field(
        description="What answered a cold user: profile (the cascade on the user's known "
                    "profile) or popularity; null for warm users.")
    request_id: str = Field(description="This answer's id in the impression log "
                                        "(Kafka topic ccrec.recommendations).")


class EventAccepted(BaseModel):
    """Where the click went."""

    event_id: str
    topic: str
    partition: int
    offset: int


class Problem(BaseModel):
    detail: str | list


class Unavailable(BaseModel):
    """503: the service cannot answer properly now; retry after ``Retry-After`` seconds."""

    detail: str
    fallback: RecommendationResponse | None = Field(
        None, description="When the feature store is down: the bundle's popularity top k "
                          "(cold_start_strategy popularity), usable in place of an answer.")


class Clicks:
    """POST /v1/events → Kafka through one :class:`streaming.events.EventProducer`,
    created on the first click (the API starts and answers without a broker).

    Args:
        bootstrap_servers: ``host:port[,…]``; default ``$KAFKA_BOOTSTRAP_SERVERS``.
    """

    def __init__(self, bootstrap_servers: str | None = None) -> None:
        self.bootstrap_servers = bootstrap_servers or os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        self._producer: EventProducer | None = None

    def _connect(self) -> EventProducer:
        from streaming.broker import KafkaSettings

        # A click waits at most 5 s for a broker, from the first connection on (kafka-python's
        # bootstrap would wait 30 s by default).
        return EventProducer(KafkaSettings.from_env(self.bootstrap_servers), linger_ms=0,
                             request_timeout_ms=5000, max_block_ms=5000,
                             bootstrap_timeout_ms=5000)

    async def send(self, event: Event) -> EventAccepted:
        if not self.bootstrap_servers:
            raise StreamUnavailable("KAFKA_BOOTSTRAP_SERVERS is not set")
        if self._producer is None:
            self._producer = await asyncio.to_thread(self._connect)
        meta = await self._producer.send_async(event)
        return EventAccepted(event_id=event.dedup_id, topic=meta.topic,
                             partition=meta.partition, offset=meta.offset)

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close()
            self._producer = None


class BodyLimit:
    """Pure-ASGI guard: 413 for bodies over ``limit`` bytes, per route timing and counts.

    A declared ``Content-Length`` over the limit is refused before the body is
    read (the server holds a body to its declared length). A body without one
    (``Transfer-Encoding: chunked``) is read here first, up to the limit, and
    replayed to the app. A pure ASGI middleware (not ``BaseHTTPMiddleware``)
    adds microseconds, not a task.
    """

    def __init__(self, app, pipeline: Pipeline, limit: int = MAX_BODY_BYTES) -> None:
        self.app, self.pipeline, self.limit = app, pipeline, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        route = path if path in ROUTES else "other"
        metrics = self.pipeline.metrics
        started = time.perf_counter()
        status = {"code": 500}

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        length = dict(scope.get("headers") or []).get(b"content-length")
        try:
            if length is not None and (not length.isdigit() or int(length) > self.limit):
                raise _TooLarge()
            if length is None:
                receive = await _replay(receive, self.limit)
        except _TooLarge:
            response = JSONResponse(
                {"detail": f"request body over {self.limit} bytes"}, status_code=413)
            await response(scope, receive, send_wrapper)
        else:
            await self.app(scope, receive, send_wrapper)
        code = status["code"]
        metrics.request_latency.labels(route).observe(time.perf_counter() - started)
        metrics.requests.labels(route, str(code)).inc()
        if code >= 500:
            metrics.errors.labels(route).inc()


class _TooLarge(Exception):
    pass


async def _replay(receive, limit: int):
    """Read a body of unknown length (at most ``limit`` bytes); a ``receive`` that replays it.

    Raises:
        _TooLarge: the body is longer.
    """
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client went away
            return receive
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
        if size > limit:
            raise _TooLarge()
        if not message.get("more_body", False):
            break
    replayed = False

    async def replay():
        nonlocal replayed
        if replayed:
            return await receive()
        replayed = True
        return {"type": "http.request", "body": b"".join(chunks), "more_body": False}

    return replay


def _answer(rec: Recommendation) -> RecommendationResponse:
    ranked = rec.ranked
    return RecommendationResponse(
        user_id=rec.user_id,
        categories=[ScoredCategory(category_id=c, score=s)
                    for c, s in zip(ranked.categories, ranked.scores, strict=True)],
        model_version=ranked.version,
        feature_timestamp=(datetime.fromtimestamp(rec.feature_timestamp, UTC)
                           if rec.feature_timestamp else None),
        cold_start=ranked.cold_start is not None,
        cold_start_strategy=ranked.cold_start,
        request_id=rec.request_id,
    )


#: Seconds a client should wait before retrying a 503.
RETRY_AFTER_S = "5"


def _unavailable(detail: str, fallback: RecommendationResponse | None = None) -> JSONResponse:
    body = Unavailable(detail=detail, fallback=fallback)
    return JSONResponse(jsonable_encoder(body, exclude_none=fallback is None), status_code=503,
                        headers={"Retry-After": RETRY_AFTER_S})


def create_app(pipeline: Pipeline, clicks: Clicks, auth: Authenticator, *,
               title: str = "CCRec") -> FastAPI:
    """The HTTP API around ``pipeline`` (recommendations) and ``clicks`` (events); every
    route but the probes needs an API key with the route's scope (``auth``)."""
    app = FastAPI(
        title=title, version=API_VERSION,
        description="Real-time category recommendations (the cascading CCRec model). "
                    "Send `Authorization: Bearer <API key>`; each route names its scope.",
    )
    install(app, auth)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type")}
                  for e in exc.errors()]
        return JSONResponse({"detail": errors}, status_code=422)

    # 503 bodies say what is unavailable, never why in detail: the cause (exception text,
    # file paths, addresses) goes to the log.
    @app.exception_handler(ModelNotReady)
    async def not_ready(request: Request, exc: ModelNotReady) -> JSONResponse:
        log.warning("model not ready: %s", exc)
        return _unavailable("model not ready: retry shortly")

    @app.exception_handler(StreamUnavailable)
    async def no_stream(request: Request, exc: StreamUnavailable) -> JSONResponse:
        log.warning("event stream unavailable: %s", exc)
        return _unavailable("event stream unavailable: the event was not accepted")

    unavailable = {503: {"model": Unavailable, "description": "Model, features or stream not "
                         "ready (retry after Retry-After seconds)."},
                   413: {"model": Problem, "description": "Request body too large."},
                   400: {"model": Problem, "description": "Body is not decodable JSON."},
                   **AUTH_RESPONSES}

    @app.post("/v1/recommendations", response_model=RecommendationResponse,
              responses=unavailable, tags=["recommendations"],
              openapi_extra=secured(Scope.RECOMMENDATIONS_READ))
    async def recommendations(body: RecommendationRequest):
        """Top-k categories for a user; unknown or cold users get a flagged cold-start answer.
        With the feature store down: 503 with the popularity answer as ``fallback``."""
        rec = await pipeline.recommend(body.user_id, body.k, body.exclude)
        if rec.features_unavailable:
            return _unavailable("feature store unavailable: the fallback is the model's "
                                "popularity ranking", _answer(rec))
        return _answer(rec)

    @app.post("/v1/events", status_code=202, response_model=EventAccepted,
              responses=unavailable, tags=["events"], openapi_extra=secured(Scope.EVENTS_WRITE))
    async def events(event: ClickEvent) -> EventAccepted:
        """Validate one interaction (a click) and produce it to Kafka for the stream worker."""
        accepted = await clicks.send(event)
        pipeline.metrics.events.inc()
        return accepted

    @app.get("/", include_in_schema=False, openapi_extra=secured(None))
    async def page() -> FileResponse:
        """The live page: public; the data it shows needs the key it asks for."""
        return FileResponse(PAGE, headers={"Cache-Control": "no-cache", "X-Frame-Options": "DENY"})

    @app.get("/healthz", tags=["operations"], openapi_extra=secured(None))
    async def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}},
             tags=["operations"], openapi_extra=secured(None))
    async def readyz() -> JSONResponse:
        """Readiness: 200 once both stages hold a bundle and the feature store answers."""
        state = await pipeline.ready()
        return JSONResponse(jsonable_encoder(state), status_code=200 if state.ready else 503)

    @app.get("/metrics", tags=["operations"], response_class=Response,
             responses=AUTH_RESPONSES, openapi_extra=secured(Scope.METRICS_READ))
    async def metrics() -> Response:
        """Prometheus metrics of this process."""
        return Response(pipeline.metrics.render(),
                        media_type="text/plain; version=0.0.4; charset=utf-8")

    app.add_middleware(BodyLimit, pipeline=pipeline)
    return app
