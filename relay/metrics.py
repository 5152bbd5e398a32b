"""Prometheus metrics of the relay, and the small functions its hot path records them with.

Everything lives in one `CollectorRegistry` per process (`REGISTRY`), served by `/metrics`
(`oneapi.metrics_view`). Several processes on one host are scraped one by one, not merged:
a node runs a single Daphne process (see deploy/), so Prometheus scrapes every node's
`/metrics` directly (never through the load balancer, which would pick one node per scrape)
and PromQL sums across `instance`. prometheus_client's multiprocess mode is deliberately not
used: it needs a directory shared by the processes and wiped at every start, a mode chosen per
gauge, and a file write per update, and buys nothing with one process per node. Should a host
ever run several relay processes, give each its own port and scrape target. Counters reset
when a process restarts; `rate()` and `increase()` handle that.

Recording is in-memory (a lock and a dict lookup per call): the relay's hot path stays free
of I/O and database reads. Only the channel health gauge reads the routing table, at scrape
time, in the `/metrics` view's thread.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from billing.journal import UsageRecord

logger = logging.getLogger(__name__)

Send = Callable[[dict[str, Any]], Awaitable[None]]

REGISTRY = CollectorRegistry()
# The process's own CPU, memory, open files and GC, as the default registry would have them.
for _collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
    REGISTRY.register(_collector)

# LLM answers take from milliseconds (models list, cached errors) to minutes (long streams).
LATENCY_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600)

REQUESTS = Counter(
    "oneapi_relay_requests",
    "Relay requests answered, by route family and HTTP status.",
    ["route", "status"],
    registry=REGISTRY,
)
REQUEST_DURATION = Histogram(
    "oneapi_relay_request_duration_seconds",
    "Time from a relay request's arrival to its last byte (the whole stream for streams).",
    ["route"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
IN_FLIGHT = Gauge(
    "oneapi_relay_requests_in_flight",
    "Relay requests being served by this process.",
    registry=REGISTRY,
)
ERRORS = Counter(
    "oneapi_relay_errors",
    "Relay error responses by error type (the body's error.type; stream_failed for a stream "
    "that broke after its headers).",
    ["type"],
    registry=REGISTRY,
)
UPSTREAM_ATTEMPTS = Counter(
    "oneapi_upstream_attempts",
    "Upstream attempts by channel, channel type and outcome (success, or failure with the "
    "status class of the upstream's answer).",
    ["channel", "channel_type", "outcome", "status_class"],
    registry=REGISTRY,
)
UPSTREAM_DURATION = Histogram(
    "oneapi_upstream_duration_seconds",
    "Time an upstream attempt took, up to its response (a stream's headers); measured from "
    "the previous attempt or the request's arrival unless the caller timed it.",
    ["channel", "channel_type", "outcome"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
TOKENS = Counter(
    "oneapi_relay_tokens",
    "Tokens billed, by model, channel and kind (prompt, completion). Counted from the consume "
    "log, so only while LogConsumeEnabled is on.",
    ["model", "channel", "kind"],
    registry=REGISTRY,
)
QUOTA = Counter(
    "oneapi_relay_quota",
    "Quota charged, by model and channel (model is empty while LogConsumeEnabled is off).",
    ["model", "channel"],
    registry=REGISTRY,
)

_children: dict[tuple[int, tuple[str, ...]], Any] = {}


def child(metric: Any, *labels: str) -> Any:
    """`metric.labels(*labels)`, remembered: prometheus_client builds and locks on every
    `labels()` call, and the hot path makes about ten per request. The label sets are the
    ones the registry keeps anyway (nothing here ever removes a child)."""
    key = (id(metric), labels)
    found = _children.get(key)
    if found is None:
        found = _children[key] = metric.labels(*labels)
    return found


# The first path segment (after /v1) -> the route family label; anything else is "other".
ROUTE_FAMILIES = {
    "chat": "chat",
    "completions": "completions",
    "embeddings": "embeddings",
    "engines": "embeddings",
    "images": "images",
    "audio": "audio",
    "messages": "messages",
    "responses": "responses",
    "rerank": "rerank",
    "models": "models",
}
# What a request that ended without a response (the client went away) is counted as.
CLIENT_CLOSED_STATUS = 499


def route_family(path: str) -> str:
    if path.startswith("/v1/"):
        path = path[3:]
    segment = path.lstrip("/").split("/", 1)[0]
    return ROUTE_FAMILIES.get(segment, "other")


def status_class(status: int) -> str:
    return f"{status // 100}xx" if 100 <= status < 600 else "other"


# ------------------------------------------------------------------------- relay requests


@dataclass
class RequestTracker:
    """One relay request's measurements; `send` stands in for the ASGI `send` to see the
    status (and an error body) as the response goes out."""

    route: str
    started: float = field(default_factory=time.perf_counter)
    status: int = 0
    # Where the current upstream attempt started: the request's arrival, then each outcome.
    attempt_started: float = 0.0
    _error_pending: bool = False

    def __post_init__(self) -> None:
        self.attempt_started = self.started

    def response_started(self, status: int, body: bytes | None = None) -> None:
        """The status going out; `body` is an error answer's body, for its error type. The
        relay's own layer calls this instead of wrapping `send` (a coroutine per message)."""
        self.status = status
        if status >= 400 and body is not None:
            child(ERRORS, error_type(body)).inc()

    def wrap(self, send: Send) -> Send:
        async def observed_send(message: dict[str, Any]) -> None:
            kind = message["type"]
            if kind == "http.response.start":
                self.status = message["status"]
                self._error_pending = self.status >= 400
            elif kind == "http.response.body" and self._error_pending:
                self._error_pending = False
                child(ERRORS, error_type(message.get("body", b""))).inc()
            await send(message)

        return observed_send

    def finish(self) -> None:
        status = self.status or CLIENT_CLOSED_STATUS
        child(REQUESTS, self.route, str(status)).inc()
        child(REQUEST_DURATION, self.route).observe(time.perf_counter() - self.started)
        IN_FLIGHT.dec()


