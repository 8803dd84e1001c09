"""Results: one run, the median over runs, the performance targets, the table and the JSON file."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.table import Table

from bench.history_report import TARGET_LABELS as HISTORY_TARGETS
from bench.stages import STAGES
from bench.usage import Usage

#: Roles that are EventFlow itself (the ceiling stands in for it in its own scenario).
EVENTFLOW_ROLES = ("up", "api", "worker", "ceiling")
CEILING = "ceiling"
HISTORY = "history"
#: The load generator's share of a run's CPU, beside the roles the usage sampler watches.
WRK = "wrk"
#: The processes in the order the CPU table shows them.
PROCESS_ORDER = ("ceiling", "up", "api", "worker", "postgres", "redis", WRK)


@dataclass(slots=True)
class RunResult:
    events_per_s: float
    p50_ms: float | None
    p99_ms: float | None
    usage: dict[str, Usage]
    #: One line for the table: what was verified, what else is worth seeing.
    notes: str
    #: CPU used meanwhile by processes that are neither EventFlow, its services nor wrk.
    others_cpu_percent: float
    #: False when a check failed (an acknowledged event missing, errors from the server).
    ok: bool = True
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def cpu_percent(self) -> float:
        return sum(u.cpu_percent for r, u in self.usage.items() if r in EVENTFLOW_ROLES)

    @property
    def peak_rss_mb(self) -> float:
        return max(
            (u.peak_rss_mb for r, u in self.usage.items() if r in EVENTFLOW_ROLES), default=0
        )

    @property
    def waiting_percent(self) -> float:
        """How long EventFlow's processes were ready to run but had no CPU to run on."""
        return sum(u.waiting_percent for r, u in self.usage.items() if r in EVENTFLOW_ROLES)

    @property
    def cpu_us_per_event(self) -> float | None:
        """EventFlow's CPU time per event: far steadier than events/s on a shared machine."""
        return _per_event(self.cpu_percent, self.events_per_s)

    def cpu_us_by_process(self) -> dict[str, float]:
        """CPU µs per event of each process of the run: EventFlow's, its services' and wrk's."""
        percents = {role: u.cpu_percent for role, u in self.usage.items()}
        wrk = self.details.get("wrk")
        if wrk and wrk.get("duration_s"):
            percents[WRK] = 100 * wrk["wrk_cpu_s"] / wrk["duration_s"]
        found = {role: _per_event(p, self.events_per_s) for role, p in percents.items()}
        return {role: us for role, us in found.items() if us is not None}

    def events_per_s_at_full_cpu(self, cpus: int) -> float | None:
        """The rate if all ``cpus`` did nothing but this run's work, at its CPU per event: an
        upper bound, since the processes never keep every CPU busy between them."""
        total = sum(self.cpu_us_by_process().values())
        return cpus * 1e6 / total if total > 0 else None

    @property
    def services_cpu_us_per_event(self) -> float | None:
        """PostgreSQL's and Redis's CPU time per event."""
        services = sum(u.cpu_percent for r, u in self.usage.items() if r not in EVENTFLOW_ROLES)
        return _per_event(services, self.events_per_s)

    def as_json(self) -> dict[str, Any]:
        return {
            "events_per_s": round(self.events_per_s, 1),
            "p50_ms": self.p50_ms,
            "p99_ms": self.p99_ms,
            "cpu_percent": round(self.cpu_percent, 1),
            "waiting_for_cpu_percent": round(self.waiting_percent, 1),
            "peak_rss_mb": self.peak_rss_mb,
            "cpu_us_per_event": self.cpu_us_per_event,
            "services_cpu_us_per_event": self.services_cpu_us_per_event,
            "cpu_us_per_event_by_process": self.cpu_us_by_process(),
            "others_cpu_percent": self.others_cpu_percent,
            "usage": {
                role: {
                    "cpu_percent": u.cpu_percent,
                    "waiting_for_cpu_percent": u.waiting_percent,
                    "peak_rss_mb": u.peak_rss_mb,
                }
                for role, u in self.usage.items()
            },
            "ok": self.ok,
            "notes": self.notes,
            **self.details,
        }


