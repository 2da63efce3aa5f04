"""Lab 2, LVS-NAT and the two-NIC director: the real servers' gateway, -m services, counters.

Starting state: the NAT layout without failover (``ha="none"``: d1 holds both VIPs
statically, d2 idles), no services, and the real servers' default route removed. The student
restores the gateway (the inner VIP), adds masquerading services and compares the counters
with DR's.
"""

from __future__ import annotations

from testbed.labs import actions
from testbed.labs.checks import http_service_forwards
from testbed.labs.model import CheckResult, Checks, Lab, LabContext
from testbed.labs.parse import default_gateway, ratio_within
from testbed.topo.plan import LayoutParams

REQUESTS_PER_CLIENT = 3
RS_NET = "192.168.0.0/24"  # the real servers' network, which question 6 routes c1 to
OUT_IN_RATIO_RANGE = (0.5, 2.0)
"""An HTTP/1.0 exchange is about as many packets back as forth (SYN/SYN-ACK, request/response
and ACKs, FIN both ways): NAT replies pass the director, so OutPkts tracks InPkts."""
GATEWAY_CHECK = "real servers route through the inner VIP"
SERVICE_CHECK = "the service TCP VIP:80 masquerades to every real server"
FORWARD_CHECK = "d1 does not route (ip_forward 0)"
HTTP_CHECK = "HTTP from c1 and c2 through the VIP"
COUNTERS_CHECK = "replies pass the director (OutPkts close to InPkts)"


def prepare(ctx: LabContext) -> None:
    hosts, plan = ctx.need_layout()
    for d in plan.directors:
        actions.ipvsadm_ok(hosts, "-C", d.name)
        actions.ipvsadm_ok(hosts, "-Z", d.name)
    for rs in plan.realservers:
        hosts.cmd(rs.name, "ip route del default 2>/dev/null")
    for d in plan.directors:  # question 6's demonstration turns forwarding on for a moment
        hosts.cmd(d.name, "sysctl -qw net.ipv4.ip_forward=0")
    hosts.cmd("c1", f"ip route del {RS_NET} 2>/dev/null")


def solve(ctx: LabContext) -> None:
    hosts, plan = ctx.need_layout()
    for rs in plan.realservers:
        hosts.cmd(rs.name, f"ip route replace default via {plan.inner_vip}")
    for flag, port in (("-t", 80), ("-u", 7)):
        actions.ipvsadm_ok(hosts, f"-A {flag} {plan.vip}:{port} -s rr")
        for rs in plan.realservers:
            actions.ipvsadm_ok(hosts, f"-a {flag} {plan.vip}:{port} -r {rs.ip}:{port} -m")


def check(ctx: LabContext) -> list[CheckResult]:
    checks = Checks()
    gateways = checks.add(_check_gateways(ctx))
    service = checks.add(http_service_forwards(ctx, SERVICE_CHECK, "Masq"))
    forward = checks.add(_check_forwarding(ctx))
    counted: dict[str, int] = {}
    http = checks.after([gateways, service, forward], HTTP_CHECK, lambda: _check_http(ctx, counted))
    checks.after([http], COUNTERS_CHECK, lambda: _check_counters(counted))
    return checks.results


def figures(ctx: LabContext) -> dict[str, str]:
    """The director's counters (question 3) and its NICs' packet counts (question 4)."""
    hosts, plan = ctx.need_layout()
    out = {"d1 ipvsadm -L -n --stats --exact": actions.ipvsadm_ok(hosts, "-L -n --stats --exact")}
    for intf in plan.node("d1").intfs:
        out[f"d1 ip -s link show {intf.name}"] = hosts.cmd("d1", f"ip -s link show {intf.name}")
    return out


def _check_gateways(ctx: LabContext) -> CheckResult:
    hosts, plan = ctx.need_layout()
    wrong, fixes = [], []
    for rs in plan.realservers:
        gw = default_gateway(hosts.cmd(rs.name, "ip -4 route show default"))
        if gw != plan.inner_vip:
            wrong.append(f"{rs.name}: {'no default route' if gw is None else f'via {gw}'}")
            fixes.append(f"`{rs.name} ip route replace default via {plan.inner_vip}`")
    return CheckResult(
        GATEWAY_CHECK,
        not wrong,
        "; ".join(wrong) or f"every real server's default route is via {plan.inner_vip}",
        "; ".join(fixes)
        + " (replies must pass the director, which un-NATs them; `replace` sets the route "
        "whether or not one is there)",
    )


def _check_forwarding(ctx: LabContext) -> CheckResult:
    hosts, _plan = ctx.need_layout()
    value = actions.read_int(hosts, "d1", "/proc/sys/net/ipv4/ip_forward")
    return CheckResult(
        FORWARD_CHECK,
        value == 0,
        f"d1's net.ipv4.ip_forward is {value}",
        "`d1 sysctl -w net.ipv4.ip_forward=0`: with forwarding on, d1's kernel routes "
        "between the networks beside the director and forwards NAT replies a second time",
    )


def _check_http(ctx: LabContext, counted: dict[str, int]) -> CheckResult:
    """Requests from each client; the service's counter growth goes to ``counted``."""
    hosts, plan = ctx.need_layout()
    key = ("tcp", f"{plan.vip}:80")
    before = actions.stats(hosts).get(key)
    failed = []
    for client in ("c1", "c2"):
        names = actions.http_names(hosts, client, plan.vip, REQUESTS_PER_CLIENT)
        if "" in names:
            failed.append(f"{client}: {names.count('')} of {len(names)} failed")
    after = actions.stats(hosts).get(key)
    if before is not None and after is not None:
        counted["in_pkts"] = after.total.in_pkts - before.total.in_pkts
        counted["out_pkts"] = after.total.out_pkts - before.total.out_pkts
    return CheckResult(
        HTTP_CHECK,
        not failed,
        "; ".join(failed) or f"{REQUESTS_PER_CLIENT} requests from each client answered",
        "with gateways and service as asked, a failing request points at a real server that "
        "does not answer: `rsN ss -ltn`; `lab reset 2` starts over",
    )


def _check_counters(counted: dict[str, int]) -> CheckResult:
    d_in, d_out = counted.get("in_pkts", 0), counted.get("out_pkts", 0)
    low, high = OUT_IN_RATIO_RANGE
    return CheckResult(
        COUNTERS_CHECK,
        d_out > 0 and ratio_within(d_out, d_in, low, high),
        f"during the check InPkts +{d_in}, OutPkts +{d_out}",
        "OutPkts counts replies un-NATed by the director: none means the replies took "
        "another way (check the gateways)",
    )


LAB = Lab(
    number=2,
    slug="nat-two-nics",
    title="LVS-NAT and the two-NIC director",
    summary="real servers' gateway = inner VIP, -m services, replies through the director",
    layout="nat",
    params=LayoutParams(n_rs=3, n_clients=2, ha="none"),
    prepare=prepare,
    solve=solve,
    check=check,
    minutes="30-45",
    prerequisites="lab 1 (LVS-DR by hand), IP routing and default gateways",
    outcomes=(
        "configure an LVS-NAT service with ipvsadm (-a ... -m)",
        "explain why NAT real servers must route their replies through the director",
        "compare a NAT director's packet counts with DR's and read its NICs' counters",
    ),
    figures=figures,
)
