"""Staging directories: where a data set is written before it is renamed into place.

A staging directory is named ``.tmp-{final name}-{pid}-{8 hex digits}@{host}`` so that a later
run can tell whether the process that made it is gone: a directory left by a killed process
(``kill -9``, a crash, a power cut) is removed by the next ``ensure_dataset`` or conversion, one
whose process still runs on this host is never touched, and one made on another host (a cache on
a shared file system) is left alone because its pid means nothing here. SIGTERM while a staging
directory exists removes it before the process dies of the signal as it would have without it.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

PREFIX = ".tmp-"
_PATTERN = re.compile(r"^\.tmp-(?P<name>.+)-(?P<pid>\d+)-(?P<tag>[0-9a-f]{8})(?:@(?P<host>[^@/]+))?$")


def this_host() -> str:
    """This machine's name as it appears in staging names (no '@' or path separators)."""
    return re.sub(r"[^A-Za-z0-9.-]", "_", socket.gethostname()) or "localhost"


def staging_name(final_name: str) -> str:
    """A fresh staging name for ``final_name`` owned by this process."""
    return f"{PREFIX}{final_name}-{os.getpid()}-{uuid.uuid4().hex[:8]}@{this_host()}"


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host (a zombie counts as gone)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def is_stale(path: Path) -> bool:
    """Whether ``path`` is a staging directory of a process on this host that no longer exists."""
    match = _PATTERN.match(path.name)
    if match is None or not path.is_dir():
        return False
    host = match["host"]
    if host is not None and host != this_host():
        return False
    return not pid_alive(int(match["pid"]))


def remove_stale_staging(parent: Path, final_name: str | None = None) -> list[Path]:
    """Remove the staging directories in ``parent`` (for ``final_name`` only, if given) left by dead processes.

    Returns the removed paths. Cheap: one directory listing, nothing when ``parent`` does not exist.
    """
    if not parent.is_dir():
        return []
    removed = []
    for path in parent.iterdir():
        if not path.name.startswith(PREFIX) or not is_stale(path):
            continue
        if final_name is not None and _PATTERN.match(path.name)["name"] != final_name:  # type: ignore[index]
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


class Terminated(BaseException):
    """SIGTERM arrived while a staging directory existed; raised so that cleanup code runs.

    A BaseException, so ``except Exception`` handlers between here and the staging context do not
    swallow it.
    """


@contextmanager
def _sigterm_raises() -> Iterator[None]:
    """Within the block, SIGTERM raises ``Terminated``; after the cleanup the signal is delivered again.

    Only where SIGTERM has its default action and only in the main thread (where Python runs
    signal handlers): a program with its own SIGTERM handler keeps it.
    """
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        yield
        return
    state = {"raised": False}

    def handler(signum: int, frame: Any) -> None:
        if not state["raised"]:  # a second SIGTERM must not interrupt the cleanup of the first
            state["raised"] = True
            raise Terminated(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if state["raised"]:  # even if something on the way turned Terminated into another exception
            signal.raise_signal(signal.SIGTERM)  # die of the signal, as without this handler


@contextmanager
def staging_dir(parent: Path, final_name: str) -> Iterator[Path]:
    """A new, empty staging directory in ``parent``, removed on exit unless the block renamed it away.

    Removed on errors, KeyboardInterrupt and SIGTERM alike; a staging directory of a process
    killed outright is left for ``remove_stale_staging``.
    """
    with _sigterm_raises():
        staging = parent / staging_name(final_name)
        staging.mkdir()
        try:
            yield staging
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)


def discard(path: Path) -> None:
    """Remove a directory by first renaming it to a staging name of this process.

    The rename is atomic, so a concurrent reader never sees a half-deleted data set under its
    final name, and an interrupted removal is cleaned up like any stale staging directory.
    """
    trash = path.parent / staging_name(path.name)
    try:
        os.rename(path, trash)
    except FileNotFoundError:
        return  # someone else removed it first
    shutil.rmtree(trash, ignore_errors=True)
