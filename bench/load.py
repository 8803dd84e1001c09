"""The load: wrk with the bench's Lua script, and the request bodies it sends."""

from __future__ import annotations

import asyncio
import os
import resource
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

_SCRIPT = Path(__file__).with_name("lua") / "post.lua"
EVENT_TYPE = "ORDER_CREATED"


def single_body() -> bytes:
    return orjson.dumps(
        {"type": EVENT_TYPE, "payload": {"order_id": "A-1001", "amount": 42.5, "currency": "EUR"}}
    )


def batch_body(size: int) -> bytes:
    events = [
        {"type": EVENT_TYPE, "payload": {"order_id": f"A-{n}", "amount": 42.5, "currency": "EUR"}}
        for n in range(size)
    ]
    return orjson.dumps({"events": events})


def segment_batch_body(size: int) -> bytes:
    """``size`` Segment track messages for ``POST /v1/batch``, as a library sends them but
    without ``messageId``: wrk sends one body again and again, and with ids every repeat would
    be a duplicate that stores nothing."""
    batch = [
        {
            "type": "track",
            "event": "Order Completed",
            "userId": f"user-{n}",
            "timestamp": "2026-01-02T03:04:05.678Z",
            "properties": {"order_id": f"A-{n}", "revenue": 42.5, "currency": "EUR"},
            "context": {"library": {"name": "analytics-python", "version": "2.4.0"}},
        }
        for n in range(size)
    ]
    return orjson.dumps({"batch": batch, "sentAt": "2026-01-02T03:04:06Z"})


@dataclass(frozen=True, slots=True)
class Load:
    """What wrk sends, where, and how hard."""

    port: int
    path: str
    body: bytes
    #: A bearer token, or ``Basic …``/``Bearer …``: the whole ``Authorization`` value.
    token: str | None
    connections: int
    duration_s: int
    threads: int = 1
    #: Requests per second over all connections (None: as fast as the server answers).
    rate: float | None = None
    #: Keep the id of every 202 (single-event responses) to check them against the database.
    collect_ids: bool = False
    #: GET sends no body; ``accepted`` then counts the answers with ``ok_status``.
    method: str = "POST"
    ok_status: int = 202


@dataclass(slots=True)
class WrkResult:
    duration_s: float
    requests: int
    accepted: int
    other_statuses: dict[str, int]
    errors: dict[str, int]
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    #: CPU seconds wrk itself used (it shares the machine with the server).
    cpu_s: float
    ids: list[str] = field(default_factory=list)

    @property
    def accepted_per_s(self) -> float:
        return self.accepted / self.duration_s if self.duration_s > 0 else 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "duration_s": round(self.duration_s, 3),
            "requests": self.requests,
            "accepted": self.accepted,
            "other_statuses": self.other_statuses,
            "errors": self.errors,
            "latency_ms": {
                "p50": self.p50_ms,
                "p90": self.p90_ms,
                "p99": self.p99_ms,
                "max": self.max_ms,
            },
            "wrk_cpu_s": round(self.cpu_s, 2),
        }


class WrkError(RuntimeError):
    """wrk is missing or failed."""


def wrk_binary() -> str:
    binary = shutil.which("wrk")
    if binary is None:
        raise WrkError("wrk not found on PATH: apt-get install wrk")
    return binary


async def run_wrk(load: Load, workdir: Path) -> WrkResult:
    """Run wrk for ``load.duration_s`` seconds; the summary comes from the Lua ``done`` hook."""
    body_file, out_file, ids_dir = _prepare(workdir, load)
    env = {
        **os.environ,
        "BENCH_BODY_FILE": str(body_file),
        "BENCH_OUT": str(out_file),
        "BENCH_TOKEN": load.token or "",
        "BENCH_THREADS": str(load.threads),
        "BENCH_RATE": f"{load.rate:.3f}" if load.rate else "",
        "BENCH_IDS_DIR": str(ids_dir) if load.collect_ids else "",
        "BENCH_METHOD": load.method,
        "BENCH_OK_STATUS": str(load.ok_status),
    }
    threads = max(1, min(load.threads, load.connections))
    args = [
        wrk_binary(),
        f"-t{threads}",
        f"-c{load.connections}",
        f"-d{max(1, load.duration_s)}s",
        "--timeout",
        "10s",
        "-s",
        str(_SCRIPT),
        f"http://127.0.0.1:{load.port}{load.path}",
    ]
    # wrk is the only child reaped while it runs, so the children's rusage delta is its own.
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        *args,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await proc.communicate()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0 or not out_file.exists():
        raise WrkError(
            f"wrk failed (exit {proc.returncode}) after {time.monotonic() - started:.1f} s:\n"
            + output.decode(errors="replace")[-3000:]
        )
    cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return _parse(orjson.loads(out_file.read_bytes()), cpu_s, ids_dir if load.collect_ids else None)


def _prepare(workdir: Path, load: Load) -> tuple[Path, Path, Path]:
    """The body file, the summary file and the ids directory of one wrk run, made fresh."""
    workdir.mkdir(parents=True, exist_ok=True)
    body_file, out_file, ids_dir = workdir / "body.json", workdir / "wrk.json", workdir / "ids"
    body_file.write_bytes(load.body)
    out_file.unlink(missing_ok=True)
    shutil.rmtree(ids_dir, ignore_errors=True)
    if load.collect_ids:
        ids_dir.mkdir()
    return body_file, out_file, ids_dir


def _parse(summary: dict[str, Any], cpu_s: float, ids_dir: Path | None) -> WrkResult:
    latency = summary["latency_us"]
    ids: list[str] = []
    if ids_dir is not None:
        for part in sorted(ids_dir.glob("ids-*.txt")):
            ids += part.read_text().split()
    return WrkResult(
        duration_s=summary["duration_us"] / 1e6,
        requests=summary["requests"],
        accepted=summary["accepted"],
        other_statuses=summary["other_statuses"],
        errors=summary["errors"],
        p50_ms=latency["p50"] / 1000,
        p90_ms=latency["p90"] / 1000,
        p99_ms=latency["p99"] / 1000,
        max_ms=latency["max"] / 1000,
        cpu_s=cpu_s,
        ids=ids,
    )