def _per_event(cpu_percent: float, events_per_s: float) -> float | None:
    if events_per_s <= 0:
        return None
    return round(cpu_percent / 100 * 1e6 / events_per_s, 1)


def _median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


@dataclass(slots=True)
class ScenarioResult:
    mode: str
    scenario: str
    runs: list[RunResult]

    @property
    def events_per_s(self) -> float:
        return statistics.median(r.events_per_s for r in self.runs)

    @property
    def p50_ms(self) -> float | None:
        return _median([r.p50_ms for r in self.runs])

    @property
    def p99_ms(self) -> float | None:
        return _median([r.p99_ms for r in self.runs])

    @property
    def cpu_percent(self) -> float:
        return statistics.median(r.cpu_percent for r in self.runs)

    @property
    def commit_p99_ms(self) -> float | None:
        """The database's own commit p99 (bench/commit_probe.py), median over the runs."""
        return _median([r.details.get("commit_probe", {}).get("p99_ms") for r in self.runs])

    @property
    def peak_rss_mb(self) -> float:
        return max(r.peak_rss_mb for r in self.runs)

    @property
    def others_cpu_percent(self) -> float:
        return statistics.median(r.others_cpu_percent for r in self.runs)

    @property
    def waiting_percent(self) -> float:
        return statistics.median(r.waiting_percent for r in self.runs)

    @property
    def cpu_us_per_event(self) -> float | None:
        return _median([r.cpu_us_per_event for r in self.runs])

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.runs)

    @property
    def median_run(self) -> RunResult:
        ordered = sorted(self.runs, key=lambda r: r.events_per_s)
        return ordered[(len(ordered) - 1) // 2]

    def of_ceiling_at_full_cpu(self, ceiling: float | None, cpus: int) -> float | None:
        """The median run's rate at full CPU (``RunResult.events_per_s_at_full_cpu``) over the
        ceiling: a ratio target above it needs less CPU per event, not less waiting."""
        rate = self.median_run.events_per_s_at_full_cpu(cpus)
        return round(rate / ceiling, 3) if rate is not None and ceiling else None

    def role_rss_mb(self, *roles: str) -> float:
        return max(
            (r.usage[x].peak_rss_mb for r in self.runs for x in roles if x in r.usage), default=0
        )

    def as_json(self, ceiling: float | None, cpus: int) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "scenario": self.scenario,
            "events_per_s": round(self.events_per_s, 1),
            "of_ceiling": round(self.events_per_s / ceiling, 3) if ceiling else None,
            "of_ceiling_at_full_cpu": self.of_ceiling_at_full_cpu(ceiling, cpus),
            "p50_ms": self.p50_ms,
            "p99_ms": self.p99_ms,
            "cpu_percent": self.cpu_percent,
            "waiting_for_cpu_percent": self.waiting_percent,
            "cpu_us_per_event": self.cpu_us_per_event,
            "peak_rss_mb": self.peak_rss_mb,
            "others_cpu_percent": self.others_cpu_percent,
            "ok": self.ok,
            "runs": [r.as_json() for r in self.runs],
        }


@dataclass(frozen=True, slots=True)
class Target:
    mode: str
    scenario: str
    label: str
    #: None when the run holds nothing to judge by.
    met: Callable[[ScenarioResult, float | None], bool | None]
    #: The ratio to the ceiling a target of events/s asks for (None for any other target).
    ratio: float | None = None


def _at_least(value: float | None, bound: float) -> bool | None:
    return None if value is None else value >= bound


def _at_most(value: float | None, bound: float) -> bool | None:
    return None if value is None else value <= bound


def _bounded_queue(result: ScenarioResult, _: float | None) -> bool | None:
    return all(bool(r.details.get("queue_bounded")) for r in result.runs)


def _api_rss(result: ScenarioResult, _: float | None) -> bool | None:
    return _at_most(result.role_rss_mb("api", "up"), 200)


def _of_ceiling(
    bound: float, measure: Callable[[ScenarioResult], float | None] | None = None
) -> Callable[[ScenarioResult, float | None], bool | None]:
    """At least ``bound`` times the same run's ceiling (of events/s, or of ``measure``)."""

    def met(result: ScenarioResult, ceiling: float | None) -> bool | None:
        value = result.events_per_s if measure is None else measure(result)
        return _at_least(value / ceiling, bound) if ceiling and value is not None else None

    return met


