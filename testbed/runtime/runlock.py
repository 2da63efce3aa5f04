"""One testbed run at a time on a machine: an ``flock`` on ``/run/lvs-testbed.lock``.

For: keeping two processes from building layouts at once. Layouts name their switches and
root-namespace links ``s1``, ``s1-eth1``..., so a second run would collide with (or, with Open
vSwitch, silently replace) the first one's. A run takes the lock before it creates anything
and holds it until it has removed everything; a second process is refused with a message
naming the holder (pid, command, start time). The lock is re-entrant within one process:
several layouts built side by side by one process (``reproduce`` brings up dr, nat and nat1
together) share it, and it is released when the last of them is stopped.

The kernel drops an ``flock`` when its holder dies, so a ``kill -9`` never leaves a stale lock;
the file itself stays, naming its last holder. Its path follows the run root:
``<run root>.lock`` (``LVS_TESTBED_RUNDIR`` moves both, as tests do).

Not for: serialising development work on a shared machine (that is ``/run/lvs-dev-heavy.lock``
in the contributors' notes, a different file) or cleaning up (registry.py).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shlex
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from testbed.runtime.registry import proc_starttime, run_root


class RunLockBusy(RuntimeError):
    """Another process holds the run lock; the message names it and what to do."""

    def __init__(self, path: Path, holder: Holder | None) -> None:
        who = holder.describe() if holder is not None else "a process that did not say who it is"
        super().__init__(
            f"another testbed run holds {path}: {who}. Only one run may build layouts on a "
            "machine at a time: wait for it to end or stop it (its `exit`, Ctrl-C or SIGTERM "
            "tears it down); `lvs-testbed clean --force` stops it and removes what it made"
        )
        self.holder = holder


@dataclass(frozen=True)
class Holder:
    """Who holds the lock, as the holder wrote it into the file."""

    pid: int
    start: int | None  # start time in clock ticks since boot (with pid: the process's identity)
    command: str
    since: str  # wall-clock time the lock was taken, for people

    def alive(self) -> bool:
        return self.start is not None and proc_starttime(self.pid) == self.start

    def describe(self) -> str:
        return f"pid {self.pid} (`{self.command}`), running since {self.since}"


def lock_path() -> Path:
    root = run_root()
    return root.with_name(root.name + ".lock")


def read_holder(path: Path | None = None) -> Holder | None:
    """The holder named in the lock file (its last holder if nobody holds it now)."""
    try:
        data = json.loads((path or lock_path()).read_text())
        return Holder(int(data["pid"]), data.get("start"), str(data["command"]), str(data["since"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


@dataclass
class _Held:
    fd: int
    path: Path
    count: int
    pid: int  # a forked child shares the descriptor but does not hold the lock


_held: _Held | None = None
_guard = threading.Lock()


def _try_lock(path: Path) -> int | None:
    """A descriptor holding the lock, or None if another process holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    me = {
        "pid": os.getpid(),
        "start": proc_starttime(os.getpid()),
        "command": shlex.join(sys.argv)[:300] or sys.executable,
        "since": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(me) + "\n").encode(), 0)
    return fd


def acquire() -> None:
    """Take the lock (again, if this process holds it already); raise `RunLockBusy`."""
    global _held
    with _guard:
        if _held is not None and _held.pid == os.getpid():
            _held.count += 1
            return
        path = lock_path()
        fd = _try_lock(path)
        if fd is None:
            raise RunLockBusy(path, read_holder(path))
        _held = _Held(fd, path, 1, os.getpid())


def release() -> None:
    """Give back one `acquire`; the last one unlocks."""
    global _held
    with _guard:
        if _held is None or _held.pid != os.getpid():
            return
        _held.count -= 1
        if _held.count == 0:
            os.close(_held.fd)  # closing the last descriptor drops the flock
            _held = None


def held_here() -> bool:
    """Whether this process holds the lock."""
    return _held is not None and _held.pid == os.getpid()


@contextlib.contextmanager
def held_or_holder() -> Iterator[Holder | None]:
    """For ``clean``: hold the lock for the block if nobody else does (None: no run can start
    meanwhile), else yield the live holder and hold nothing."""
    try:
        acquire()
    except RunLockBusy as busy:
        yield busy.holder or Holder(-1, None, "unknown", "unknown")
        return
    try:
        yield None
    finally:
        release()
