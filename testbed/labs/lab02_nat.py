"""Lab 2, LVS-NAT and the two-NIC director: the real servers' gateway, -m services, counters.

Starting state: the NAT layout without failover (``ha="none"``: d1 holds both VIPs
statically, d2 idles), no services, and the real servers' default route removed. The student
restores the gateway (the inner VIP), adds masquerading services and compares the counters
with DR's.
"""

from __future__ import annotations

from testbed.labs import actions
from testbed.labs.model import CheckResult, Lab, LabContext
from testbed.labs.parse import default_gateway, ratio_within
from testbed.topo.plan import LayoutParams

REQUESTS_PER_CLIENT = 3
OUT_IN_RATIO_RANGE = (0.5, 2.0)
"""An HTTP/1.0 exchange is about as many packets back as forth (SYN/SYN-ACK, request/response
and ACKs, FIN both ways): NAT replies pass the director, so OutPkts tracks InPkts."""


def prepare(ctx: LabContext) -> None:
    hosts, plan = ctx.need_layout()
    for d in plan.directors:
        actions.ipvsadm_ok(hosts, "-C", d.name)
        actions.ipvsadm_ok(hosts, "-Z", d.name)
    for rs in plan.realservers:
        hosts.cmd(rs.name, "ip route del default 2>/dev/null")


def solve(ctx: LabContext) -> None:
    hosts, plan = ctx.need_layout()
    for rs in plan.realservers:
        hosts.cmd(rs.name, f"ip route replace default via {plan.inner_vip}")
    for flag, port in (("-t", 80), ("-u", 7)):
        actions.ipvsadm_ok(hosts, f"-A {flag} {plan.vip}:{port} -s rr")
        for rs in plan.realservers:
            actions.ipvsadm_ok(hosts, f"-a {flag} {plan.vip}:{port} -r {rs.ip}:{port} -m")


def check(ctx: LabContext) -> list[CheckResult]:
    hosts, plan = ctx.need_layout()
    results = []
    wrong = []
    for rs in plan.realservers:
        gw = default_gateway(hosts.cmd(rs.name, "ip -4 route show default"))
        if gw != plan.inner_vip:
            wrong.append(f"{rs.name}: {'no default route' if gw is None else f'via {gw}'}")
    results.append(
        CheckResult(
            "real servers route through the inner VIP",
            not wrong,
            "; ".join(wrong) or f"every real server's default route is via {plan.inner_vip}",
            f"on each real server: ip route add default via {plan.inner_vip} (replies must pass "
            "the "
            "director, which un-NATs them)",
        )
    )

    svc = actions.rules(hosts).get(("tcp", f"{plan.vip}:80"))
    if svc is None:
        results.append(
            CheckResult(
                "the service TCP VIP:80 masquerades to every real server",
                False,
                f"no service TCP {plan.vip}:80 on d1",
                f"d1 ipvsadm -A -t {plan.vip}:80 -s rr, then -a ... -r RIP:80 -m",
            )
        )
    else:
        bad = []
        for rs in plan.realservers:
            dest = svc.dests.get(f"{rs.ip}:80")
            if dest is None or dest.forward != "Masq" or dest.weight <= 0:
                bad.append(
                    f"{rs.ip}:80 "
                    + ("missing" if dest is None else f"{dest.forward} weight {dest.weight}")
                )
        results.append(
            CheckResult(
                "the service TCP VIP:80 masquerades to every real server",
                not bad,
                "; ".join(bad)
                or f"{len(svc.dests)} real servers in Masq mode, scheduler {svc.scheduler}",
                "add each real server with -m (masquerading) and a positive weight",
            )
        )

    before = actions.stats(hosts).get(("tcp", f"{plan.vip}:80"))
    failed = []
    for client in ("c1", "c2"):
        names = actions.http_names(hosts, client, plan.vip, REQUESTS_PER_CLIENT)
        if "" in names:
            failed.append(f"{client}: {names.count('')} of {len(names)} failed")
    results.append(
        CheckResult(
            "HTTP from c1 and c2 through the VIP",
            not failed,
            "; ".join(failed) or f"{REQUESTS_PER_CLIENT} requests from each client answered",
            "a request that fails went to a real server whose replies do not come back through "
            "the director (its gateway), or the service is missing",
        )
    )

    after = actions.stats(hosts).get(("tcp", f"{plan.vip}:80"))
    if before is None or after is None:
        results.append(
            CheckResult(
                "replies pass the director (OutPkts close to InPkts)",
                False,
                "no service to count on",
                "add the service first",
            )
        )
    else:
        d_in = after.total.in_pkts - before.total.in_pkts
        d_out = after.total.out_pkts - before.total.out_pkts
        low, high = OUT_IN_RATIO_RANGE
        results.append(
            CheckResult(
                "replies pass the director (OutPkts close to InPkts)",
                d_out > 0 and ratio_within(d_out, d_in, low, high),
                f"during the check InPkts +{d_in}, OutPkts +{d_out}",
                "OutPkts counts replies un-NATed by the director: none means the replies took "
                "another way (check the gateways)",
            )
        )
    return results


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
)
