"""Fail the master director of a NAT pair and measure the takeover, as a class would watch it.

A probe of small UDP requests runs from a client through the VIP; after a few seconds the
master is failed one of three ways, and the backup's VRRP daemon is watched until it is
master. The result: the takeover time (failure to the backup's MASTER transition), the
bound the RFCs give for it (Master_Down_Interval after a silent master, Skew_Time after a
priority-0 advert), and the probe's longest outage and its lost requests.

- ``kill``: SIGKILL the master's VRRP and director daemons (a crash: no priority-0 advert,
  the VIPs stay configured but nothing forwards);
- ``link``: take every NIC of the master down (a pulled cable);
- ``shutdown``: SIGTERM the master's VRRP daemon (a clean stop: priority 0 sent at once).
"""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from testbed import child_python
from testbed.net.hosts import HostAccess
from testbed.runtime.control import ControlError, request, socket_path

HOWS = ("kill", "link", "shutdown")


@dataclass
class FailoverResult:
    how: str
    master: str
    backup: str
    takeover_s: float | None  # failure -> backup MASTER, None if it never happened
    rfc_bound_s: float
    outage_ms: float
    probe_sent: int
    probe_lost: int
    new_master: str | None

    def as_dict(self) -> dict:
        return asdict(self)

    def text(self) -> str:
        took = "did not happen" if self.takeover_s is None else f"{self.takeover_s:.3f} s"
        return (
            f"failover by {self.how}: {self.backup} took over in {took} "
            f"(RFC bound {self.rfc_bound_s:.3f} s); probe outage {self.outage_ms:.0f} ms, "
            f"{self.probe_lost} of {self.probe_sent} requests lost; master now {self.new_master}"
        )


def rfc_bound_s(
    how: str, advert_int_s: float, backup_priority: int = 100, version: int = 2
) -> float:
    """When the RFCs say the backup takes over after the master fails ``how``.

    Skew_Time is (256 - Priority) / 256 s in VRRPv2 (RFC 3768) and (256 - Priority) *
    Master_Adver_Interval / 256 in v3 (RFC 5798); Master_Down_Interval is 3 intervals plus
    it. A clean shutdown sends priority 0, after which a backup waits only Skew_Time."""
    skew = (256 - backup_priority) / 256 * (advert_int_s if version == 3 else 1.0)
    return skew if how == "shutdown" else 3 * advert_int_s + skew


def _index(run_dir: Path, name: str, kind: str) -> dict | None:
    path = run_dir / f"{name}.{kind}.json"
    return json.loads(path.read_text()) if path.exists() else None


def inject(hosts: HostAccess, plan, how: str, master: str) -> None:
    """Fail ``master`` the way ``how`` says."""
    if how not in HOWS:
        raise ValueError(f"unknown failure {how!r}: {', '.join(HOWS)}")
    if how == "link":
        for intf in plan.node(master).intfs:
            hosts.cmd(master, f"ip link set {intf.name} down")
        return
    sig = signal.SIGKILL if how == "kill" else signal.SIGTERM
    kinds = ("vrrp", "director") if how == "kill" else ("vrrp",)
    for kind in kinds:
        entry = _index(hosts.run_dir, master, kind)
        if entry is not None:
            try:
                os.kill(entry["pid"], sig)
            except ProcessLookupError:
                pass


def vrrp_status(run_dir: Path, name: str) -> dict | None:
    try:
        return request(socket_path(run_dir, name, "vrrp"), {"op": "status"}, timeout_s=2.0).get(
            "status"
        )
    except (ControlError, OSError, ValueError):
        return None


def master_since(status: dict | None) -> float | None:
    """Wall time at which every instance of this daemon last became MASTER, if all are."""
    if not status:
        return None
    times = []
    for inst in status.get("instances", []):
        if inst.get("state") != "MASTER":
            return None
        entered = [t["wall_s"] for t in inst.get("transitions", []) if t["state"] == "MASTER"]
        if not entered:
            return None
        times.append(entered[-1])
    return max(times) if times else None


def measure(
    hosts: HostAccess,
    plan,
    how: str = "kill",
    master: str = "d1",
    backup: str = "d2",
    probe_pps: float = 200.0,
    settle_s: float = 2.0,
    window_s: float = 12.0,
    client: str = "c1",
) -> FailoverResult:
    """Run a probe, fail ``master`` after ``settle_s``, wait for ``backup``, report."""
    p = plan.params
    probe = hosts.popen(
        client,
        [
            child_python(),
            "-m",
            "testbed.traffic.loadgen",
            "udp-rr",
            plan.vip,
            "--rate-pps",
            f"{probe_pps:g}",
            "--duration-s",
            f"{window_s:g}",
        ],
    )
    time.sleep(settle_s)
    failed_at = time.time()
    inject(hosts, plan, how, master)
    takeover = None
    deadline = time.monotonic() + window_s
    while time.monotonic() < deadline:
        since = master_since(vrrp_status(hosts.run_dir, backup))
        if since is not None and since >= failed_at - 0.05:
            takeover = max(0.0, since - failed_at)
            break
        time.sleep(0.05)
    out, _err = probe.communicate(timeout=window_s + 30)
    try:
        res = json.loads(out or b"{}")
    except json.JSONDecodeError:
        res = {}
    holder = None
    for d in plan.directors:
        if f"{plan.vip}/" in hosts.cmd(d.name, "ip -4 -o addr show"):
            holder = d.name
    return FailoverResult(
        how=how,
        master=master,
        backup=backup,
        takeover_s=takeover,
        rfc_bound_s=rfc_bound_s(how, p.advert_int_s, 100, p.vrrp_version),
        outage_ms=res.get("max_gap_ms", float("nan")),
        probe_sent=res.get("sent", 0),
        probe_lost=res.get("sent", 0) - res.get("received", 0),
        new_master=holder,
    )
