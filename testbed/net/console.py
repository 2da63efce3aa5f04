"""The Mininet CLI with the testbed's own commands added (``reach``, ``plan``, ``state``,
``failover``, ``restore``, ``vrrp``); a lab's CLI adds its check (`testbed.labs.console`).

Everything Mininet's CLI does still works (``c1 ping VIP``, ``pingall``, ``py net``, ``source``),
and hosts have ``lvs-testbed`` on their PATH, e.g. ``d1 lvs-testbed ipvsadm -L -n``.

One thing works differently, on purpose: input. Mininet's CLI hands what arrives on its
standard input to the host command that is running, so lines pasted as a block (or piped in)
end up in the first host's shell (``bash: s1: command not found``). Here a host command gets
no input from the CLI: lines typed, pasted or piped while it runs stay queued and run one by
one as CLI commands afterwards, as with ``--script``, and a ``lvs-testbed>`` prompt copied
with a handout line is dropped. A command that wants input gets it in the command itself
(``c1 echo hi | nc -u -w 1 VIP 7``) or runs in ``xterm c1``.
"""

from __future__ import annotations

import sys
import termios
import time
from contextlib import contextmanager

from mininet.cli import CLI
from mininet.log import output

from testbed.net.network import Testbed
from testbed.net.report import plan_table, reach_table, state_table

PROMPTS = ("lvs-testbed>", "mininet>")
"""Prompts a line copied from a handout or a transcript may start with."""
NODE_POLL_MS = 200  # how often a running host command's output is collected
RESTORE_TAKEOVER_WAIT_S = 15.0  # a restored master preempts after Master_Down_Interval (3.6 s)


def strip_prompt(line: str) -> str:
    """``line`` without a leading CLI prompt (``lvs-testbed> d1 ipvsadm -L -n``: the command)."""
    rest = line.lstrip()
    for prompt in PROMPTS:
        if rest.startswith(prompt) and rest[len(prompt) : len(prompt) + 1] in ("", " ", "\t"):
            return strip_prompt(rest[len(prompt) :].lstrip())
    return line


def split_input(text: str) -> list[str]:
    """The CLI commands in one read of input, prompts stripped. A terminal that pastes in
    bracketed mode hands over a whole block as one "line"; each of its lines is a command."""
    return [strip_prompt(line) for line in text.splitlines()] or [""]


