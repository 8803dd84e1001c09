"""What an ingest route records per request, kept lean (``metrics/lean.py``), and the reason a
refused request is counted under."""

from __future__ import annotations

from collections.abc import Mapping

from fastapi import FastAPI
from prometheus_client import Counter

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
    """One ingest route's per-request metrics, each a single lean ``observe``.

    ``direct`` is for the requests ``DirectIngest`` serves, which no middleware sees: one
    observation of a 202 is its ingest latency, its HTTP duration and its HTTP count. ``app``
    is for those that come through the app, whose middleware counts and times the request.
    """

    __slots__ = ("_direct_refusals", "_metrics", "_route", "_statuses", "app", "direct")

    def __init__(self, metrics: Metrics, route: str, status: int = 202) -> None:
        self._metrics = metrics
        self._route = route
        latency = metrics.ingest_latency.labels(route)
        duration = metrics.http_duration.labels(route, "POST")
        self.direct = metrics.observations([latency, duration], self._requests(status))
        self.app = metrics.observations([latency])
        self._direct_refusals = metrics.observations([duration])
        self._statuses: dict[int, Tally] = {}

    def refused(self, exc: Exception, status: int, seconds: float, *, direct: bool) -> None:
        self._metrics.rejected.labels(rejection_reason(exc, status)).inc()
        if direct:
            self._direct_refusals.observe(seconds)
            tally = self._statuses.get(status)
            if tally is None:
                tally = self._statuses[status] = self._metrics.tally(self._requests(status))
            tally.count += 1

    def _requests(self, status: int) -> Counter:
        return self._metrics.http_requests.labels(self._route, "POST", str(status))


def recorders(
    app: FastAPI, metrics: Metrics, routes: Mapping[str, int]
) -> dict[str, RouteRecorder]:
    """The recorders of the ingest routes named in ``routes`` (name: success status), by name
    (``app.state.ingest_recorders``)."""
    return {
        name: RouteRecorder(metrics, app.url_path_for(name), status)
        for name, status in routes.items()
    }
