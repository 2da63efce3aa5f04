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

`measure` says what it waits for as it goes (``progress``), since a takeover after a crash
takes seconds; `record` appends each result to the run directory, where a lab's hand-in
(`testbed.labs.handin`) finds the takeover times measured in that run.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from testbed import child_python
from testbed.net.hosts import HostAccess
from testbed.runtime.control import ControlError, request, socket_path

HOWS = ("kill", "link", "shutdown")
RESULTS_FILE = "failovers.jsonl"
"""One JSON line per `measure` result of a run, in its run directory."""
MAX_RESULTS_KEPT = 100  # a class runs a handful; the file stays small


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
            f"(RFC bound {self.rfc_bound_s:.3f} s{BOUND_NOTES[self.how]}); probe outage "
            f"{self.outage_ms:.0f} ms, {self.probe_lost} of {self.probe_sent} requests lost; "
            f"master now {self.new_master}"
        )


BOUND_NOTES = {
    "kill": ": Master_Down_Interval from the last advert heard, which came up to one "
    "interval before the kill",
    "link": ": Master_Down_Interval from the last advert heard, which came up to one "
    "interval before the links went down",
    "shutdown": ": Skew_Time from the priority-0 advert; measured from the stop, the takeover "
    "adds ~15 ms: the master's second priority-0 advert and the backup adding the VIPs",
}
"""What each bound counts from, printed with it: a kill lands anywhere in an advert interval,
so takeovers measured from the failure fall below the bound; after a clean stop they land
about 15 ms above Skew_Time (see `rfc_bound_s`)."""


def rfc_bound_s(
    how: str, advert_int_s: float, backup_priority: int = 100, version: int = 2
) -> float:
    """When the RFCs say the backup takes over after the master fails ``how``.

    Skew_Time is (256 - Priority) / 256 s in VRRPv2 (RFC 3768) and (256 - Priority) *
    Master_Adver_Interval / 256 in v3 (RFC 5798); Master_Down_Interval is 3 intervals plus
    it. A clean shutdown sends priority 0, after which a backup waits only Skew_Time.

    The bound is the RFC's timer; `measure` reports the time from the failure to the backup's
    MASTER record. After a crash that is below the bound: the timer started at the last
    advert heard, before the crash. After a clean stop it is above Skew_Time by the time the
    stop takes to reach the backup and the backup's work before its record. Measured here
    (5 rounds of `up nat`, VRRPv2, tcpdump on d2): the outer instance's priority-0 advert left
    1-3 ms after the SIGTERM, the inner one's 5-11 ms after it (the master removes the first
    instance's VIP with `ip addr del` before it stops the second); the
    sync group's backup waits for both, and its timer fired 609.9-610.3 ms after the later
    one (Skew_Time 609.4 ms: the timer is exact to 1 ms); entering MASTER each instance sends
    an advert, adds its VIP and sends gratuitous ARPs before it records MASTER, 6-10 ms for
    both. Takeovers of 0.621-0.629 s against the bound of 0.609 s."""
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
    progress: Callable[[str], None] | None = None,
) -> FailoverResult:
    """Run a probe, fail ``master`` after ``settle_s``, wait for ``backup``, report.
    ``progress`` gets a line for each stage (the probe starting, the failure, the takeover,
    the wait for the probe to end), so a person watching knows why nothing else happens."""
    p = plan.params
    say = progress or (lambda _text: None)
    bound_s = rfc_bound_s(how, p.advert_int_s, 100, p.vrrp_version)
    say(
        f"probe: {probe_pps:g} UDP requests/s from {client} through the VIP for {window_s:g} s; "
        f"failing {master} ({how}) in {settle_s:g} s"
    )
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
    say(
        f"{master} failed ({how}); waiting for {backup} to become master "
        f"(RFC bound {bound_s:.2f} s)"
    )
    takeover = None
    deadline = time.monotonic() + window_s
    while time.monotonic() < deadline:
        since = master_since(vrrp_status(hosts.run_dir, backup))
        if since is not None and since >= failed_at - 0.05:
            takeover = max(0.0, since - failed_at)
            break
        time.sleep(0.05)
    left_s = max(0.0, failed_at - time.time() + window_s - settle_s)
    say(
        (
            f"{backup} is master after {takeover:.3f} s"
            if takeover is not None
            else f"{backup} did not become master"
        )
        + f"; the probe ends in about {left_s:.0f} s"
    )
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
        rfc_bound_s=bound_s,
        outage_ms=res.get("max_gap_ms", float("nan")),
        probe_sent=res.get("sent", 0),
        probe_lost=res.get("sent", 0) - res.get("received", 0),
        new_master=holder,
    )


def record(run_dir: Path, result: FailoverResult) -> None:
    """Append ``result`` to the run's failover records (the newest `MAX_RESULTS_KEPT`)."""
    path = run_dir / RESULTS_FILE
    lines = path.read_text().splitlines() if path.exists() else []
    lines.append(json.dumps({**result.as_dict(), "wall_s": time.time()}))
    path.write_text("\n".join(lines[-MAX_RESULTS_KEPT:]) + "\n")


def recorded(run_dir: Path) -> list[dict]:
    """The failover results recorded in a run, oldest first (unreadable lines skipped)."""
    path = run_dir / RESULTS_FILE
    out = []
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out
