"""The director daemon's in-place knobs, driven through its control requests with stand-in
ports: switching the packet I/O (the coalescing knob), resizing the table, and taking the
made-up entries of a prefill back out; malformed requests, an nft failure (rolled back), the
table's limit and defences through `sysctl`, a SIGTERM before the loop, unreadable routes."""

import re

import pytest

from testbed.director import daemon as daemon_module
from testbed.director.daemon import DaemonConfig, DirectorDaemon
from testbed.director.forwarder import Forwarder
from testbed.director.neighbours import Neighbour, Neighbours


class StandInPort:
    def __init__(self, name: str, ip: int, mode: str) -> None:
        self.name, self.ip, self.mode = name, ip, mode
        self.mac = b"\x02\x00\x00\x00\x00\x01"
        self.closed = False
        self.tx_frames = self.tx_dropped = 0

    def kernel_drops(self) -> int:
        return 0

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def daemon(monkeypatch):
    monkeypatch.setattr(
        daemon_module, "open_port", lambda name, ip, mode: StandInPort(name, ip, mode)
    )
    d = DirectorDaemon(
        DaemonConfig(interfaces=["d1-eth0", "d1-eth1"], io_mode="frame", kernel_bypass=False)
    )
    d.ports = [StandInPort(n, 0x0A000002 + i, "frame") for i, n in enumerate(d.cfg.interfaces)]
    d.neigh = Neighbours({p.name: p for p in d.ports}, [])
    d.neigh.by_ip[0xC0A8000B] = Neighbour(0xC0A8000B, d.ports[1])
    d.forwarder = Forwarder(d.director, d.neigh)
    return d


def test_io_switch_reopens_every_port_and_moves_the_neighbours_to_them(daemon):
    old = list(daemon.ports)
    reply = daemon.handle_request({"op": "io", "io_mode": "ring", "batch": 32, "wait_us": 200})
    assert reply["rc"] == 0, reply
    assert [p.mode for p in daemon.ports] == ["ring", "ring"] and all(p.closed for p in old)
    assert daemon.neigh.ports["d1-eth1"] is daemon.ports[1]
    assert daemon.neigh.by_ip[0xC0A8000B].port is daemon.ports[1]
    assert (daemon.cfg.io_mode, daemon.cfg.batch, daemon.cfg.wait_us) == ("ring", 32, 200)
    assert daemon.ports_changed  # the loop restarts on the new ports


def test_a_bad_io_request_changes_nothing(daemon):
    before = list(daemon.ports)
    for bad in (
        {"io_mode": "mmap", "batch": 1, "wait_us": 0},
        {"io_mode": "ring", "batch": 0, "wait_us": 0},
        {"io_mode": "ring", "batch": 8},
    ):
        assert daemon.handle_request({"op": "io", **bad})["rc"] == 2
    assert daemon.ports == before and daemon.cfg.io_mode == "frame" and not daemon.ports_changed


def test_table_resize_and_unfill_leave_real_connections_alone(daemon):
    rules = ["-A", "-t", "10.0.1.100:80", "-s", "rr"]
    assert daemon.handle_request({"op": "ipvsadm", "argv": rules})["rc"] == 0
    assert (
        daemon.handle_request(
            {"op": "ipvsadm", "argv": ["-a", "-t", "10.0.1.100:80", "-r", "192.168.0.11:80", "-m"]}
        )["rc"]
        == 0
    )
    daemon.handle_request({"op": "prefill", "count": 5000})
    svc = daemon.director.services()[0]
    real = daemon.director.schedule_new(svc, 6, 0x0A00010B, 40000, svc.addr, svc.port, 0.0)
    assert len(daemon.director.conns) == 5001
    assert daemon.handle_request({"op": "table", "bits": 16})["rc"] == 0
    assert daemon.director.conns.size == 1 << 16 and len(daemon.director.conns) == 5001
    assert daemon.handle_request({"op": "table", "bits": 30})["rc"] == 2
    reply = daemon.handle_request({"op": "unfill"})
    assert reply["rc"] == 0 and "5000 connections removed" in reply["out"]
    assert list(daemon.director.conns) == [real]
    assert svc.dests[0].inactconns + svc.dests[0].activeconns == 1


def test_counters_read_the_clock_and_cpu_after_the_packet_totals(daemon):
    for argv in (
        ["-A", "-u", "10.0.1.100:7", "-s", "rr"],
        ["-a", "-u", "10.0.1.100:7", "-r", "192.168.0.11:7", "-m"],
    ):
        assert daemon.handle_request({"op": "ipvsadm", "argv": argv})["rc"] == 0
    for port in daemon.ports:
        port.kernel_drops = lambda: 3
    c = daemon.handle_request({"op": "counters"})["counters"]
    assert set(c) == {"inpkts", "outpkts", "socket_drops", "rx", "t_s", "cpu_s"}
    assert c["inpkts"] == c["outpkts"] == 0 and c["socket_drops"] == 6 and c["cpu_s"] > 0


# --- malformed requests, the kernel side, the table's limit --------------------------------

