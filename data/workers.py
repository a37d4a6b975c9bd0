"""Process pools for data generation whose workers never outlive the process that started them.

A forked ``ProcessPoolExecutor`` worker keeps its copy of the pool's pipes open, so when its
parent is killed outright (``kill -9``, the OOM killer) it never sees end-of-file and waits for
work forever, holding the generator's memory (hundreds of MB each). Each worker therefore asks
the kernel to kill it when its parent dies (Linux ``PR_SET_PDEATHSIG``), or polls its parent's pid
where that is not available. On an error or interruption in the parent the workers are killed
at once instead of being left to finish every queued shard into a directory that is being removed.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor

#: ``prctl`` option: the signal the kernel sends this process when its parent exits.
PR_SET_PDEATHSIG = 1
#: Seconds between parent checks of the fallback watchdog (platforms without ``prctl``).
WATCHDOG_INTERVAL = 0.5


def _request_death_signal() -> bool:
    """Ask Linux to SIGKILL this process when its parent exits; False where that is unavailable."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch_parent(parent_pid: int, interval: float) -> None:
    """Exit this process as soon as it is re-parented, i.e. its parent has died."""
    while True:
        time.sleep(interval)
        if os.getppid() != parent_pid:
            os._exit(1)


def die_with_parent(parent_pid: int) -> None:
    """Pool initializer: tie the worker's life to ``parent_pid`` and leave signals to the parent.

    SIGTERM goes back to its default (the parent's handler, inherited by fork, would try to clean
    up the parent's staging directory from here); SIGINT is ignored because Ctrl-C reaches the
    whole process group and the parent stops the workers itself.
    """
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if not _request_death_signal():
        threading.Thread(target=_watch_parent, args=(parent_pid, WATCHDOG_INTERVAL), daemon=True).start()
    if os.getppid() != parent_pid:  # the parent died before the request took effect
        os._exit(1)


def generation_pool(workers: int) -> ProcessPoolExecutor:
    """A fork-based pool whose workers die with this process (fork: they need only what is imported here)."""
    return ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("fork"),
        initializer=die_with_parent,
        initargs=(os.getpid(),),
    )


def stop_pool(pool: ProcessPoolExecutor, timeout: float = 5.0) -> None:
    """Kill the pool's workers now and drop its queued jobs.

    ``shutdown(wait=True)`` would let every running job finish first, which for a shard writer
    means more files appearing in a staging directory the caller is about to remove.
    """
    processes = list((getattr(pool, "_processes", None) or {}).values())
    for process in processes:
        if process.is_alive():
            process.kill()
    for process in processes:
        process.join(timeout)
    pool.shutdown(wait=True, cancel_futures=True)
