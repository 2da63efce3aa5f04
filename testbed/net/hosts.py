"""Running commands in a layout's hosts, from the process that built it or from another one.

`TestbedHosts` wraps a live `Testbed` (the Mininet nodes are in this process). `RunHosts`
reaches the hosts of a run some other process built (``lvs-testbed up`` in another terminal)
through its record in the run registry: each host's shell pid, checked against its start
time, and ``mnexec -a PID`` to enter the host's namespaces. Failover, lab checks and tests
use either through the same small interface.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Protocol

from testbed.runtime.registry import list_runs, owner_alive, proc_starttime, read_records

CMD_TIMEOUT_S = 120.0


class HostAccess(Protocol):
    run_dir: Path

    def cmd(self, host: str, command: str) -> str: ...

    def popen(self, host: str, argv: list[str]) -> subprocess.Popen: ...


class TestbedHosts:
    """The hosts of a `Testbed` built in this process."""

    __test__ = False

    def __init__(self, testbed) -> None:
        self.testbed = testbed
        self.run_dir = testbed.run.dir

    def cmd(self, host: str, command: str) -> str:
        return self.testbed.net[host].cmd(command)

    def popen(self, host: str, argv: list[str]) -> subprocess.Popen:
        return self.testbed.net[host].popen(argv)


class HostsError(RuntimeError):
    """No running layout, or no such host in it; the message says what is running."""


class RunHosts:
    """The hosts of a run built by another process, entered with ``mnexec -a``."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.shells: dict[str, int] = {}
        for rec in read_records(run_dir):
            if rec.kind == "netns" and proc_starttime(rec.data["pid"]) == rec.data.get("start"):
                self.shells[rec.data["host"]] = rec.data["pid"]

    @classmethod
    def live(cls, run_id: str | None = None) -> RunHosts:
        """The newest run whose owner is alive (or the named one)."""
        runs = [r for r in list_runs() if owner_alive(r) is not None]
        if run_id is not None:
            runs = [r for r in runs if r.name == run_id]
        if not runs:
            raise HostsError(
                "no layout is running: start one with `sudo lvs-testbed up nat`"
                + (f" (no live run {run_id!r})" if run_id else "")
            )
        return cls(max(runs, key=lambda r: r.stat().st_mtime))

    def plan(self):
        """The plan of the running layout, from the run's layout.json."""
        import json

        from testbed.topo.plan import LayoutParams, make_plan

        path = self.run_dir / "layout.json"
        if not path.exists():
            raise HostsError(f"run {self.run_dir.name} has no layout record")
        data = json.loads(path.read_text())
        return make_plan(data["layout"], LayoutParams(**data["params"]))

    def _pid(self, host: str) -> int:
        if host not in self.shells:
            raise HostsError(
                f"no host {host!r} in run {self.run_dir.name} (hosts: "
                f"{', '.join(sorted(self.shells))})"
            )
        return self.shells[host]

    def cmd(self, host: str, command: str, timeout_s: float = CMD_TIMEOUT_S) -> str:
        """Run ``command`` in ``host``; its output, with a note if it ran out of time."""
        try:
            res = subprocess.run(
                ["mnexec", "-a", str(self._pid(host)), "sh", "-c", command],
                capture_output=True,
                text=True,
                check=False,
                timeout=timeout_s,
            )
        except subprocess.TimeoutExpired as exc:
            partial = (exc.stdout or b"") + (exc.stderr or b"")
            text = partial.decode(errors="replace") if isinstance(partial, bytes) else partial
            return f"{text}\n(`{command}` on {host} did not finish within {timeout_s:g} s)\n"
        return res.stdout + res.stderr

    def popen(self, host: str, argv: list[str]) -> subprocess.Popen:
        return subprocess.Popen(
            ["mnexec", "-a", str(self._pid(host)), *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
