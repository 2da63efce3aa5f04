"""Kernel IPVS as a layout's director (``--director ipvs``), in Mininet inside the full kernel:
`up dr|nat --director ipvs` serving HTTP through the VIP as a user runs it (the CLI, end to
end); the same client traffic through the Python director and through kernel IPVS; the health
checkers (our VRRP daemon's and keepalived's) driving each after the same failure; and the NAT
pair keeping a connection across a failover through the kernel's sync daemons.

One layout at a time (Mininet); under software emulation each takes a minute or two to build.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from testbed.net.failover import inject
from testbed.net.hosts import TestbedHosts
from testbed.net.network import Testbed
from testbed.net.nodes import DirectorHost
from testbed.topo.plan import LayoutParams
from tests.integration.failover_helpers import wait_until
from tests.integration.helpers import who_served
from tests.kernel.support import record, requires_ip_vs

pytestmark = requires_ip_vs()

CLI = str(Path(sys.executable).parent / "lvs-testbed")
UP_TIMEOUT_S = 900
STREAM_PORT = 5201
# The kernel's --stats counters are summed at its 2-second estimator tick: wait one out.
SETTLE_S = 2.5
SETTLE = f"sh sleep {SETTLE_S}"
START_TIMEOUT_S = 60  # a Python process starting under software emulation takes seconds


def _up(layout: str, lines: list[str], tmp_path: Path, *options: str) -> str:
    """``lvs-testbed up LAYOUT --director ipvs --script`` with ``lines``; its output."""
    script = tmp_path / f"{layout}.cli"
    script.write_text("\n".join(lines) + "\n")
    res = subprocess.run(
        [CLI, "up", layout, "--director", "ipvs", "--script", str(script), *options],
        capture_output=True,
        text=True,
        timeout=UP_TIMEOUT_S,
        check=False,
    )
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    return out


def _served_by(out: str, vip: str) -> list[str]:
    """The real servers named in the HTTP answers of the CLI output ("rs2 <ip>")."""
    return re.findall(r"^(rs\d+) \S+$", out, flags=re.MULTILINE)


def _curls(vip: str, n: int) -> list[str]:
    return [f"c{1 + i % 2} curl -s -m 5 http://{vip}/" for i in range(n)]


def test_smoke_up_dr_with_kernel_ipvs_serves_http(tmp_path: Path) -> None:
    vip = "10.0.0.100"
    out = _up(
        "dr", ["check", *_curls(vip, 6), SETTLE, "d1 ipvsadm -L -n --stats --exact"], tmp_path
    )
    assert "WRONG" not in out, out[-3000:]  # reachability exactly as the plan says
    assert sorted(set(_served_by(out, vip))) == ["rs1", "rs2", "rs3"], out[-2000:]
    assert re.search(r"^TCP  10\.0\.0\.100:80\s+6\s", out, flags=re.MULTILINE), out[-2000:]


def test_smoke_up_nat_with_kernel_ipvs_serves_http(tmp_path: Path) -> None:
    vip = "10.0.1.100"
    out = _up(
        "nat",
        [
            "check",
            *_curls(vip, 6),
            SETTLE,
            "d1 ipvsadm -L -n --stats --exact",
            "d2 ipvsadm -L --daemon",
        ],
        tmp_path,
    )
    assert "WRONG" not in out, out[-3000:]  # also: real servers still cannot reach clients
    assert sorted(set(_served_by(out, vip))) == ["rs1", "rs2", "rs3"], out[-2000:]
    assert re.search(r"^TCP  10\.0\.1\.100:80\s+6\s", out, flags=re.MULTILINE), out[-2000:]
    assert "master sync daemon (mcast=d2-eth1, syncid=1" in out
    assert "backup sync daemon (mcast=d2-eth1, syncid=1" in out


# -- the same traffic through both ------------------------------------------------------------


def _dr_traffic(director: str) -> tuple[list[str], dict[str, int], list[str]]:
    """12 HTTP requests, c1 and c2 in turn, through a fresh DR layout: who answered each,
    the connections each real server got, and the connection states afterwards."""
    with Testbed("dr", LayoutParams(director=director), kind=f"kdiff-{director}") as tb:
        assert tb.wait_ready(20)
        names = []
        for i in range(12):
            names += who_served(tb.net[f"c{1 + i % 2}"], tb.plan.vip, 1)
        time.sleep(SETTLE_S)
        _rc, stats = tb.ipvsadm("-L -n --stats --exact -t 10.0.0.100:80")
        conns = {m.group(1): int(m.group(2)) for m in re.finditer(r"->\s+(\S+)\s+(\d+)", stats)}
        _rc, table = tb.ipvsadm("-L -n -c")
        states = sorted(line.split()[2] for line in table.splitlines()[2:])
    return names, conns, states


def test_same_http_traffic_through_python_and_kernel_ipvs() -> None:
    python, kernel = _dr_traffic("python"), _dr_traffic("ipvs")
    for item, k, p in zip(
        ("who answered each request", "connections per real server", "connection states"),
        kernel,
        python,
        strict=True,
    ):
        record("layout traffic", f"DR, 12 HTTP requests: {item}", "agree" if k == p else "differ")
        assert k == p, f"{item}: kernel {k} python {p}"


# -- health checkers driving each ---------------------------------------------------------------


def _checker_run(director: str, ha: str) -> list[tuple[str, int | None]]:
    """rs2's servers stopped, then started again, on a fresh NAT pair: the weights of rs2's
    HTTP service on the master, as the health checker set them."""
    params = LayoutParams(director=director, ha=ha, n_rs=2, n_clients=1)
    with Testbed("nat", params, kind=f"kcheck-{director}-{ha}") as tb:
        assert tb.wait_ready(20)
        rip = tb.plan.node("rs2").ip

        def weight() -> int | None:
            _rc, out = tb.ipvsadm(f"-L -n -t {tb.plan.vip}:80")
            for line in out.splitlines():
                if f"{rip}:80" in line:
                    return int(line.split()[3])
            return None

        assert wait_until(lambda: weight() == 1, 30)
        seen = [("started", weight())]
        servers = tb.procs[("rs2", "servers")]
        servers.terminate()
        servers.wait()
        wait_until(lambda: weight() != 1, 40)
        seen.append(("rs2 stopped", weight()))
        tb.spawn(
            "rs2",
            [sys.executable, "-m", "testbed.traffic.servers", "--name", "rs2", "--bind", rip],
            "servers",
        )
        wait_until(lambda: weight() == 1, 40)
        seen.append(("rs2 back", weight()))
    return seen


@pytest.mark.parametrize(
    ("director", "ha"), [("ipvs", "vrrp"), ("ipvs", "keepalived"), ("python", "vrrp")]
)
def test_health_checkers_make_the_same_changes(director: str, ha: str) -> None:
    """Our checker on kernel IPVS, keepalived's on kernel IPVS, ours on the Python director:
    the same real-server changes (inhibit_on_failure: weight 0, then back to 1)."""
    seen = _checker_run(director, ha)
    expected = [("started", 1), ("rs2 stopped", 0), ("rs2 back", 1)]
    record(
        "health checks",
        f"{ha} checker driving {director}: rs2 stopped, then back",
        "agree" if seen == expected else "differ",
        str(seen),
    )
    assert seen == expected


# -- connection sync across a failover -----------------------------------------------------------


def _start_stream(tb: Testbed, seconds: int):
    """An iperf3 TCP stream from c1 through the VIP to rs1 (tests/integration's, with waits
    for a slow guest)."""
    rs1, c1 = tb.net["rs1"], tb.net["c1"]
    server = rs1.popen(
        [sys.executable, "-m", "testbed.traffic.iperf", "server", "--port", str(STREAM_PORT)]
    )
    listening = wait_until(
        lambda: f":{STREAM_PORT} " in rs1.cmd(f"ss -Hltn 'sport = :{STREAM_PORT}'"),
        START_TIMEOUT_S,
        0.2,
    )
    assert listening, "iperf3 server did not listen"
    argv = ["client", tb.plan.vip, "--port", str(STREAM_PORT), "--duration-s", str(seconds)]
    client = c1.popen([sys.executable, "-m", "testbed.traffic.iperf", *argv])
    return server, client


def _finish_stream(server, client, seconds: int) -> dict:
    out, err = client.communicate(timeout=seconds + START_TIMEOUT_S)
    try:
        server.wait(timeout=START_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()
    assert out, err
    return json.loads(out)


@pytest.mark.parametrize("ha", ["vrrp", "keepalived"])
def test_kernel_sync_keeps_a_connection_across_a_failover(ha: str) -> None:
    """An iperf3 stream through the VIP; the backup learns it from the kernel's sync daemon
    (ours: started with ipvsadm; keepalived: its lvs_sync_daemon); the master's links go
    down, the backup takes over, and the stream goes on."""
    params = LayoutParams(director="ipvs", ha=ha, n_rs=2, n_clients=1)
    with Testbed("nat", params, kind=f"ksync-{ha}") as tb:
        assert tb.wait_ready(20)
        rip = tb.plan.realservers[0].ip
        for name in ("d1", "d2"):
            tb.kernel_ipvsadm(name, ["-A", "-t", f"{tb.plan.vip}:{STREAM_PORT}", "-s", "rr"])
            tb.kernel_ipvsadm(
                name,
                ["-a", "-t", f"{tb.plan.vip}:{STREAM_PORT}", "-r", f"{rip}:{STREAM_PORT}", "-m"],
            )
            # The NAT director's forward filter passes the layout's services' replies only
            # (docs/kernel-ipvs.md): a service added by hand needs its replies let through.
            tb.net[name].check(
                f"nft add rule inet {DirectorHost.IPVS_TABLE} forward "
                f"ip saddr {rip} tcp sport {STREAM_PORT} accept"
            )
        server, client = _start_stream(tb, 20)
        synced = wait_until(lambda: f":{STREAM_PORT}" in tb.ipvsadm("-L -n -c", "d2")[1], 10, 0.5)
        inject(TestbedHosts(tb), tb.plan, "link", "d1")
        took_over = wait_until(lambda: tb.vip_holder() == "d2", 15, 0.2)
        result = _finish_stream(server, client, 20)
    record(
        "connection sync",
        f"kernel sync daemons with {ha}: backup learns the stream, keeps it across failover",
        "agree" if synced and took_over and "error" not in result else "differ",
    )
    assert synced, "d2 never showed the stream's connection"
    assert took_over
    assert "error" not in result, result
    assert result["received_bps"] > 0
