"""The machine a bench ran on: CPU, kernel, virtualisation and how fast its disk flushes."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from testkit import nearest_rank_percentile

#: Flushes of the fsync probe: about a second on a slow disk, enough for a p99.
FSYNC_PROBES = 200


def describe(workdir: Path) -> dict[str, Any]:
    """Everything that makes figures from two machines comparable, or not."""
    return {
        "cpu_model": cpu_model(),
        "cpus": os.cpu_count(),
        "memory_gb": _memory_gb(),
        "kernel": platform.release(),
        "virtualisation": virtualisation(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "fsync": fsync_probe(workdir),
    }


def cpu_model() -> str:
    for line in _read("/proc/cpuinfo").splitlines():
        if line.startswith("model name"):
            return line.partition(":")[2].strip()
    return platform.processor() or "unknown"


def virtualisation() -> str:
    """The hypervisor and the container, as ``systemd-detect-virt`` names them; a hypervisor
    it cannot name still shows in the CPU's flags."""
    vm, container = _detect_virt("--vm"), _detect_virt("--container")
    flags = next(
        (line for line in _read("/proc/cpuinfo").splitlines() if line.startswith("flags")), ""
    )
    if vm in ("none", "unknown") and " hypervisor" in flags.split(":", 1)[-1] + " ":
        vm = "a hypervisor (CPU flag)"
    parts = [f"VM: {vm}" if vm != "none" else "no VM"]
    if container not in ("none", "unknown"):
        parts.append(f"container: {container}")
    return ", ".join(parts)


def _detect_virt(kind: str) -> str:
    tool = shutil.which("systemd-detect-virt")
    if tool is None:
        return "unknown"
    done = subprocess.run([tool, kind], capture_output=True, text=True, timeout=10, check=False)
    return done.stdout.strip() or "unknown"


def fsync_probe(directory: Path, count: int = FSYNC_PROBES) -> dict[str, float]:
    """Latency of ``count`` 4 KiB write + ``fdatasync`` pairs in ``directory``, in ms: the
    floor under every durable commit on this disk (what ``pg_test_fsync`` measures)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "fsync-probe"
    block = os.urandom(4096)
    times: list[float] = []
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for n in range(count):
            os.pwrite(fd, block, (n % 16) * 4096)
            started = time.perf_counter()
            os.fdatasync(fd)
            times.append((time.perf_counter() - started) * 1000)
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)
    return {
        "probes": count,
        "p50_ms": round(nearest_rank_percentile(times, 50) or 0, 3),
        "p99_ms": round(nearest_rank_percentile(times, 99) or 0, 3),
        "max_ms": round(max(times), 3),
    }


def summary(machine: dict[str, Any]) -> str:
    """One line for the table's caption."""
    fsync = machine["fsync"]
    return (
        f"{machine['cpu_model']}, {machine['cpus']} CPUs, {machine['memory_gb']} GB, "
        f"kernel {machine['kernel']}, virtualisation {machine['virtualisation']}; "
        f"fdatasync p50 {fsync['p50_ms']:.2f} ms, p99 {fsync['p99_ms']:.2f} ms"
    )


def _memory_gb() -> float:
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 1024 / 1024, 1)
    return 0.0


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""
