"""scripts/system-packages.sh: quiet when all is there, and stops a non-root user at once."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "system-packages.sh"
# As root, run it as nobody: a root run with something missing would really apt-get install.
AS_USER = ["runuser", "-u", "nobody", "--"] if os.geteuid() == 0 else []
PRESENT = "postgresql-15=/bin/sh chromium=/bin/sh"


def _run(probes: str, *env: str, path: str = "/usr/bin:/bin") -> tuple[int, str, float]:
    # `env -i`: no EVENTFLOW_TEST_* URL of the caller's may excuse a package. The script's text
    # goes in through `bash -c`, so the user nobody needs no access to the checkout.
    command = [*AS_USER, "/usr/bin/env", "-i", f"PATH={path}", *env]
    command += [f"EVENTFLOW_PACKAGE_PROBES={probes}"]
    command += ["/bin/bash", "-c", SCRIPT.read_text(), str(SCRIPT)]
    started = time.monotonic()
    done = subprocess.run(
        command, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30, check=False
    )
    return done.returncode, done.stdout + done.stderr, time.monotonic() - started


def test_nothing_missing_exits_zero_quietly() -> None:
    code, output, _ = _run(f"{PRESENT} redis-server=sh wrk=/bin/sh")

    assert (code, output) == (0, "")


def test_non_root_user_is_told_the_exact_command() -> None:
    code, output, seconds = _run(f"{PRESENT} redis-server=/nonexistent/redis-server wrk=no-wrk")

    assert code != 0
    assert seconds < 5
    assert "    sudo apt-get install -y redis-server wrk\n" in output
    assert "EVENTFLOW_TEST_DATABASE_URL" in output
    assert "EVENTFLOW_TEST_REDIS_URL" in output


def test_without_apt_get_it_names_the_packages(tmp_path: Path) -> None:
    code, output, _ = _run(f"{PRESENT} redis-server=/bin/sh wrk=no-wrk", path=str(tmp_path))

    assert code != 0
    assert "apt-get is not available: wrk\n" in output
    assert "sudo" not in output


def test_a_server_url_stands_in_for_its_package() -> None:
    probes = f"{PRESENT} redis-server=/nonexistent/redis-server wrk=/bin/sh"
    url = "EVENTFLOW_TEST_REDIS_URL=redis://127.0.0.1:6379/0"

    assert _run(probes)[0] != 0
    assert _run(probes, url)[:2] == (0, "")
