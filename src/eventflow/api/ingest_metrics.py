"""What an ingest route records per request, kept lean (``metrics/lean.py``), and the reason a
refused request is counted under."""

from __future__ import annotations

from fastapi import FastAPI

from eventflow.errors import Overloaded
from eventflow.metrics import Metrics
from eventflow.metrics.lean import Tally

_REASONS = {
    400: "invalid",
    415: "invalid",
    422: "invalid",
    401: "unauthorized",
    413: "too_large",
    429: "rate_limited",
    503: "unavailable",
}


def rejection_reason(exc: Exception, status: int) -> str:
    """The reason a refused ingest request is counted under (``eventflow_events_rejected``)."""
    if isinstance(exc, Overloaded):
        return "overloaded"
    return _REASONS.get(status, "invalid" if status < 500 else "error")


class RouteRecorder:
    """One ingest route's per-request metrics: its latency to the 202, and, for the requests
    ``DirectIngest`` serves (which no middleware sees), the HTTP request count and duration."""

    __slots__ = ("_direct_duration", "_latency", "_metrics", "_route", "_statuses")

    def __init__(self, metrics: Metrics, route: str) -> None:
        self._metrics = metrics
        self._route = route
        self._latency = metrics.observations(metrics.ingest_latency.labels(route))
        self._direct_duration = metrics.observations(metrics.http_duration.labels(route, "POST"))
        self._statuses: dict[int, Tally] = {}
        self._status(202)

    def accepted(self, seconds: float, *, direct: bool) -> None:
        self._latency.observe(seconds)
        if direct:
            self._direct_duration.observe(seconds)
            self._statuses[202].count += 1

    def refused(self, exc: Exception, status: int, seconds: float, *, direct: bool) -> None:
        self._metrics.rejected.labels(rejection_reason(exc, status)).inc()
        if direct:
            self._direct_duration.observe(seconds)
            self._status(status).count += 1

    def _status(self, status: int) -> Tally:
        tally = self._statuses.get(status)
        if tally is None:
            metric = self._metrics.http_requests.labels(self._route, "POST", str(status))
            tally = self._statuses[status] = self._metrics.tally(metric)
        return tally


def recorders(app: FastAPI, metrics: Metrics) -> tuple[RouteRecorder, RouteRecorder]:
    """The ingest routes' recorders, single events first (``app.state.ingest_recorders``,
    indexed by the handler's ``batch``)."""
    return (
        RouteRecorder(metrics, app.url_path_for("ingest_one")),
        RouteRecorder(metrics, app.url_path_for("ingest_batch")),
    )
