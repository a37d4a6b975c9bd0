"""One run directory, one writer: a lock file that a training process holds while it may write the run.

Two processes writing one run directory (a second `--resume` while the first still trains, a job started
twice by a scheduler) interleave logs and overwrite each other's checkpoints without any error. The lock
is an advisory `flock` on `run.lock`, which the kernel drops when its holder dies, so a killed run never
blocks the next one; the file also records the holder's PID and host, so a refusal can say who holds it and
a lock left behind by a killed process is recognised as stale and taken over with a note.
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
from pathlib import Path

from data.staging import pid_alive

LOCK_FILE = "run.lock"


class RunLockError(RuntimeError):
    """Another live process holds the run directory; the message names it and the lock file."""


def read_holder(path: Path) -> dict:
    """The {pid, host} a lock file records; empty when it is unreadable (a holder killed while writing it)."""
    try:
        holder = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


class RunLock:
    """Held from `acquire()` to `release()`; release is idempotent, so it can sit in a `finally`."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise RunLockError naming its live holder. The file may be replaced by a holder
        releasing it between our open and our flock; then the lock we got is on a deleted file, so we retry
        on the new one (the usual lock-file race)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise RunLockError(self._refusal()) from None
            if self._same_file(fd):
                break
            os.close(fd)
        self._note_stale(read_holder(self.path))
        record = json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, record, 0)
        os.fsync(fd)
        self._fd = fd

    def release(self) -> None:
        """Remove the file, then drop the lock (in that order, so a waiting process never takes a lock on a
        file that is about to disappear without noticing: acquire() checks the inode)."""
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def _same_file(self, fd: int) -> bool:
        try:
            return os.stat(self.path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            return False

    def _refusal(self) -> str:
        holder = read_holder(self.path)
        who = f"process {holder['pid']}" if "pid" in holder else "another process"
        if holder.get("host") not in (None, socket.gethostname()):
            who += f" on {holder['host']}"
        return (f"run directory {self.path.parent} is in use by {who} (lock file {self.path}); "
                "wait for it to finish or stop it first")

    def _note_stale(self, holder: dict) -> None:
        """A lock file nobody holds was left by a process that died without releasing it (SIGKILL, power
        loss): say whose it was, since its last checkpoint may predate that process's last log lines."""
        if "pid" not in holder or holder.get("pid") == os.getpid():
            return
        state = "no longer running" if not pid_alive(int(holder["pid"])) else "no longer holding it"
        print(f"note: taking over the stale lock of process {holder['pid']} ({state}) in {self.path.parent}",
              file=sys.stderr)