class LvsCLI(CLI):
    """Mininet's CLI for a `Testbed`, with queued input kept for the CLI (see the module)."""

    prompt = "lvs-testbed> "

    def __init__(self, testbed: Testbed, stdin=sys.stdin, script: str | None = None, **kwargs):
        self.testbed = testbed
        self.last_failure: tuple[str, str] | None = None  # (how, director) of `failover`
        CLI.__init__(self, testbed.net, stdin=stdin, script=script, **kwargs)

    # -- input ---------------------------------------------------------------------------------
    @classmethod
    def initReadline(cls) -> None:  # noqa: N802 - Mininet API
        """Mininet's history, and bracketed paste off: a pasted block then arrives line by line,
        each run as it comes, as if typed (with it on, readline would hold the whole block)."""
        super().initReadline()
        try:
            import readline
        except ImportError:
            return
        readline.parse_and_bind("set enable-bracketed-paste off")

    def precmd(self, line: str) -> str:
        """Several lines read at once run one after the other; a copied prompt is dropped."""
        first, *rest = split_input(line)
        self.cmdqueue[0:0] = rest
        return CLI.precmd(self, first)

    def onecmd(self, line: str):
        """Run one command (`source` and ``--script`` lines may carry a copied prompt too)."""
        with self._quiet_typeahead():
            return CLI.onecmd(self, strip_prompt(line))

    def waitForNode(self, node) -> None:  # noqa: N802 - Mininet API
        """Print the host command's output until it ends; Ctrl-C interrupts it. Unlike Mininet,
        read nothing from our input meanwhile: what arrives stays queued for the CLI."""
        while node.waiting:
            try:
                data = node.monitor(timeoutms=NODE_POLL_MS)
                if data:
                    output(data)
            except KeyboardInterrupt:
                node.sendInt()

    @contextmanager
    def _quiet_typeahead(self):
        """No terminal echo while a command runs: lines typed or pasted meanwhile show once,
        at their own prompt when they run, not mixed into the command's output."""
        fd = self.stdin.fileno() if self.isatty() else None
        saved = termios.tcgetattr(fd) if fd is not None else None
        if saved is not None:
            quiet = list(saved)
            quiet[3] &= ~termios.ECHO
            termios.tcsetattr(fd, termios.TCSADRAIN, quiet)
        try:
            yield
        finally:
            if saved is not None:
                termios.tcsetattr(fd, termios.TCSADRAIN, saved)

    # -- the testbed's commands ---------------------------------------------------------------
    def do_reach(self, _line: str) -> None:
        """reach: ping every pair the layout has an expectation for and compare with the plan."""
        from rich.console import Console

        Console().print(reach_table(self.testbed.check_reachability()))

    def do_check(self, line: str) -> None:
        """check: the layout's reachability test (the same as `reach`)."""
        self.do_reach(line)

    def do_failover(self, line: str) -> None:
        """failover [kill|link|shutdown]: fail the master director (default: kill) while a
        probe runs through the VIP; report the takeover time and the requests lost. Takes
        about 15 s; it says what it is waiting for."""
        from testbed.net.failover import HOWS, measure, record
        from testbed.net.hosts import TestbedHosts

        how = line.strip() or "kill"
        if how not in HOWS or not self.testbed.plan.has_pair:
            print(f"usage: failover [{'|'.join(HOWS)}] (NAT layouts with failover on)")
            return
        pending = self._pending_failure()
        if pending is not None:
            print(f"{pending[1]} is still failed ({pending[0]}): type `restore` first")
            return
        master = self.testbed.vip_holder() or "d1"
        backup = "d2" if master == "d1" else "d1"
        result = measure(
            TestbedHosts(self.testbed),
            self.testbed.plan,
            how,
            master,
            backup,
            progress=lambda text: print(text, flush=True),
        )
        record(self.testbed.run.dir, result)
        self.last_failure = (how, master)
        print(result.text())

    def do_restore(self, _line: str) -> None:
        """restore: undo the last `failover` (restart daemons or bring links up), then wait
        until the restored director has taken the VIPs back (preempt, about 4 s)."""
        from testbed.net.failover import master_since, vrrp_status

        pending = self._pending_failure()
        if pending is None:
            print("nothing to restore: no director is failed")
            return
        how, name = pending
        started = time.time()
        self.testbed.restore(how, name)
        self.last_failure = None
        print(
            f"{name} restored ({'links up' if how == 'link' else 'daemons restarted'}); waiting "
            f"for it to take the VIPs back (preempt after Master_Down_Interval, about 4 s)...",
            flush=True,
        )
        deadline = time.monotonic() + RESTORE_TAKEOVER_WAIT_S
        while time.monotonic() < deadline:
            since = master_since(vrrp_status(self.testbed.run.dir, name))
            if since is not None and since >= started - 1.0 and self.testbed.vip_holder() == name:
                print(f"{name} is master again, {since - started:.1f} s after the restore")
                return
            time.sleep(0.2)
        print(
            f"{name} is not master after {RESTORE_TAKEOVER_WAIT_S:g} s: type `vrrp` to see "
            "the daemons' states"
        )

    def do_vrrp(self, _line: str) -> None:
        """vrrp: each director's VRRP instances: state, priority, master, last transition."""
        from testbed.net.failover import vrrp_status

        pending = self._pending_failure()
        for d in self.testbed.plan.directors:
            if vrrp_status(self.testbed.run.dir, d.name) is None and pending:
                how, failed = pending
                if failed == d.name:
                    print(
                        f"VRRP daemon {d.name}: not running, as expected after `failover "
                        f"{how}` (type `restore` to start it again)"
                    )
                    continue
            print(self.testbed.net[d.name].cmd(f"lvs-testbed vrrp status --name {d.name}"), end="")

    def _pending_failure(self) -> tuple[str, str] | None:
        """(how, director) of the failover to undo: this session's, or the last one
        `lvs-testbed failover` made from another terminal (recorded in the run directory)
        while its director is still failed."""
        from testbed.net.failover import recorded, vrrp_status

        if self.last_failure is not None:
            return self.last_failure
        records = recorded(self.testbed.run.dir)
        if not records:
            return None
        how, name = records[-1]["how"], records[-1]["master"]
        if how == "link":
            links = [
                self.testbed.net[name].cmd(f"ip -o link show {i.name}")
                for i in self.testbed.plan.node(name).intfs
            ]
            failed = any(",UP" not in x and "<UP" not in x for x in links)
        else:
            failed = vrrp_status(self.testbed.run.dir, name) is None
        return (how, name) if failed else None

    def do_plan(self, _line: str) -> None:
        """plan: the layout as designed (names, addresses, gateways, VIPs); `state` shows what
        the hosts hold now."""
        from rich.console import Console

        console = Console()
        console.print(plan_table(self.testbed.plan))
        console.print("(the design: type `state` for what the hosts hold now)")

    def do_state(self, _line: str) -> None:
        """state: what the hosts hold now (addresses, VIPs, gateways, ARP settings,
        forwarding) beside the plan, differences marked."""
        from rich.console import Console

        from testbed.net.hosts import TestbedHosts
        from testbed.net.state import compare, observe

        plan = self.testbed.plan
        Console().print(state_table(compare(plan, observe(TestbedHosts(self.testbed), plan))))
