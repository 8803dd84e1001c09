"""Every metric EventFlow exports (docs/metrics.md lists them), made once per process."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from eventflow.metrics.lean import Observations, Tally
from eventflow.metrics.type_labels import DEFAULT_LIMIT, TypeLabels

#: Seconds, from half a millisecond (a group commit on a quiet PostgreSQL) to ten seconds.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
#: Handlers may call other services: up to a minute.
HANDLER_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
#: Events in one group commit (EVENTFLOW_GROUP_COMMIT_MAX is 2,000 by default).
GROUP_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)

INGEST_STAGES = ("wait", "insert", "commit", "publish", "answer")
WORKER_STAGES = ("claim", "handler", "outcome_write")
OUTCOMES = ("completed", "retrying", "failed")
DEPENDENCIES = ("database", "broker")


class Metrics:
    """One process's metrics, registered in ``registry`` (a new one by default, as in tests).

    With ``PROMETHEUS_MULTIPROC_DIR`` set (several HTTP processes, ``serve.py``), prometheus-client
    keeps every value in a file of that directory, and a scrape sums the processes' files
    (``exposition.py``); each gauge says how its processes' values combine.
    """

    def __init__(
        self, registry: CollectorRegistry | None = None, *, type_limit: int = DEFAULT_LIMIT
    ) -> None:
        self.registry = r = registry if registry is not None else CollectorRegistry()
        self.types = TypeLabels(type_limit)
        self._lean: list[Observations | Tally] = []

        self.accepted = Counter(
            "eventflow_events_accepted", "Events stored as new (answered 202)", registry=r
        )
        self.deduplicated = Counter(
            "eventflow_events_deduplicated",
            "Events answered 202 with an earlier event of the same Idempotency-Key",
            registry=r,
        )
        self.process_accepted = Gauge(
            "eventflow_process_events_accepted",
            "Events this process stored since it started (label pid with several HTTP processes)",
            multiprocess_mode="liveall",
            registry=r,
        )
        self.rejected = Counter(
            "eventflow_events_rejected",
            "Ingest requests refused, by reason (a refused batch counts once)",
            ["reason"],
            registry=r,
        )
        self.ingest_latency = Histogram(
            "eventflow_ingest_latency_seconds",
            "Ingest requests from their handler's start to the 202",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.ingest_stage = Histogram(
            "eventflow_ingest_stage_seconds",
            "Each group commit's stages: wait (its oldest request), insert, commit, publish, "
            "answer",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.group_size = Histogram(
            "eventflow_group_commit_events",
            "Events written by one group commit",
            buckets=GROUP_BUCKETS,
            registry=r,
        )
        self.completed = Counter(
            "eventflow_events_completed",
            "Events whose handler succeeded, by type",
            ["type"],
            registry=r,
        )
        self.retried = Counter(
            "eventflow_events_retried",
            "Attempts that failed and will be retried, by type",
            ["type"],
            registry=r,
        )
        self.failed = Counter(
            "eventflow_events_failed",
            "Events dead-lettered (failed for good), by type",
            ["type"],
            registry=r,
        )
        self.handler_duration = Histogram(
            "eventflow_handler_duration_seconds",
            "Handler run time, by event type",
            ["type"],
            buckets=HANDLER_BUCKETS,
            registry=r,
        )
        self.worker_stage = Histogram(
            "eventflow_worker_stage_seconds",
            "A worker's stages: claim (per batch), handler (per event), outcome_write (per batch)",
            ["stage"],
            buckets=HANDLER_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "eventflow_queue_depth",
            "Events ready to run and not yet claimed, read at scrape",
            multiprocess_mode="livemostrecent",
            registry=r,
        )
        self.oldest_age = Gauge(
            "eventflow_queue_oldest_age_seconds",
            "How long the longest-waiting ready event has waited, read at scrape",
            multiprocess_mode="livemostrecent",
            registry=r,
        )
        self.dependency_up = Gauge(
            "eventflow_dependency_up",
            "Whether the database and the broker answer (1) or not (0)",
            ["dependency"],
            multiprocess_mode="livemin",
            registry=r,
        )
        self.http_requests = Counter(
            "eventflow_http_requests",
            "HTTP requests answered, by route template, method and status",
            ["route", "method", "status"],
            registry=r,
        )
        self.http_duration = Histogram(
            "eventflow_http_request_duration_seconds",
            "HTTP requests from the application's start to the end of the answer",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self._handler_seconds: dict[str, Observations] = {}
        self.handler_stage = self.observations([self.worker_stage.labels("handler")])
        for dependency in DEPENDENCIES:
            self.dependency_up.labels(dependency).set(1)

    def observations(
        self, targets: Sequence[Histogram], counted: Counter | None = None
    ) -> Observations:
        """A lean recorder of ``targets`` (and ``counted``), flushed with the others."""
        lean = Observations(targets, counted)
        self._lean.append(lean)
        return lean

    def tally(self, target: Counter | Gauge) -> Tally:
        """A lean counter of ``target``, flushed with the others."""
        lean = Tally(target)
        self._lean.append(lean)
        return lean

    def flush(self) -> None:
        """Move what the lean recorders gathered into the metrics (once a second, and at scrape)."""
        for lean in self._lean:
            lean.flush()

    def handler_seconds(self, event_type: str) -> Observations:
        """The lean recorder of one type's handler durations."""
        label = self.types(event_type)
        lean = self._handler_seconds.get(label)
        if lean is None:
            lean = self._handler_seconds[label] = self.observations(
                [self.handler_duration.labels(label)]
            )
        return lean

    def count_outcomes(self, outcomes: Iterable[tuple[str, str]]) -> None:
        """Count settled attempts, given as (event type, outcome status), in one pass."""
        counts: dict[tuple[str, str], int] = {}
        for event_type, outcome in outcomes:
            key = (self.types(event_type), outcome)
            counts[key] = counts.get(key, 0) + 1
        by_outcome = {"completed": self.completed, "retrying": self.retried, "failed": self.failed}
        for (label, outcome), count in counts.items():
            by_outcome[outcome].labels(label).inc(count)

    def dependency(self, name: str, up: bool) -> None:
        self.dependency_up.labels(name).set(1 if up else 0)
