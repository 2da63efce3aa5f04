"""The layout's CLI without a layout: input typed, pasted or piped runs line by line as CLI
commands (prompts copied from a handout dropped, nothing handed to a running host command),
the `state` view's comparison with the plan, failover's progress and records, and the real
servers' long-lived /tick answer."""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest

from testbed.net.failover import BOUND_NOTES, FailoverResult, record, recorded
from testbed.net.state import NodeState, compare, parse_addrs, parse_gateway
from testbed.topo.plan import LayoutParams, make_plan
from testbed.traffic.servers import MAX_TICK_S, tick_seconds


def console():
    """testbed.net.console, which needs Mininet (its CLI is Mininet's)."""
    pytest.importorskip("mininet")
    import testbed.net.console

    return testbed.net.console


# -- input -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("line", "command"),
    [
        ("lvs-testbed> d1 ipvsadm -L -n", "d1 ipvsadm -L -n"),
        (
            "   lvs-testbed>   c1 curl -s -m 2 http://10.0.0.100/",
            "c1 curl -s -m 2 http://10.0.0.100/",
        ),
        ("mininet> pingall", "pingall"),
        ("lvs-testbed> lvs-testbed> vrrp", "vrrp"),
        ("lvs-testbed>", ""),
        ("d1 ipvsadm -L -n", "d1 ipvsadm -L -n"),
        ("lvs-testbed>x", "lvs-testbed>x"),  # not a prompt: left for the CLI to refuse
        ("c1 echo 'lvs-testbed> hi'", "c1 echo 'lvs-testbed> hi'"),
    ],
)
def test_a_copied_prompt_is_dropped(line, command):
    assert console().strip_prompt(line).strip() == command


def test_a_block_read_at_once_splits_into_its_lines():
    assert console().split_input("lvs-testbed> a\nlvs-testbed> b\nc") == ["a", "b", "c"]
    assert console().split_input("") == [""]


def test_queued_lines_run_one_by_one_before_what_was_queued_earlier():
    cli = SimpleNamespace(cmdqueue=["later"])
    first = console().LvsCLI.precmd(cli, "lvs-testbed> d1 ipvsadm -L -n\nlvs-testbed> vrrp\nplan")
    assert first == "d1 ipvsadm -L -n"
    assert cli.cmdqueue == ["vrrp", "plan", "later"]


class FakeNode:
    """A host command that prints two chunks and ends."""

    def __init__(self) -> None:
        self.waiting = True
        self.chunks = ["first\n", "second\n"]
        self.interrupted = False

    def monitor(self, timeoutms=None):
        data = self.chunks.pop(0)
        if not self.chunks:
            self.waiting = False
        return data

    def sendInt(self):  # noqa: N802 - Mininet API
        self.interrupted = True


def test_a_running_host_command_gets_nothing_of_the_cli_input(monkeypatch):
    """Mininet's CLI hands its input to the running command; ours leaves it for the CLI."""
    read_fd, write_fd = os.pipe()
    os.write(write_fd, b"d1 ipvsadm -L -n\nvrrp\n")
    os.close(write_fd)
    printed = []
    monkeypatch.setattr(console(), "output", printed.append)  # Mininet's output()
    with os.fdopen(read_fd) as stdin:
        lvs_cli = console().LvsCLI
        cli = lvs_cli.__new__(lvs_cli)
        cli.stdin = stdin
        node = FakeNode()
        cli.waitForNode(node)
        assert not node.waiting and not node.interrupted
        assert stdin.read() == "d1 ipvsadm -L -n\nvrrp\n"  # still there, for the CLI
    assert printed == ["first\n", "second\n"]


# -- state against the plan --------------------------------------------------------------------
ADDR = """1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever
1: lo    inet 10.0.0.100/32 scope global lo\\       valid_lft forever preferred_lft forever
2: rs1-eth0    inet 10.0.0.11/24 brd 10.0.0.255 scope global rs1-eth0\\       valid_lft forever
"""


def test_parse_addrs_and_gateway():
    assert parse_addrs(ADDR) == {"lo": ("10.0.0.100/32",), "rs1-eth0": ("10.0.0.11/24",)}
    assert parse_gateway("default via 10.0.0.1 dev rs1-eth0 \n") == "10.0.0.1"
    assert parse_gateway("10.0.0.0/24 dev rs1-eth0 proto kernel\n") is None


def as_planned(plan) -> dict[str, NodeState]:
    """Every host holding what the plan says (d1 the VIP, for layouts without VRRP)."""
    states = {}
    for n in plan.nodes:
        addrs = {i.name: tuple(i.addrs) for i in n.intfs}
        if n.lo_vips:
            addrs["lo"] = tuple(n.lo_vips)
        if n.name == "d1":
            for addr, intf in n.vips:
                addrs[intf] = (*addrs[intf], addr)
        states[n.name] = NodeState(
            addrs=addrs,
            gateway=n.gateway,
            ip_forward=1 if n.role == "firewall" else 0,
            arp=(1, 2) if n.lo_vips else (0, 0),
        )
    return states