def _tail(result: ScenarioResult, _: float | None) -> bool | None:
    """p99 ≤ 25 ms, or at most 10 ms above the database's own commit p99 in the same runs:
    no design answers a durable 202 faster than the disk flushes."""
    if result.p99_ms is None:
        return None
    floor = result.commit_p99_ms
    return result.p99_ms <= 25 or (floor is not None and result.p99_ms <= floor + 10)


def _ingest_beside_worker(result: ScenarioResult) -> float | None:
    return _median([r.details.get("ingest_per_s") for r in result.runs])


def _history(label: str) -> Callable[[ScenarioResult, float | None], bool | None]:
    """The history scenario's own verdict on ``label`` (bench/history_report.py)."""

    def met(result: ScenarioResult, _: float | None) -> bool | None:
        found = [
            t["met"]
            for r in result.runs
            for t in r.details.get(HISTORY, {}).get("targets", [])
            if t["target"] == label
        ]
        return None if not found or None in found else all(found)

    return met


def _ratio(mode: str, scenario: str, bound: float) -> Target:
    """At least ``bound`` times the same run's ceiling, in events/s."""
    return Target(mode, scenario, f"≥{bound:g}x ceiling", _of_ceiling(bound), bound)


TAIL = "p99≤25ms or commit p99+10ms"
#: Held as ratios to the same run's ceiling, so that they mean the same on every machine.
TARGETS: tuple[Target, ...] = (
    _ratio("distributed", "ingest-single", 0.45),
    Target("distributed", "ingest-single", TAIL, _tail),
    _ratio("embedded", "ingest-single", 0.2),
    Target("embedded", "ingest-single", TAIL, _tail),
    _ratio("distributed", "ingest-batch", 5.0),
    _ratio("distributed", "end-to-end", 0.35),
    Target(
        "distributed",
        "end-to-end",
        "ingest ≥0.3x ceiling",
        _of_ceiling(0.3, _ingest_beside_worker),
    ),
    Target("distributed", "end-to-end", "p99≤1s", lambda r, _: _at_most(r.p99_ms, 1000)),
    Target("distributed", "end-to-end", "bounded queue", _bounded_queue),
    _ratio("distributed", "worker-drain", 1.0),
    *(
        Target(m, s, "API RSS≤200MB", _api_rss)
        for m in ("distributed",)
        for s in ("ingest-single", "ingest-batch", "end-to-end")
    ),
    *(
        Target(m, HISTORY, label, _history(label))
        for m in ("embedded", "postgres", "distributed")
        for label in HISTORY_TARGETS
    ),
)


def target_checks(result: ScenarioResult, ceiling: float | None) -> list[tuple[str, bool | None]]:
    return [
        (t.label, t.met(result, ceiling))
        for t in TARGETS
        if t.mode == result.mode and t.scenario == result.scenario
    ]


def ceiling_of(results: Sequence[ScenarioResult]) -> float | None:
    found = [r.events_per_s for r in results if r.scenario == CEILING]
    return found[0] if found else None


def _ms(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.1f}" if value < 100 else f"{value:,.0f}"


def _targets_cell(checks: list[tuple[str, bool | None]]) -> str:
    marks = {True: "[green]✓[/]", False: "[red]✗[/]", None: "[yellow]?[/]"}
    return "\n".join(f"{marks[met]} {label}" for label, met in checks)


