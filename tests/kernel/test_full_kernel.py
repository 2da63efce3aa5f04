"""The README's "What needs a full kernel" table, row by row, checked in a full kernel (the
runner's Debian kernel, the Vagrant VM, a user's Linux): what the small kernel lacks works
here. Each test records its row for docs/full-kernel.md.
"""

from __future__ import annotations

import re
import subprocess
import time

from testbed.doctor import CHECKS, run_checks
from testbed.net.network import Testbed
from testbed.runtime.cgroup import detect_cgroup_version
from testbed.topo.plan import LayoutParams
from tests.kernel.support import record, requires_ip_vs
from tests.kernel.twin import Netns

pytestmark = requires_ip_vs()

DELAY_MS = 10.0
# A ping from c1 to the DR VIP crosses three links (c1-s1, fw-s2 twice over: fw's two NICs,
# then d1's) each way, every link end delayed: six delays per round trip.
DR_DELAYS_PER_PING = 6


FULL_KERNEL_ITEMS = ("qdisc netem", "ovs kernel datapath", "kernel ipvs (ip_vs)")


def test_smoke_doctor_finds_what_the_small_kernel_lacks() -> None:
    outcomes = run_checks(CHECKS)
    names = {o.check.name for o in outcomes}
    assert set(FULL_KERNEL_ITEMS) <= names
    missing = [
        o.check.name
        for o in outcomes
        if not o.ok and (o.check.required or o.check.name in FULL_KERNEL_ITEMS)
    ]
    record(
        "full kernel",
        "doctor: every required item, netem, the OVS kernel datapath, ip_vs",
        "agree" if not missing else "differ",
        str(missing),
    )
    assert not missing, missing


def test_netem_delay_and_cgroup_quota_in_a_layout() -> None:
    """--delay-ms in a layout (the small kernel refuses it) and --director-cpu 0.2 on this
    kernel's cgroup version."""
    params = LayoutParams(n_rs=1, n_clients=1, delay_ms=DELAY_MS, director_cpu=0.2)
    with Testbed("dr", params, kind="kfull") as tb:
        assert tb.wait_ready(20)
        out = tb.net["c1"].cmd(f"ping -n -c 5 -i 0.2 {tb.plan.vip}")
        rtts = [float(t) for t in re.findall(r"time=([0-9.]+) ms", out)]
        d1 = tb.net["d1"]
        busy = d1.popen(["sh", "-c", "while :; do :; done"])
        try:
            time.sleep(0.5)
            used0, t0 = d1.cgroup.usage_s(), time.monotonic()
            time.sleep(3.0)
            share = (d1.cgroup.usage_s() - used0) / (time.monotonic() - t0)
        finally:
            busy.kill()
            busy.wait()
    floor_ms = 0.9 * DR_DELAYS_PER_PING * DELAY_MS
    netem_ok = bool(rtts) and min(rtts) >= floor_ms
    record(
        "full kernel",
        f"netem --delay-ms {DELAY_MS:g}: ping RTTs {rtts}",
        "agree" if netem_ok else "differ",
    )
    quota_ok = 0.16 <= share <= 0.24
    record(
        "full kernel",
        f"cgroup v{detect_cgroup_version()} quota 0.2 of one core: measured {share:.3f}",
        "agree" if quota_ok else "differ",
    )
    assert netem_ok, (rtts, floor_ms)
    assert quota_ok, share


def test_ovs_kernel_datapath_forwards() -> None:
    """An OVS bridge with datapath_type=system (the openvswitch module) between two
    namespaces carries a ping."""
    bridge = "lvskdp0"
    a, b = Netns(), Netns()
    try:
        subprocess.run(
            [
                "ovs-vsctl",
                "--timeout=20",
                "add-br",
                bridge,
                "--",
                "set",
                "bridge",
                bridge,
                "datapath_type=system",
            ],
            check=True,
            capture_output=True,
            text=True,
            timeout=30,
        )
        for ns, end, addr in ((a, "kdpa", "10.9.0.1"), (b, "kdpb", "10.9.0.2")):
            subprocess.run(
                [
                    "ip",
                    "link",
                    "add",
                    f"{end}0",
                    "type",
                    "veth",
                    "peer",
                    "name",
                    f"{end}1",
                    "netns",
                    str(ns.pid),
                ],
                check=True,
                timeout=30,
            )
            subprocess.run(["ip", "link", "set", f"{end}0", "up"], check=True, timeout=30)
            subprocess.run(
                ["ovs-vsctl", "--timeout=20", "add-port", bridge, f"{end}0"],
                check=True,
                timeout=30,
            )
            ns.sh(f"ip link set {end}1 up && ip addr add {addr}/24 dev {end}1")
        out = a.sh("ping -n -c 3 -W 2 10.9.0.2", check=False)
        dp = subprocess.run(
            ["ovs-vsctl", "get", "bridge", bridge, "datapath_type"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        ).stdout.strip()
    finally:
        subprocess.run(
            ["ovs-vsctl", "--timeout=20", "--if-exists", "del-br", bridge], timeout=30, check=False
        )
        for end in ("kdpa0", "kdpb0"):
            subprocess.run(["ip", "link", "del", end], capture_output=True, timeout=30, check=False)
        a.close()
        b.close()
    ok = " 0% packet loss" in out and dp == "system"
    record(
        "full kernel",
        "OVS kernel datapath: ping across a datapath_type=system bridge",
        "agree" if ok else "differ",
    )
    assert ok, out