def test_state_of_a_layout_as_planned_matches_everywhere():
    for plan in (make_plan("dr"), make_plan("nat"), make_plan("nat", LayoutParams(ha="none"))):
        rows = compare(plan, as_planned(plan))
        assert rows and all(r.ok for r in rows), [r for r in rows if not r.ok]


def test_state_shows_what_lab_1_and_lab_2_changed_against_the_plan():
    dr = make_plan("dr")
    states = as_planned(dr)
    states["rs2"] = NodeState(
        addrs={"rs2-eth0": ("10.0.0.12/24",)}, gateway="10.0.0.1", ip_forward=0, arp=(0, 0)
    )
    differs = {(r.node, r.what): r for r in compare(dr, states) if not r.ok}
    assert set(differs) == {("rs2", "VIP on lo"), ("rs2", "ARP")}
    assert differs[("rs2", "VIP on lo")].now == "none"
    assert differs[("rs2", "ARP")].now == "arp_ignore 0, arp_announce 0"

    nat = make_plan("nat", LayoutParams(ha="none"))
    states = as_planned(nat)
    states["rs1"] = NodeState(addrs=states["rs1"].addrs, gateway=None, ip_forward=0, arp=(0, 0))
    [row] = [r for r in compare(nat, states) if not r.ok]
    assert (row.node, row.what, row.planned, row.now) == ("rs1", "gateway", "192.168.0.254", "none")


def test_state_of_a_vrrp_pair_wants_one_holder_of_every_vip():
    nat = make_plan("nat")
    states = as_planned(nat)
    assert all(r.ok for r in compare(nat, states))
    d2 = nat.node("d2")
    both = {i: (*states["d2"].addrs[i], a) for a, i in d2.vips}
    states["d2"] = NodeState({**states["d2"].addrs, **both}, None, 0, (0, 0))  # split brain
    bad = [r for r in compare(nat, states) if not r.ok]
    assert {r.node for r in bad} == {"d1", "d2"} and {r.what for r in bad} == {"VIPs"}


# -- failover: what it says and keeps ----------------------------------------------------------
def result(how: str, took: float | None = 0.62) -> FailoverResult:
    return FailoverResult(how, "d1", "d2", took, 0.609, 600.0, 2400, 120, "d2")


def test_each_bound_says_what_it_counts_from():
    assert "Skew_Time from the priority-0 advert" in result("shutdown").text()
    assert "last advert heard" in result("kill", 3.1).text()
    assert set(BOUND_NOTES) == {"kill", "link", "shutdown"}
    assert "did not happen" in result("kill", None).text()


def test_failover_results_are_kept_in_the_run_directory(tmp_path):
    assert recorded(tmp_path) == []
    record(tmp_path, result("kill", 3.06))
    record(tmp_path, result("shutdown", 0.62))
    (tmp_path / "failovers.jsonl").open("a").write("not json\n")
    runs = recorded(tmp_path)
    assert [(r["how"], r["takeover_s"]) for r in runs] == [("kill", 3.06), ("shutdown", 0.62)]


# -- the real servers' long answer ---------------------------------------------------------------
def test_tick_paths():
    assert tick_seconds("/tick?s=25") == 25
    assert tick_seconds("/tick") == 10
    assert tick_seconds("/tick?s=abc") == 10
    assert tick_seconds("/tick?s=0") == 1 and tick_seconds("/tick?s=99999") == MAX_TICK_S
    assert tick_seconds("/") is None and tick_seconds("/ticker") is None


def test_restore_finds_a_failover_made_from_another_terminal(tmp_path):
    """`lvs-testbed failover` in a second terminal records its result in the run directory;
    the CLI's `restore`, `vrrp` and `failover` see that director as failed until it is back."""
    lvs_cli = console().LvsCLI
    cli = lvs_cli.__new__(lvs_cli)
    cli.last_failure = None
    links = {"state": "<BROADCAST,MULTICAST>"}
    host = SimpleNamespace(cmd=lambda _c: f"2: d1-eth0@if3: {links['state']} mtu 1500")
    cli.testbed = SimpleNamespace(
        run=SimpleNamespace(dir=tmp_path), net={"d1": host}, plan=make_plan("nat")
    )
    assert cli._pending_failure() is None
    record(tmp_path, result("kill"))
    assert cli._pending_failure() == ("kill", "d1")  # no VRRP daemon answers for d1 here
    record(tmp_path, result("link"))
    assert cli._pending_failure() == ("link", "d1")
    links["state"] = "<BROADCAST,MULTICAST,UP,LOWER_UP>"
    assert cli._pending_failure() is None  # its links are up again
    cli.last_failure = ("shutdown", "d2")
    assert cli._pending_failure() == ("shutdown", "d2")  # this session's own comes first
