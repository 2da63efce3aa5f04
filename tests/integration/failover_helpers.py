"""Helpers shared by the failover and interop tests: a stream through the VIP, putting the
pair back, measuring a takeover."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from testbed.net.failover import master_since, vrrp_status
from testbed.net.network import Testbed
from testbed.runtime.registry import process_alive

PORT = 5201
SLACK_S = 0.1  # the allowance over the RFC bound


def wait_until(predicate, timeout_s: float = 15.0, step_s: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step_s)
    return False


def add_stream_service(tb: Testbed, names: tuple[str, ...] = ("d1", "d2")) -> None:
    """tcp VIP:5201 -> rs1 on the directors, for an iperf3 stream through the VIP (a restarted
    director has only what its keepalived.conf gives it: add it again, as an admin would)."""
    rip = tb.plan.realservers[0].ip
    for name in names:
        host = tb.net[name]
        host.cmd(f"ipvsadm -A -t {tb.plan.vip}:{PORT} -s rr")
        host.cmd(f"ipvsadm -a -t {tb.plan.vip}:{PORT} -r {rip}:{PORT} -m")


def start_stream(tb: Testbed, seconds: int):
    """An iperf3 TCP stream from c1 through the VIP to rs1; returns (server, client) procs."""
    rs1, c1 = tb.net["rs1"], tb.net["c1"]
    server = rs1.popen(
        [sys.executable, "-m", "testbed.traffic.iperf", "server", "--port", str(PORT)]
    )
    assert wait_until(lambda: f":{PORT} " in rs1.cmd(f"ss -Hltn 'sport = :{PORT}'"), 5)
    client = c1.popen(
        [
            sys.executable,
            "-m",
            "testbed.traffic.iperf",
            "client",
            tb.plan.vip,
            "--port",
            str(PORT),
            "--duration-s",
            str(seconds),
        ]
    )
    return server, client


def finish_stream(server, client, seconds: int) -> dict:
    out, err = client.communicate(timeout=seconds + 15)
    try:
        server.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.kill()  # a client that failed leaves its server waiting
        server.wait()
    assert out, err
    return json.loads(out)


def daemon_alive(tb: Testbed, name: str, kind: str) -> bool:
    index = tb.run.dir / f"{name}.{kind}.json"
    return index.exists() and process_alive(json.loads(index.read_text())["pid"])


def ensure_master(tb: Testbed, name: str = "d1") -> None:
    """Put the pair back as it starts: ``name`` master, every daemon running, links up."""
    for intf in tb.plan.node(name).intfs:
        tb.net[name].cmd(f"ip link set {intf.name} up")
    if not daemon_alive(tb, name, "director"):
        tb.restore("kill", name)
        add_stream_service(tb, (name,))
    elif not daemon_alive(tb, name, "vrrp"):
        tb.restore("shutdown", name)
    assert wait_until(
        lambda: tb.vip_holder() == name and master_since(vrrp_status(tb.run.dir, name)), 20
    )


def takeover_s(tb: Testbed, failed_at: float, backup: str = "d2") -> float | None:
    since = []

    def became_master() -> bool:
        t = master_since(vrrp_status(tb.run.dir, backup))
        if t is not None and t >= failed_at - 0.05:
            since.append(t)
            return True
        return False

    return since[0] - failed_at if wait_until(became_master, 10, 0.02) else None
