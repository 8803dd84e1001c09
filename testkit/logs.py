"""The end of a process's log file, for error messages."""

from __future__ import annotations

from pathlib import Path


def tail(path: str | Path, limit: int | None = 8000) -> str:
    """The last ``limit`` characters of the file (all for None); a note if it cannot be read."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
        return text if limit is None else text[-limit:]
    except OSError as exc:
        return f"<could not read {path}: {exc}>"
