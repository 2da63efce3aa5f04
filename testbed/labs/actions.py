"""What lab steps do on a running layout: commands in its hosts, requests to its directors.

For: the I/O of prepare, solve and check, through `HostAccess` (so the same code runs in the
process that built the layout and from another terminal) and the directors' control sockets
in the run directory (reachable from either process, outside any CPU quota). Output is read
with `testbed.labs.parse`.

Not for: judging what was read (the lab modules), or building layouts.
"""

from __future__ import annotations

import json
import shlex
import sys
import tempfile
import time
from collections.abc import Callable

from testbed.labs.model import LabError
from testbed.labs.parse import (
    REQUEST_MARK,
    ConnEntry,
    ServiceKey,
    ServiceRule,
    ServiceStats,
    effective_arp_setting,
    parse_connections,
    parse_rules,
    parse_stats,
    request_names,
)
from testbed.net.hosts import HostAccess
from testbed.runtime.control import request, socket_path
from testbed.topo.plan import Plan, ipvsadm_rules

# Kernel IPVS sums the counters ipvsadm --stats shows at its 2-second estimator tick.
KERNEL_STATS_TICK_S = 2.1


def kernel_ipvs(hosts: HostAccess) -> bool:
    """Whether the lab's layout runs kernel IPVS (``lab start N --director ipvs``)."""
    try:
        layout = json.loads((hosts.run_dir / "layout.json").read_text())
    except (OSError, ValueError):
        return False
    return layout.get("params", {}).get("director") == "ipvs"


def ipvsadm(
    hosts: HostAccess, args: str, director: str = "d1", stdin: str | None = None
) -> tuple[int, str]:
    """``ipvsadm ARGS`` on ``director`` (a director host, or "of" for the OpenFlow director);
    the real ipvsadm in the director host when the layout runs kernel IPVS."""
    if kernel_ipvs(hosts):
        with tempfile.NamedTemporaryFile("w", prefix="lvs-testbed-ipvsadm-") as f:
            f.write(stdin or "")
            f.flush()
            argv = shlex.join(shlex.split(args))
            out = hosts.cmd(director, f"ipvsadm {argv} < {f.name} 2>&1; echo __rc=$?")
        body, _, rc = out.rpartition("__rc=")
        return int(rc.strip() or 1), body
    reply = request(
        socket_path(hosts.run_dir, director),
        {"op": "ipvsadm", "argv": shlex.split(args), "stdin": stdin},
    )
    return reply.get("rc", 1), reply.get("out", "") + reply.get("err", "")


def ipvsadm_ok(hosts: HostAccess, args: str, director: str = "d1", stdin: str | None = None) -> str:
    rc, out = ipvsadm(hosts, args, director, stdin)
    if rc != 0:
        raise LabError(f"`ipvsadm {args}` on {director} failed: {out.strip()}")
    return out


def rules(hosts: HostAccess, director: str = "d1") -> dict[ServiceKey, ServiceRule]:
    return parse_rules(ipvsadm_ok(hosts, "-S -n", director))


def stats(hosts: HostAccess, director: str = "d1") -> dict[ServiceKey, ServiceStats]:
    if kernel_ipvs(hosts):
        time.sleep(KERNEL_STATS_TICK_S)  # let the counters catch up with the last packets
    return parse_stats(ipvsadm_ok(hosts, "-L -n --stats --exact", director))


def connections(hosts: HostAccess, director: str = "d1") -> list[ConnEntry]:
    return parse_connections(ipvsadm_ok(hosts, "-L -n -c", director))


def restore_default_services(hosts: HostAccess, plan: Plan, director: str = "d1") -> None:
    """The layout's default services (rr over every real server), counters zeroed."""
    ipvsadm_ok(hosts, "-C", director)
    ipvsadm_ok(hosts, "-R", director, stdin=ipvsadm_rules(plan))
    ipvsadm_ok(hosts, "-Z", director)


def http_names(
    hosts: HostAccess, client: str, vip: str, n: int, timeout_s: float = 2.0
) -> list[str]:
    """``n`` HTTP GETs from ``client`` to the VIP, one after the other: the name of the real
    server that answered each ('' for a failed request)."""
    loop = (
        f"for i in $(seq {n}); do r=$(curl -s -m {timeout_s:g} http://{vip}/); "
        f'echo "{REQUEST_MARK} ${{r%% *}}"; done'
    )
    return request_names(hosts.cmd(client, loop))


def udp_probe(
    hosts: HostAccess, client: str, dst: str, port: int, sports: list[int], timeout_s: float = 1.0
) -> dict[int, bool]:
    """One datagram from each source port of ``client`` to dst:port; which were echoed."""
    out = hosts.cmd(
        client,
        f"{sys.executable} -m testbed.labs.udpprobe {dst} {port} "
        f"--sports {','.join(map(str, sports))} --timeout-s {timeout_s:g}",
    )
    line = next((x for x in reversed(out.splitlines()) if x.startswith("{")), None)
    if line is None:
        raise LabError(f"the UDP probe on {client} printed no result: {out.strip()[-300:]}")
    return {int(k): v for k, v in json.loads(line).items()}


def read_int(hosts: HostAccess, host: str, path: str) -> int:
    out = hosts.cmd(host, f"cat {path}").strip()
    try:
        return int(out.split()[-1])
    except (IndexError, ValueError):
        raise LabError(f"cannot read {path} on {host}: {out!r}") from None


def arp_setting(hosts: HostAccess, host: str, name: str, intf: str) -> int:
    """The value the kernel applies for ``arp_ignore`` or ``arp_announce`` on ``intf``."""
    base = "/proc/sys/net/ipv4/conf"
    return effective_arp_setting(
        read_int(hosts, host, f"{base}/all/{name}"), read_int(hosts, host, f"{base}/{intf}/{name}")
    )


def set_arp_settings(
    hosts: HostAccess, host: str, intf: str, arp_ignore: int, arp_announce: int
) -> None:
    """Set both ARP sysctls on ``all`` and on ``intf`` (the kernel uses the larger)."""
    for scope in ("all", intf):
        hosts.cmd(
            host,
            f"sysctl -qw net.ipv4.conf.{scope}.arp_ignore={arp_ignore} "
            f"net.ipv4.conf.{scope}.arp_announce={arp_announce}",
        )


def mac_of(hosts: HostAccess, host: str, intf: str) -> str:
    return hosts.cmd(host, f"cat /sys/class/net/{intf}/address").strip().lower()


def lan_macs(hosts: HostAccess, plan: Plan, names: list[str]) -> dict[str, tuple[str, str]]:
    """MAC -> (host, interface) for the first interface of each named host, so a check can
    say who answered rather than print bare MACs."""
    out = {}
    for name in names:
        intf = plan.node(name).intfs[0].name
        out[mac_of(hosts, name, intf)] = (name, intf)
    return out


def wait_until(predicate: Callable[[], bool], timeout_s: float, step_s: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout_s
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(step_s)
