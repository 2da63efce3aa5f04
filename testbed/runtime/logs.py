"""Where the daemons' logs are kept, and how big they may grow.

For: keeping the evidence of a run (a failover that did not happen, an experiment point that
failed) after the run is gone. Logs are not state: they live outside the run directory under
/run (which every teardown and ``lvs-testbed clean`` removes), in a directory of their own
per run:

- ``lvs-testbed up`` and other runs: ``/var/log/lvs-testbed/<run-id>/``
  (``LVS_TESTBED_LOGDIR`` moves the root); the newest `KEEP_RUNS` runs are kept, and at most
  `KEEP_BYTES` in all: the oldest go first when a new run starts;
- an experiment point: ``<point dir>/logs/<run-id>/``, beside its results
  (``LVS_TESTBED_LOGS_IN``, set by the point's process, names ``<point dir>/logs``); these
  belong to the results and are never pruned.

Each file is capped while the run lives (`LogCap`): past `MAX_FILE_BYTES` it is copied to
``<name>.1`` (replacing the older copy) and emptied, so a chatty daemon keeps at most about
twice the cap, the newest lines. The daemons write with O_APPEND and never notice.

Not for: what the daemons log (each daemon's own business) or the run registry (registry.py).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
from pathlib import Path

DEFAULT_ROOT = Path("/var/log/lvs-testbed")
MARKER = ".lvs-testbed-logs"  # marks a directory this module made (the only kind it prunes)
KEEP_RUNS = 20
KEEP_BYTES = 512 << 20
MAX_FILE_BYTES = 8 << 20
CHECK_EVERY_S = 1.0


def log_root() -> Path:
    return Path(os.environ.get("LVS_TESTBED_LOGDIR", str(DEFAULT_ROOT)))


def new_log_dir(run_id: str, parent: Path | None = None) -> Path:
    """Make the log directory of run ``run_id``: under ``parent``, else under
    ``$LVS_TESTBED_LOGS_IN`` (an experiment point's), else under `log_root` (pruned first)."""
    if parent is None and os.environ.get("LVS_TESTBED_LOGS_IN"):
        parent = Path(os.environ["LVS_TESTBED_LOGS_IN"])
    if parent is None:
        parent = log_root()
        prune(parent, KEEP_RUNS - 1, KEEP_BYTES)
    path = parent / run_id
    path.mkdir(parents=True, exist_ok=True)
    (path / MARKER).touch()
    return path


def _size(path: Path) -> int:
    total = 0
    for entry in path.rglob("*"):
        with contextlib.suppress(OSError):
            if entry.is_file():
                total += entry.stat().st_size
    return total


def prune(root: Path, keep_runs: int, keep_bytes: int) -> list[Path]:
    """Remove the oldest run log directories under ``root`` (only ones this module made)
    until at most ``keep_runs`` remain and they hold at most ``keep_bytes``. Returns what
    was removed."""
    if not root.is_dir():
        return []
    runs = sorted(
        (d for d in root.iterdir() if d.is_dir() and (d / MARKER).exists()),
        key=lambda d: d.stat().st_mtime,
    )
    sizes = {d: _size(d) for d in runs}
    total = sum(sizes.values())
    removed = []
    while runs and (len(runs) > keep_runs or total > keep_bytes):
        oldest = runs.pop(0)
        shutil.rmtree(oldest, ignore_errors=True)
        total -= sizes[oldest]
        removed.append(oldest)
    return removed


def cap_file(path: Path, max_bytes: int = MAX_FILE_BYTES) -> bool:
    """If ``path`` is past ``max_bytes``, keep its content as ``<path>.1`` and empty it
    (lines written between the copy and the truncation are lost). Returns whether it did."""
    try:
        if path.stat().st_size <= max_bytes:
            return False
        shutil.copyfile(path, path.with_name(path.name + ".1"))
        os.truncate(path, 0)
    except OSError:
        return False
    return True


class LogCap:
    """A thread that caps every ``*.log`` file of a directory once a second."""

    def __init__(self, directory: Path, max_bytes: int = MAX_FILE_BYTES) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.cuts = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="log-cap", daemon=True)

    def start(self) -> LogCap:
        self._thread.start()
        return self

    def check(self) -> None:
        for path in self.directory.glob("*.log"):
            if cap_file(path, self.max_bytes):
                self.cuts += 1

    def _run(self) -> None:
        while not self._stop.wait(CHECK_EVERY_S):
            self.check()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2 * CHECK_EVERY_S)
        self.check()
