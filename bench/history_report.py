"""The history scenario's figures at each size, how they grow from N to 10 x N, and its table."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rich.table import Table

#: The reads measured at each size: name → what the table calls it. ``stats`` and the lists
#: have a latency target; the drawer (one event and its attempts) is shown without one.
READS: dict[str, str] = {
    "stats": "GET /stats",
    "list": "list, no filter",
    "failed": "list status=failed",
    "completed": "list status=completed",
    "queued": "list status=queued",
    "type": "list type=…",
    "deep": "list from a cursor 90 % deep",
    "drawer": "GET /events/{id} (drawer)",
}
LISTS = ("list", "failed", "completed", "queued", "type", "deep")
LATENCY_LIMIT_MS = 20.0
DASHBOARD_LIMIT_PERCENT = 10.0
STATS_TARGET = "stats p99≤20ms"
LISTS_TARGET = "lists p99≤20ms"
DASHBOARDS_TARGET = "dashboards: database +≤10% core"
TARGET_LABELS = (STATS_TARGET, LISTS_TARGET, DASHBOARDS_TARGET)


@dataclass(frozen=True, slots=True)
class Latency:
    p50_ms: float
    p99_ms: float
    requests: int
    #: Answers other than 200, and socket errors.
    errors: int


@dataclass(frozen=True, slots=True)
class SizeFigures:
    """Everything measured with ``events`` events in each history account."""

    events: int
    latency: dict[str, Latency]
    #: Role → CPU % of one core over the period without dashboards, and with them.
    baseline_cpu: dict[str, float]
    dashboards_cpu: dict[str, float]
    #: The roles that are the API, and those that are the database (the API's own process
    #: on SQLite, where the database is a library inside it).
    api_roles: tuple[str, ...]
    database_roles: tuple[str, ...]
    dashboards_open_s: float
    #: Metrics frames the dashboards received over the measured period (one a second each).
    dashboard_frames: int
    ingest_per_s: float

    @property
    def api_added(self) -> float | None:
        return added_cpu(self.baseline_cpu, self.dashboards_cpu, self.api_roles)

    @property
    def database_added(self) -> float | None:
        return added_cpu(self.baseline_cpu, self.dashboards_cpu, self.database_roles)


def growth(small: float | None, large: float | None) -> float | None:
    """How many times ``large`` is ``small`` (None when either is missing or ``small`` ≤ 0)."""
    if small is None or large is None or small <= 0:
        return None
    return round(large / small, 2)


def added_cpu(
    baseline: Mapping[str, float], busy: Mapping[str, float], roles: Sequence[str]
) -> float | None:
    """CPU % of one core that ``roles`` used in the busy period beyond the baseline period of the
    same length (negative when the difference is below the machine's noise)."""
    present = [r for r in roles if r in baseline and r in busy]
    if not present:
        return None
    return round(sum(busy[r] - baseline[r] for r in present), 1)


def _all_within(values: Sequence[float | None], limit: float) -> bool | None:
    if not values or any(v is None for v in values):
        return None
    return all(v is not None and v <= limit for v in values)


def checks(sizes: Sequence[SizeFigures]) -> list[tuple[str, bool | None]]:
    """Each target, met when it holds at every size."""
    return [
        (STATS_TARGET, _all_within([s.latency["stats"].p99_ms for s in sizes], LATENCY_LIMIT_MS)),
        (
            LISTS_TARGET,
            _all_within([s.latency[n].p99_ms for s in sizes for n in LISTS], LATENCY_LIMIT_MS),
        ),
        (
            DASHBOARDS_TARGET,
            _all_within([s.database_added for s in sizes], DASHBOARD_LIMIT_PERCENT),
        ),
    ]


def history_json(sizes: Sequence[SizeFigures], accounts: int, dashboards: int) -> dict[str, Any]:
    first, last = sizes[0], sizes[-1]
    return {
        "accounts": accounts,
        "dashboards": dashboards,
        "events_per_account": [s.events for s in sizes],
        "roles": {"api": list(first.api_roles), "database": list(first.database_roles)},
        "sizes": [
            {
                "events": s.events,
                "ingest_per_s": round(s.ingest_per_s, 1),
                "dashboards_open_s": round(s.dashboards_open_s, 2),
                "dashboard_frames": s.dashboard_frames,
                "latency": {
                    name: {"p50_ms": v.p50_ms, "p99_ms": v.p99_ms}
                    | {"requests": v.requests, "errors": v.errors}
                    for name, v in s.latency.items()
                },
                "cpu": {
                    "baseline": s.baseline_cpu,
                    "dashboards": s.dashboards_cpu,
                    "api_added": s.api_added,
                    "database_added": s.database_added,
                },
            }
            for s in sizes
        ],
        "growth": {
            **{
                name: {
                    "p50": growth(first.latency[name].p50_ms, last.latency[name].p50_ms),
                    "p99": growth(first.latency[name].p99_ms, last.latency[name].p99_ms),
                }
                for name in READS
            },
            "api_cpu_added": growth(first.api_added, last.api_added),
            "database_cpu_added": growth(first.database_added, last.database_added),
        },
        "targets": [{"target": label, "met": met} for label, met in checks(sizes)],
    }


def _ms(value: float) -> str:
    return f"{value:.1f}" if value < 100 else f"{value:,.0f}"


def _times(value: float | None) -> str:
    return "—" if value is None else f"x{value:.2f}"


def _cpu(cpu: Mapping[str, Any], added: str, roles: Sequence[str]) -> str:
    if cpu[added] is None:
        return "—"
    before = sum(cpu["baseline"].get(r, 0.0) for r in roles)
    return f"{cpu[added]:+.1f} ({before:.0f} → {before + cpu[added]:.0f})"


def history_table(mode: str, found: Mapping[str, Any]) -> Table:
    """One row per measure from ``history_json``: its value at N and at 10 x N, the growth, the
    target."""
    sizes, grew = found["sizes"], found["growth"]
    table = Table(
        title=f"{mode} · history (one run), {found['accounts']} account(s): p50 / p99 ms; "
        f"CPU % of one core added by {found['dashboards']} open dashboards (without → with)",
        title_justify="left",
    )
    table.add_column("measure", no_wrap=True)
    for s in sizes:
        table.add_column(f"{s['events']:,} events", justify="right", no_wrap=True)
    table.add_column("growth", justify="right", no_wrap=True)
    table.add_column("target", no_wrap=True)
    met = {t["target"]: t["met"] for t in found["targets"]}
    mark = {True: "[green]✓[/]", False: "[red]✗[/]", None: "[yellow]?[/]"}
    for name, label in READS.items():
        target = STATS_TARGET if name == "stats" else LISTS_TARGET if name in LISTS else None
        table.add_row(
            label,
            *(
                f"{_ms(s['latency'][name]['p50_ms'])} / {_ms(s['latency'][name]['p99_ms'])}"
                for s in sizes
            ),
            f"{_times(grew[name]['p50'])} / {_times(grew[name]['p99'])}",
            "" if target is None else f"{mark[met[target]]} p99≤{LATENCY_LIMIT_MS:.0f}ms",
        )
    roles = found["roles"]
    table.add_row(
        "API CPU, dashboards",
        *(_cpu(s["cpu"], "api_added", roles["api"]) for s in sizes),
        _times(grew["api_cpu_added"]),
        "",
    )
    inside = " (in the API)" if roles["database"] == roles["api"] else ""
    table.add_row(
        f"database CPU, dashboards{inside}",
        *(_cpu(s["cpu"], "database_added", roles["database"]) for s in sizes),
        _times(grew["database_cpu_added"]),
        f"{mark[met[DASHBOARDS_TARGET]]} +≤{DASHBOARD_LIMIT_PERCENT:.0f}% core",
    )
    table.add_row(
        "fewest requests of a read",
        *(f"{min(v['requests'] for v in s['latency'].values()):,}" for s in sizes),
        "",
        "",
    )
    table.add_row("dashboards open, s", *(f"{s['dashboards_open_s']:.1f}" for s in sizes), "", "")
    table.add_row("steady ingest, events/s", *(f"{s['ingest_per_s']:.0f}" for s in sizes), "", "")
    return table
