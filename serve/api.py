"""The HTTP API (FastAPI): routes, request/response models, error handling.

:func:`create_app` builds the same app for both hosts — the Ray Serve Ingress
and the single-process app — around a :class:`~serve.pipeline.Pipeline` and
:class:`Clicks`. The OpenAPI schema at ``/openapi.json`` (docs at ``/docs``)
documents it.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from datetime import UTC, datetime
from typing import Annotated

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, Strict, WithJsonSchema

from ccrec.schema import SCHEMA_VERSION, Event, Identifier
from serve.pipeline import ColdStart, ModelNotReady, Pipeline, Readiness
from streaming.events import EventProducer, StreamUnavailable

API_VERSION = "1.0.0"
#: Largest request body accepted (bytes); larger ones get 413.
MAX_BODY_BYTES = 16 * 1024
MAX_K = 20
MAX_EXCLUDE = 100
ROUTES = {"/v1/recommendations", "/v1/events", "/healthz", "/readyz", "/metrics"}


def _integral(value):
    """JSON Schema counts 3.0 as an integer; pydantic's strict mode would not."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


#: An integer as JSON Schema defines it: 3 and 3.0, never "3", 2.5 or true.
JsonInt = Annotated[int, BeforeValidator(_integral), Strict()]


class RecommendationRequest(BaseModel):
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


class ClickEvent(Event):
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
        description="The prior that answered a cold user; null for warm users.")


class EventAccepted(BaseModel):
    """Where the click went."""

    event_id: str
    topic: str
    partition: int
    offset: int


class Problem(BaseModel):
    detail: str | list


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

        return EventProducer(KafkaSettings.from_env(self.bootstrap_servers), linger_ms=0,
                             request_timeout_ms=5000, max_block_ms=5000)

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

    A pure ASGI middleware (not ``BaseHTTPMiddleware``) adds microseconds, not a task.
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
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            response = JSONResponse(
                {"detail": f"request body over {self.limit} bytes"}, status_code=413)
            await response(scope, receive, send_wrapper)
        else:
            received = 0

            async def receive_limited():
                nonlocal received
                message = await receive()
                if message["type"] == "http.request":
                    received += len(message.get("body", b""))
                    if received > self.limit:
                        raise _TooLarge()
                return message

            try:
                await self.app(scope, receive_limited, send_wrapper)
            except _TooLarge:
                response = JSONResponse(
                    {"detail": f"request body over {self.limit} bytes"}, status_code=413)
                await response(scope, receive, send_wrapper)
        code = status["code"]
        metrics.request_latency.labels(route).observe(time.perf_counter() - started)
        metrics.requests.labels(route, str(code)).inc()
        if code >= 500:
            metrics.errors.labels(route).inc()


class _TooLarge(Exception):
    pass


def create_app(pipeline: Pipeline, clicks: Clicks, *, title: str = "CCRec") -> FastAPI:
    """The HTTP API around ``pipeline`` (recommendations) and ``clicks`` (events)."""
    app = FastAPI(
        title=title, version=API_VERSION,
        description="Real-time category recommendations (the cascading CCRec model).",
    )

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type")}
                  for e in exc.errors()]
        return JSONResponse({"detail": errors}, status_code=422)

    @app.exception_handler(ModelNotReady)
    async def not_ready(request: Request, exc: ModelNotReady) -> JSONResponse:
        return JSONResponse({"detail": f"not ready: {exc}"}, status_code=503)

    @app.exception_handler(StreamUnavailable)
    async def no_stream(request: Request, exc: StreamUnavailable) -> JSONResponse:
        return JSONResponse({"detail": f"event stream unavailable: {exc}"}, status_code=503)

    unavailable = {503: {"model": Problem, "description": "Model, features or stream not ready."},
                   413: {"model": Problem, "description": "Request body too large."},
                   400: {"model": Problem, "description": "Body is not decodable JSON."}}

    @app.post("/v1/recommendations", response_model=RecommendationResponse,
              responses=unavailable, tags=["recommendations"])
    async def recommendations(body: RecommendationRequest) -> RecommendationResponse:
        """Top-k categories for a user; unknown or cold users get a flagged cold-start answer."""
        rec = await pipeline.recommend(body.user_id, body.k, body.exclude)
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
        )

    @app.post("/v1/events", status_code=202, response_model=EventAccepted,
              responses=unavailable, tags=["events"])
    async def events(event: ClickEvent) -> EventAccepted:
        """Validate one interaction (a click) and produce it to Kafka for the stream worker."""
        accepted = await clicks.send(event)
        pipeline.metrics.events.inc()
        return accepted

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}},
             tags=["operations"])
    async def readyz() -> JSONResponse:
        """Readiness: 200 once both stages hold a bundle and the feature store answers."""
        state = await pipeline.ready()
        return JSONResponse(jsonable_encoder(state), status_code=200 if state.ready else 503)

    @app.get("/metrics", tags=["operations"], response_class=Response)
    async def metrics() -> Response:
        """Prometheus metrics of this process."""
        return Response(pipeline.metrics.render(),
                        media_type="text/plain; version=0.0.4; charset=utf-8")

    app.add_middleware(BodyLimit, pipeline=pipeline)
    return app
