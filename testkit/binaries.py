"""Where the tests' and the bench's system binaries are, and what to do when one is missing."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from _pytest.outcomes import Skipped  # pytest.skip.Exception, which mypy cannot subclass

#: The Debian package that scripts/system-packages.sh installs for the PostgreSQL server.
PG_PACKAGE = "postgresql-15"
PG_BIN_ENV = "EVENTFLOW_PG_BIN"
DEBIAN_PG_ROOT = Path("/usr/lib/postgresql")


class MissingService(Skipped):
    """A binary is not installed. Under pytest a skip, which tests/services_policy.py turns into
    a failure under CI=true; the bench reports it as the failure of the mode that needs it."""

    def __init__(self, binary: str, package: str) -> None:
        super().__init__(f"{binary} is not installed: sudo apt-get install -y {package}")
        self.binary = binary
        self.package = package


def require_service(binary: str, package: str) -> str:
    """The path of ``binary`` (an absolute path, or a command on PATH); raises MissingService."""
    path = binary if os.path.isabs(binary) else shutil.which(binary)
    if path is None or not os.access(path, os.X_OK):
        raise MissingService(binary, package)
    return path


def postgres_bin_dir(debian_root: Path = DEBIAN_PG_ROOT) -> Path:
    """The PostgreSQL server's binaries: ``$EVENTFLOW_PG_BIN`` if set, else ``pg_config
    --bindir`` when that folder holds ``pg_ctl`` (Debian's pg_config can belong to another
    version's client), else the newest ``/usr/lib/postgresql/*/bin`` (``debian_root``) that
    does."""
    configured = os.environ.get(PG_BIN_ENV)
    if configured:
        return Path(configured)
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        done = subprocess.run(
            [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=False
        )
        bindir = Path(done.stdout.strip())
        if done.returncode == 0 and (bindir / "pg_ctl").is_file():
            return bindir
    installed = [d / "bin" for d in debian_root.glob("*") if (d / "bin" / "pg_ctl").is_file()]
    if installed:
        return max(installed, key=_version_key)
    # Nothing found: name the usual place, so that the missing binary is what gets reported.
    return debian_root / PG_PACKAGE.removeprefix("postgresql-") / "bin"


def _version_key(bindir: Path) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", bindir.parent.name))


def pg_bin(name: str) -> str:
    """The absolute path of a PostgreSQL server binary such as ``pg_ctl``."""
    return require_service(str(postgres_bin_dir() / name), PG_PACKAGE)
