"""Lab 6, with the controllers: the OpenFlow director balancing in Open vSwitch.

Starting state: the DR layout on OVS switches with ``director="openflow"`` (the os-ken app
answers ARP for the VIP, schedules each new connection and installs its flow), the default
services and zeroed counters. The student sends traffic, reads the director's table through
``lvs-testbed ipvsadm --director of`` and the switch's flows with ``ovs-ofctl``, and compares
with the Python director. The switches live in the root namespace, where the checking process
runs too, so their flows are read there.
"""

from __future__ import annotations

import subprocess

from testbed.labs import actions
from testbed.labs.model import CheckResult, Checks, Lab, LabContext
from testbed.labs.parse import ServiceStats, lb_connection_flows
from testbed.topo.plan import LayoutParams, Plan

DIRECTOR = "of"  # the OpenFlow director's name on the control channel
REQUESTS_PER_RS = 2


def prepare(ctx: LabContext) -> None:
    hosts, plan = ctx.need_layout()
    actions.restore_default_services(hosts, plan, DIRECTOR)


def solve(ctx: LabContext) -> None:
    hosts, plan = ctx.need_layout()
    for client in ("c1", "c2"):
        actions.http_names(hosts, client, plan.vip, REQUESTS_PER_RS * len(plan.realservers))


def dump_flows(switch: str) -> str:
    """The switch's flows, read in the root namespace (OVS's own)."""
    res = subprocess.run(
        ["ovs-ofctl", "-O", "OpenFlow13", "dump-flows", switch],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    return res.stdout + res.stderr


SERVICE_CHECK = "the OpenFlow director has the service TCP VIP:80"
CONNS_CHECK = "the OpenFlow director's table has connections on every real server"
FLOWS_CHECK = "the switches hold per-connection flows"


def check(ctx: LabContext) -> list[CheckResult]:
    hosts, plan = ctx.need_layout()
    svc = actions.stats(hosts, DIRECTOR).get(("tcp", f"{plan.vip}:80"))
    checks = Checks()
    service = checks.add(
        CheckResult(
            SERVICE_CHECK,
            svc is not None,
            "present" if svc is not None else f"no service TCP {plan.vip}:80",
            "`sudo lvs-testbed lab reset 6` puts the default services back",
        )
    )
    conns = checks.after([service], CONNS_CHECK, lambda: _check_conns(plan, svc))
    checks.after([conns], FLOWS_CHECK, lambda: _check_flows(plan))
    return checks.results


def figures(ctx: LabContext) -> dict[str, str]:
    """The OpenFlow director's counters and the switches' per-connection flows (questions 1-3)."""
    hosts, plan = ctx.need_layout()
    out = {
        "ipvsadm --director of -L -n --stats --exact": actions.ipvsadm_ok(
            hosts, "-L -n --stats --exact", DIRECTOR
        )
    }
    for sw in plan.switches:
        out[f"per-connection flows on {sw}"] = str(lb_connection_flows(dump_flows(sw)))
    return out


def _check_conns(plan: Plan, svc: ServiceStats) -> CheckResult:
    names = {rs.ip: rs.name for rs in plan.realservers}
    conns = {names.get(rip.split(":")[0], rip): c.conns for rip, c in svc.dests.items()}
    idle = sorted(n for n in names.values() if conns.get(n, 0) == 0)
    if sum(conns.values()) == 0:
        hint = (
            "no connection reached the OpenFlow director: send requests to the VIP "
            f"(`c1 for i in 1 2 3; do curl -s -m 2 http://{plan.vip}/; done`), where the "
            "switch hands each new connection to the controller; d1 idles in this lab"
        )
    else:
        hint = (
            f"{', '.join(idle)} got no connection yet: send a few more requests to the VIP "
            f"(`c1 for i in 1 2 3; do curl -s -m 2 http://{plan.vip}/; done`: round robin "
            "gives each real server one in three)"
        )
    return CheckResult(
        CONNS_CHECK, not idle, ", ".join(f"{n} {c}" for n, c in sorted(conns.items())), hint
    )


def _check_flows(plan: Plan) -> CheckResult:
    flows = {sw: lb_connection_flows(dump_flows(sw)) for sw in plan.switches}
    return CheckResult(
        FLOWS_CHECK,
        sum(flows.values()) > 0,
        ", ".join(f"{sw}: {n}" for sw, n in flows.items()),
        "each new connection gets its own flow (cookie 0x4c564c42...); they idle out after "
        "IPVS's timeouts, so send fresh requests to the VIP",
    )


LAB = Lab(
    number=6,
    slug="openflow",
    title="With the controllers: the OpenFlow director",
    summary=(
        "the director as an os-ken app: packet-in per connection, flows in OVS, ipvsadm "
        "--director of"
    ),
    layout="dr",
    params=LayoutParams(n_rs=3, n_clients=2, switch="ovs", director="openflow"),
    prepare=prepare,
    solve=solve,
    check=check,
    minutes="45",
    prerequisites="lab 1 (LVS-DR by hand), what a switch and its forwarding table are",
    outcomes=(
        "explain how an OpenFlow controller and a switch share a director's work",
        "read per-connection flows with ovs-ofctl and match them to ipvsadm's counters",
        "say which LVS features need the packet in the director and which do not",
    ),
    figures=figures,
)