def results_table(results: Sequence[ScenarioResult], title: str) -> Table:
    ceiling = ceiling_of(results)
    table = Table(title=title, title_justify="left", show_lines=True)
    for name in ("mode", "scenario"):
        table.add_column(name, no_wrap=True)
    for name in (
        "events/s",
        "x ceiling",
        "p50 ms",
        "p99 ms",
        "CPU % (waiting)",
        "CPU µs/event",
        "peak RSS MB",
        "others' CPU %",
    ):
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("targets", no_wrap=True)
    table.add_column("checks and notes (median run)", ratio=1)
    for result in results:
        ratio = f"{result.events_per_s / ceiling:.2f}" if ceiling else "—"
        notes = result.median_run.notes if result.ok else f"[red]{result.median_run.notes}[/]"
        table.add_row(
            result.mode,
            result.scenario,
            f"{result.events_per_s:,.0f}",
            ratio,
            _ms(result.p50_ms),
            _ms(result.p99_ms),
            f"{result.cpu_percent:.0f} ({result.waiting_percent:.0f})",
            _ms(result.cpu_us_per_event),
            f"{result.peak_rss_mb:.0f}",
            f"{result.others_cpu_percent:.0f}",
            _targets_cell(target_checks(result, ceiling)),
            notes,
        )
    return table


def stages_table(results: Sequence[ScenarioResult]) -> Table | None:
    """Each stage's p50 / p99 in ms (median run), beside the database's own commit latency."""
    rows = [r for r in results if r.median_run.details.get("stages")]
    if not rows:
        return None
    table = Table(
        title="Stages, p50 / p99 ms (median run; estimated from the processes' histograms)",
        title_justify="left",
    )
    for name in ("mode", "scenario"):
        table.add_column(name, no_wrap=True)
    table.add_column("database commit", justify="right", no_wrap=True)
    for stage in STAGES:
        table.add_column(stage.replace("_", " "), justify="right", no_wrap=True)
    for result in rows:
        run = result.median_run
        probe = run.details.get("commit_probe", {})
        seen = run.details["stages"]
        table.add_row(
            result.mode,
            result.scenario,
            f"{_ms(probe.get('p50_ms'))} / {_ms(probe.get('p99_ms'))}",
            *(
                f"{_ms(seen[stage]['p50_ms'])} / {_ms(seen[stage]['p99_ms'])}"
                if stage in seen
                else "—"
                for stage in STAGES
            ),
        )
    return table


def cpu_table(results: Sequence[ScenarioResult], cpus: int) -> Table | None:
    """Where each event's CPU goes, and the ratio the run would reach with every CPU busy.

    A ratio target above that bound cannot be met by waiting less (bigger groups, more
    connections, fewer round trips): only by spending less CPU per event somewhere.
    """
    ceiling = ceiling_of(results)
    rows = [r for r in results if r.scenario != CEILING and r.median_run.cpu_us_by_process()]
    if ceiling is None or not rows:
        return None
    seen = {p for r in rows for p in r.median_run.cpu_us_by_process()}
    processes = [p for p in PROCESS_ORDER if p in seen]
    table = Table(
        title=f"CPU µs per event by process (median run), and the ratio to the ceiling if all "
        f"{cpus} CPUs did only this work",
        title_justify="left",
    )
    for name in ("mode", "scenario"):
        table.add_column(name, no_wrap=True)
    for name in (*processes, "total", "x ceiling at full CPU"):
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("ratio targets within it", no_wrap=True)
    marks = {True: "[green]✓[/]", False: "[red]✗[/]"}
    for result in rows:
        spent = result.median_run.cpu_us_by_process()
        bound = result.of_ceiling_at_full_cpu(ceiling, cpus)
        within = (
            []
            if bound is None
            else [
                f"{marks[bound >= t.ratio]} {t.label}"
                for t in TARGETS
                if t.ratio is not None and (t.mode, t.scenario) == (result.mode, result.scenario)
            ]
        )
        table.add_row(
            result.mode,
            result.scenario,
            *(_ms(spent.get(p)) for p in processes),
            _ms(sum(spent.values())),
            "—" if bound is None else f"{bound:.2f}",
            "\n".join(within),
        )
    return table


def results_json(
    results: Sequence[ScenarioResult], meta: dict[str, Any], cpus: int
) -> dict[str, Any]:
    ceiling = ceiling_of(results)
    return {
        **meta,
        "ceiling_events_per_s": ceiling,
        "results": [r.as_json(ceiling, cpus) for r in results],
        "targets": [
            {"mode": r.mode, "scenario": r.scenario, "target": label, "met": met}
            for r in results
            for label, met in target_checks(r, ceiling)
        ],
    }