SERVICE = ["-A", "-t", "10.0.1.100:80", "-s", "rr"]
SERVER = ["-a", "-t", "10.0.1.100:80", "-r", "192.168.0.11:80", "-m"]


@pytest.mark.parametrize(
    "message",
    [
        {"op": "ipvsadm", "argv": [1]},
        {"op": "ipvsadm", "argv": "-L -n"},
        {"op": "prefill", "count": 1e400},
        {"op": "prefill", "count": "10"},
        {"op": "io", "io_mode": "ring", "batch": 1e400, "wait_us": 0},
        {"op": "table", "bits": [12]},
        {"op": "sysctl", "set": {"drop_entry": "1"}},
        {"op": "sysctl", "set": [1]},
        {"op": {"nested": [[[]]]}},
    ],
)
def test_a_malformed_request_is_refused_and_changes_nothing(daemon, message):
    before = daemon.director.snapshot()
    reply = daemon.handle_request(message)
    assert reply["rc"] == 2 and reply["err"].startswith("bad control request")
    assert daemon.director.snapshot() == before and len(daemon.director.conns) == 0


def test_an_nft_failure_rolls_the_change_back(daemon, monkeypatch):
    """The kernel side goes first, from a trial copy: if nft fails, the director is as it
    was and the reply says so (before, the daemon changed its table, then died)."""
    daemon.cfg.kernel_bypass = True
    applied = []
    monkeypatch.setattr(daemon_module.kernel, "apply", lambda d: applied.append(d.services()))
    assert daemon.handle_request({"op": "ipvsadm", "argv": SERVICE})["rc"] == 0
    assert len(applied) == 1 and len(daemon.director.services()) == 1

    def nft_fails(director):
        raise RuntimeError("nft could not load the director's bypass rules: boom")

    monkeypatch.setattr(daemon_module.kernel, "apply", nft_fails)
    before = daemon.director.snapshot()
    reply = daemon.handle_request({"op": "ipvsadm", "argv": ["-A", "-u", "10.0.1.100:53"]})
    assert reply["rc"] == 1 and "boom; nothing was changed" in reply["err"]
    assert daemon.director.snapshot() == before
    # A change the nft set does not see (a real server) needs no nft at all.
    assert daemon.handle_request({"op": "ipvsadm", "argv": SERVER})["rc"] == 0
    assert len(daemon.director.services()[0].dests) == 1


def test_sysctl_sets_all_or_nothing_and_shows_them_all(daemon):
    reply = daemon.handle_request({"op": "sysctl", "set": {"drop_packet": 1, "conn_max": 5000}})
    assert reply["rc"] == 0
    assert "net.ipv4.vs.drop_packet = 1\n" in reply["out"]
    assert "net.ipv4.vs.conn_max = 5000\n" in reply["out"]
    reply = daemon.handle_request({"op": "sysctl", "set": {"drop_entry": 3, "secure_tcp": 7}})
    assert reply["rc"] == 2 and "secure_tcp must be 0, 1, 2 or 3" in reply["err"]
    assert daemon.director.defense.drop_entry == 1  # not half-applied


def test_prefill_past_the_table_limit_is_refused_whole(daemon):
    daemon.handle_request({"op": "ipvsadm", "argv": SERVICE})
    daemon.handle_request({"op": "ipvsadm", "argv": SERVER})
    daemon.handle_request({"op": "sysctl", "set": {"conn_max": 1000}})
    reply = daemon.handle_request({"op": "prefill", "count": 1001})
    assert reply["rc"] == 2 and "larger --conn-max" in reply["err"]
    assert len(daemon.director.conns) == 0
    assert daemon.handle_request({"op": "prefill", "count": 1000})["rc"] == 0


def test_stats_show_the_table_limit_and_the_defences(daemon):
    stats = daemon.handle_request({"op": "stats"})["stats"]
    defense = stats["defense"]
    assert defense["conn_max"] == daemon.cfg.conn_max and defense["entries"] == 0
    assert defense["drop_entry"] == 1 and defense["drops"] == {}
    assert stats["rss_kb"] > 0


def test_a_sigterm_while_the_ports_open_is_not_lost(daemon):
    """SIGTERM may come before `run`: the loop must not start (it used to reset the flag)."""
    daemon.stop()
    daemon.control = None  # run would need it to poll; it must return before
    daemon.run()
    assert not daemon.running


def test_a_route_file_that_cannot_be_read_keeps_the_old_routes(daemon, monkeypatch, tmp_path):
    before = list(daemon.neigh.routes)
    monkeypatch.setattr(daemon_module, "ROUTE_FILE", tmp_path / "missing")
    daemon._reload_routes()
    daemon._reload_routes()
    assert daemon.neigh.routes == before and daemon.route_errors == 2


def test_every_operation_the_daemon_answers_has_a_schema(daemon):
    """An operation missing from CONTROL_SCHEMAS would be refused as unknown."""
    import inspect

    source = inspect.getsource(daemon_module.DirectorDaemon._handle_request)
    ops = set(re.findall(r'op == "([a-z_]+)"', source))
    assert ops == set(daemon_module.CONTROL_SCHEMAS)
