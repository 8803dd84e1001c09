"""Runs the scenarios per mode with a progress display, then reports."""

from __future__ import annotations

import asyncio
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from bench import scenarios
from bench.history import history
from bench.history_report import history_table
from bench.load import wrk_binary
from bench.machine import describe
from bench.machine import summary as machine_summary
from bench.report import (
    CEILING,
    HISTORY,
    RunResult,
    ScenarioResult,
    cpu_table,
    results_json,
    results_table,
    stages_table,
)
from bench.scenarios import BenchOptions, Context
from bench.stack import MODES, Mode, Stack, settings_overrides
from eventflow import __version__
from testkit import MissingService

SCENARIOS = (
    CEILING,
    "ingest-single",
    "ingest-single-key",
    "ingest-batch",
    "segment-batch",
    "end-to-end",
    "worker-drain",
    HISTORY,
)
#: The ingest scenarios, by what each sends (``scenarios.ingest``).
INGEST_SHAPES = {
    "ingest-single": scenarios.SINGLE,
    "ingest-single-key": scenarios.SINGLE_KEY,
    "ingest-batch": scenarios.BATCH,
    "segment-batch": scenarios.SEGMENT,
}


class BenchUsageError(ValueError):
    """A bad --mode or --scenarios value."""


def parse_modes(text: str) -> tuple[Mode, ...]:
    if text == "all":
        return MODES
    for mode in MODES:
        if text == mode:
            return (mode,)
    raise BenchUsageError(f"--mode must be one of {', '.join(MODES)} or all, not {text!r}")


def parse_scenarios(text: str) -> tuple[str, ...]:
    if text == "all":
        return SCENARIOS
    chosen = tuple(s.strip() for s in text.split(",") if s.strip())
    unknown = [s for s in chosen if s not in SCENARIOS]
    if unknown or not chosen:
        raise BenchUsageError(f"--scenarios takes all or some of {', '.join(SCENARIOS)}")
    return tuple(s for s in SCENARIOS if s in chosen)


@dataclass(frozen=True, slots=True)
class Failure:
    mode: str
    scenario: str
    error: str


@dataclass(slots=True)
class Outcome:
    results: list[ScenarioResult]
    failures: list[Failure]


async def _one_run(scenario: str, ctx: Context, stack: Stack) -> RunResult:
    if scenario in INGEST_SHAPES:
        return await scenarios.ingest(ctx, stack, shape=INGEST_SHAPES[scenario])
    if scenario == "end-to-end":
        return await scenarios.end_to_end(ctx, stack)
    if scenario == HISTORY:
        return await history(ctx, stack)
    return await scenarios.worker_drain(ctx, stack)


def _runs(scenario: str, options: BenchOptions) -> int:
    """History runs once: each of its figures is over many requests already, and it loads ten
    times ``history_events`` events."""
    return 1 if scenario == HISTORY else options.runs


async def run_bench(
    modes: Sequence[Mode],
    chosen: Sequence[str],
    options: BenchOptions,
    workdir: Path,
    console: Console,
) -> Outcome:
    per_mode = [s for s in chosen if s != CEILING]
    total = sum(_runs(s, options) * (1 if s == CEILING else len(modes)) for s in chosen)
    outcome = Outcome([], [])
    progress = Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[status]}"),
        console=console,
    )
    with progress:
        task = progress.add_task("starting", total=total, status="")

        def say(status: str) -> None:
            progress.update(task, status=status)
            if status and not console.is_terminal:
                # No live display without a terminal (make bench | tee, CI): log the steps.
                console.log(f"{progress.tasks[0].description}: {status}")

        ctx = Context(options, workdir, say)

        async def repeat(mode: str, scenario: str, stack: Stack | None) -> None:
            runs: list[RunResult] = []
            count = _runs(scenario, options)
            for n in range(1, count + 1):
                progress.update(task, description=f"{mode} · {scenario} · run {n}/{count}")
                say("")
                try:
                    if stack is None:
                        runs.append(await scenarios.ceiling(ctx))
                    else:
                        runs.append(await _one_run(scenario, ctx, stack))
                except Exception as exc:
                    outcome.failures.append(Failure(mode, scenario, f"{type(exc).__name__}: {exc}"))
                    progress.advance(task, count - n + 1)
                    return
                progress.advance(task)
            outcome.results.append(ScenarioResult(mode, scenario, runs))

        if CEILING in chosen:
            await repeat("—", CEILING, None)
        for mode in modes:
            stack = Stack(mode, workdir)
            progress.update(task, description=f"{mode} · starting services")
            try:
                await stack.start()
                for scenario in per_mode:
                    await repeat(mode, scenario, stack)
            except (Exception, MissingService) as exc:
                outcome.failures.append(Failure(mode, "services", f"{type(exc).__name__}: {exc}"))
            finally:
                await stack.close()
    return outcome


def _tool_version(args: list[str]) -> str:
    try:
        done = subprocess.run(args, capture_output=True, timeout=10, check=False)
    except OSError:
        return "unknown"
    text = (done.stdout or done.stderr).decode(errors="replace").strip()
    return text.splitlines()[0] if text else "unknown"


def _meta(
    options: BenchOptions, modes: Sequence[Mode], chosen: Sequence[str], workdir: Path
) -> dict[str, Any]:
    return {
        "command": shlex.join(["python", "-m", "bench", *sys.argv[1:]]),
        "eventflow_version": __version__,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {
            **describe(workdir),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
            "wrk": _tool_version([wrk_binary(), "--version"]),
        },
        "modes": list(modes),
        "scenarios": list(chosen),
        "options": asdict(options),
        "settings": settings_overrides(),
    }


def main(
    mode: str,
    scenario_list: str,
    options: BenchOptions,
    json_path: Path | None,
    keep_logs: bool,
) -> int:
    """Run the bench and print the table; the exit status is 1 if any scenario failed."""
    modes = parse_modes(mode)
    chosen = parse_scenarios(scenario_list)
    err = Console(stderr=True, log_path=False)
    workdir = Path(tempfile.mkdtemp(prefix="eventflow-bench-"))
    # The fsync probe runs where the bench's databases live, before any load.
    meta = _meta(options, modes, chosen, workdir)
    try:
        outcome = asyncio.run(run_bench(modes, chosen, options, workdir, err))
    except KeyboardInterrupt:
        err.print(f"interrupted; logs are in {workdir}")
        return 130
    meta["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    title = (
        f"EventFlow {__version__} bench: median of {options.runs} run(s) of "
        f"{options.duration_s} s, {os.cpu_count()} CPUs, load average "
        f"{meta['machine']['load_average_at_start'][0]} at start"
    )
    out = Console()
    if not out.is_terminal:
        out = Console(width=200)
    out.print(results_table(outcome.results, title))
    cpus = meta["machine"]["cpus"] or 1
    for table in (stages_table(outcome.results), cpu_table(outcome.results, cpus)):
        if table is not None:
            out.print(table)
    for result in outcome.results:
        if result.scenario == HISTORY:
            out.print(history_table(result.mode, result.median_run.details["history"]))
    out.print(f"Machine: {machine_summary(meta['machine'])}")
    for failure in outcome.failures:
        err.print(f"[red]FAILED[/] {failure.mode} · {failure.scenario}: {failure.error}")
    if json_path is not None:
        report = results_json(outcome.results, meta, cpus)
        report["failures"] = [asdict(f) for f in outcome.failures]
        json_path.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
        err.print(f"JSON written to {json_path}")
    failed = bool(outcome.failures) or not all(r.ok for r in outcome.results)
    if failed or keep_logs:
        err.print(f"process logs are in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failed else 0
