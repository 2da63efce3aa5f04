"""Fakes for the health checker tests: the director's control channel (ipvsadm over a model
Director, every argv recorded) and a script host whose scripts exit as the test says.

Not tests: imported by test_vrrp_checker.py and test_health_checker.py.
"""

from __future__ import annotations

from dataclasses import dataclass

from testbed.check.checker import IpvsResult
from testbed.director import ipvsadm
from testbed.director.model import Director
from testbed.keepalived_conf.model import Script
from testbed.runtime.scripts import Preparation, PreparedScript


class FakeDirector:
    """The director's control channel: ipvsadm over a model Director, every argv recorded."""

    def __init__(self) -> None:
        self.director = Director()
        self.log: list[list[str]] = []
        self.reachable = True

    def __call__(self, argv: list[str]) -> IpvsResult:
        self.log.append(list(argv))
        if not self.reachable:
            return IpvsResult(-1, "", "no director is running")
        result = ipvsadm.run(argv, self.director)
        return IpvsResult(result.rc, result.out, result.err)

    def take(self) -> list[list[str]]:
        log, self.log = self.log, []
        return log

    def weights(self) -> dict[str, int]:
        """Real server -> weight, from `ipvsadm -L -n`."""
        out = ipvsadm.run(["-L", "-n"], self.director).out
        return {
            words[1]: int(words[3])
            for words in (line.split() for line in out.splitlines())
            if words and words[0] == "->" and words[1][0].isdigit()
        }


@dataclass
class FakeChild:
    rc: int | None = 0
    killed: bool = False

    def poll(self) -> int | None:
        return -9 if self.killed else self.rc

    def kill(self) -> None:
        self.killed = True


class FakeScripts:
    """MISC_CHECK scripts exit with ``rc[command]`` (default 0); notify and quorum scripts
    are recorded in ``started``; commands in ``disabled`` cannot run."""

    def __init__(self) -> None:
        self.rc: dict[str, int | None] = {}
        self.started: list[str] = []
        self.disabled: set[str] = set()

    def prepare(self, script: Script) -> Preparation:
        if script.command in self.disabled:
            return Preparation(None, [f"cannot find script {script.command} - disabling"])
        return Preparation(
            PreparedScript(script.command, (script.command,), False, None, None, "root"), []
        )

    def start(self, prepared: PreparedScript) -> FakeChild:
        self.started.append(prepared.command)
        return FakeChild()

    def run(self, prepared: PreparedScript, timeout_s: float) -> tuple[int | None, str]:
        rc = self.rc.get(prepared.command, 0)
        return rc, f"exited with status {rc}"

    def take(self) -> list[str]:
        started, self.started = self.started, []
        return started
