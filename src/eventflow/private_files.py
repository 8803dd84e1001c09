"""The data directory and EventFlow's files in it (database, JWT secret) for their owner alone."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import secrets
import stat
from pathlib import Path

log = logging.getLogger(__name__)

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path) -> None:
    """Create ``path`` 0700; if it exists with access for others, warn and leave it so.

    A directory EventFlow did not create may be one the operator shares on purpose (or
    ``/tmp``, or the working directory): changing its mode could break more than it
    protects, and the files EventFlow keeps in it are 0600 whatever the directory's mode.
    """
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & ~DIR_MODE:
        _warn_open_dir(path.resolve(), mode)


def private_file(path: Path) -> None:
    """Create ``path`` empty and 0600 if it does not exist; tighten it to 0600 if it does."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
    _restrict(path, FILE_MODE)


def tighten(path: Path) -> None:
    """Tighten an existing file to 0600; nothing if it does not exist."""
    with contextlib.suppress(FileNotFoundError):
        _restrict(path, FILE_MODE)


def create_once(path: Path, content: bytes) -> None:
    """Write ``content`` to ``path`` unless it exists, atomically: whoever reads ``path`` sees
    all of one writer's content or no file, and of several processes racing, one wins.

    The content goes to a temporary file in the same directory first (0600 from creation),
    which is then hard-linked to ``path``. ``os.link`` fails if ``path`` exists, which is the
    ``O_EXCL`` that makes racing processes agree on one winner; ``os.replace`` would not do:
    the last writer would replace a file a process already read and uses.
    """
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(content)
            file.flush()
            os.fsync(file.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    _sync_dir(path.parent)


@functools.cache  # once per directory and process: several components check the same one
def _warn_open_dir(path: Path, mode: int) -> None:
    log.warning(
        "the data directory %s is mode %04o: other users can list it; "
        "`chmod 700 %s` unless that is intended",
        path,
        mode,
        path,
    )


def _restrict(path: Path, mode: int) -> None:
    current = stat.S_IMODE(path.stat().st_mode)
    if current & ~mode == 0:
        return
    # EventFlow's own file, from an older version or restored from a backup with the umask's
    # mode: it holds secrets or events, so it is tightened.
    try:
        os.chmod(path, current & mode)
    except PermissionError:
        log.warning(
            "%s is mode %04o, and not this user's to change: make it %04o", path, current, mode
        )
        return
    log.warning("%s was mode %04o, open to other users; now %04o", path, current, current & mode)


def _sync_dir(path: Path) -> None:
    # So that the new name survives a crash, not only the file's content.
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