_current: ContextVar[RequestTracker | None] = ContextVar("oneapi_relay_request", default=None)


def start_request(path: str) -> tuple[RequestTracker, object]:
    """Count a request in flight; returns its tracker and the token `end_request` needs."""
    tracker = RequestTracker(route_family(path))
    IN_FLIGHT.inc()
    return tracker, _current.set(tracker)


def end_request(tracker: RequestTracker, token: object) -> None:
    tracker.finish()
    _current.reset(token)  # type: ignore[arg-type]


def error_type(body: bytes) -> str:
    """error.type of an OpenAI- or Anthropic-shaped error body; "unknown" for anything else."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return "unknown"
    error = data.get("error") if isinstance(data, dict) else None
    kind = error.get("type") if isinstance(error, dict) else None
    return kind if isinstance(kind, str) and kind else "unknown"


def record_error(kind: str) -> None:
    child(ERRORS, kind).inc()


# ------------------------------------------------------------------------------ upstreams


def _channel_type(channel_id: int) -> str:
    """The channel's type from the routing table already loaded; never loads it (this runs
    on the event loop, where a database read is not allowed)."""
    from channels_mgmt import selection

    table = selection._table.peek()
    info = table.channels.get(channel_id) if table is not None else None
    return str(info.type) if info is not None else ""


def record_upstream(
    channel_id: int,
    failed_status: int | None = None,
    *,
    channel_type: int | None = None,
    latency: float | None = None,
) -> None:
    """One attempt's outcome: success when `failed_status` is None. Without `latency`, the
    time since the request's previous attempt (or its arrival) is taken."""
    now = time.perf_counter()
    tracker = _current.get()
    if latency is None and tracker is not None:
        latency = now - tracker.attempt_started
    if tracker is not None:
        tracker.attempt_started = now
    channel = str(channel_id)
    kind = str(channel_type) if channel_type is not None else _channel_type(channel_id)
    outcome = "success" if failed_status is None else "failure"
    klass = "2xx" if failed_status is None else status_class(failed_status)
    child(UPSTREAM_ATTEMPTS, channel, kind, outcome, klass).inc()
    if latency is not None:
        child(UPSTREAM_DURATION, channel, kind, outcome).observe(max(latency, 0.0))


# --------------------------------------------------------------------------------- usage


def _count(raw: object) -> int:
    try:
        return max(int(raw or 0), 0)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return 0


def record_usage(record: UsageRecord) -> None:
    """Tokens and quota of one settled charge. Without its consume log (LogConsumeEnabled
    off) only the quota is known, and only by channel."""
    channel = str(record.channel_id)
    log = record.log
    model = str(log.get("model_name") or "") if log else ""
    child(QUOTA, model, channel).inc(max(record.quota, 0))
    if log:
        child(TOKENS, model, channel, "prompt").inc(_count(log.get("prompt_tokens")))
        child(TOKENS, model, channel, "completion").inc(_count(log.get("completion_tokens")))


# ---------------------------------------------------------------------------- channel health


class ChannelHealthCollector(Collector):
    """`oneapi_channel_enabled`: 1 per enabled channel, 0 per disabled one (manually or
    automatically), from the routing table at scrape time (it holds every channel row)."""

    name = "oneapi_channel_enabled"

    def _family(self) -> GaugeMetricFamily:
        return GaugeMetricFamily(
            self.name,
            "Whether the channel is enabled (1) or disabled (0).",
            labels=["channel", "channel_type", "name"],
        )

    def describe(self) -> Iterable[GaugeMetricFamily]:
        # Without this, registering would call collect() and so read the database at import.
        return [self._family()]

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from channels_mgmt import selection

        family = self._family()
        try:
            channels = selection.routing_table().channels
        except Exception:
            # The relay's own metrics are still worth a scrape while the database is down.
            logger.warning("metrics: the routing table could not be loaded", exc_info=True)
            channels = {}
        for info in sorted(channels.values(), key=lambda info: info.id):
            family.add_metric(
                [str(info.id), str(info.type), info.name], 1.0 if info.is_enabled else 0.0
            )
        yield family


REGISTRY.register(ChannelHealthCollector())
