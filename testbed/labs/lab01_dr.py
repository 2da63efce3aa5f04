"""Lab 1, LVS-DR by hand: the VIP on the real servers' lo, the ARP problem, -g services.

Starting state: the DR layout with the director running but no services; the real servers
without the VIP on lo and with arp_ignore/arp_announce at 0 (as a fresh Linux box). The
student configures both sides and sees replies bypass the director.
"""

from __future__ import annotations

from testbed.labs import actions
from testbed.labs.model import CheckResult, Lab, LabContext
from testbed.labs.parse import arping_macs, inet_addresses, neigh_mac
from testbed.topo.plan import LayoutParams, Plan

HTTP_ROUNDS = 3  # requests per real server: rr reaches each at least once, others very likely


def _vip32(plan: Plan) -> str:
    return f"{plan.vip}/32"


def prepare(ctx: LabContext) -> None:
    hosts, plan = ctx.need_layout()
    actions.ipvsadm_ok(hosts, "-C")
    actions.ipvsadm_ok(hosts, "-Z")
    for rs in plan.realservers:
        hosts.cmd(rs.name, f"ip addr del {_vip32(plan)} dev lo 2>/dev/null")
        actions.set_arp_settings(hosts, rs.name, rs.intfs[0].name, 0, 0)
    fw = plan.node("fw")
    hosts.cmd(fw.name, f"ip neigh del {plan.vip} dev {fw.intfs[1].name} 2>/dev/null")


def solve(ctx: LabContext) -> None:
    hosts, plan = ctx.need_layout()
    for rs in plan.realservers:
        # The sysctls first: a VIP on lo with arp_ignore=0 would answer ARP at once.
        actions.set_arp_settings(hosts, rs.name, rs.intfs[0].name, 1, 2)
        hosts.cmd(rs.name, f"ip addr replace {_vip32(plan)} dev lo")
    actions.ipvsadm_ok(hosts, f"-A -t {plan.vip}:80 -s rr")
    for rs in plan.realservers:
        actions.ipvsadm_ok(hosts, f"-a -t {plan.vip}:80 -r {rs.ip}:80 -g")


def check(ctx: LabContext) -> list[CheckResult]:
    hosts, plan = ctx.need_layout()
    results = [_check_realservers(ctx), _check_arp(ctx), _check_service(ctx)]
    before = actions.stats(hosts).get(("tcp", f"{plan.vip}:80"))
    names = actions.http_names(hosts, "c1", plan.vip, HTTP_ROUNDS * len(plan.realservers))
    served = {n for n in names if n}
    missing = sorted(rs.name for rs in plan.realservers if rs.name not in served)
    results.append(
        CheckResult(
            "HTTP from c1 reaches every real server",
            not missing,
            f"{len(names) - names.count('')} of {len(names)} requests answered, by "
            f"{', '.join(sorted(served)) or 'none'}",
            "a real server that never answers lacks the VIP on lo, or is not in the service with -g"
            if served
            else "no answer at all: is the service there, and the VIP on every real server's lo?",
        )
    )
    after = actions.stats(hosts).get(("tcp", f"{plan.vip}:80"))
    if before is None or after is None:
        results.append(
            CheckResult(
                "replies bypass the director (OutPkts 0)",
                False,
                f"no service TCP {plan.vip}:80 to count on",
                "add the service first",
            )
        )
    else:
        in_pkts = after.total.in_pkts - before.total.in_pkts
        ok = in_pkts > 0 and after.total.out_pkts == 0
        results.append(
            CheckResult(
                "replies bypass the director (OutPkts 0)",
                ok,
                f"InPkts +{in_pkts} during the check, OutPkts {after.total.out_pkts} in all",
                "OutPkts counts replies through the director: in DR there are none. Is the "
                "forwarding method -g (Route)?"
                if in_pkts > 0
                else "no packets reached the service",
            )
        )
    return results


def _check_realservers(ctx: LabContext) -> CheckResult:
    hosts, plan = ctx.need_layout()
    wrong = []
    for rs in plan.realservers:
        intf = rs.intfs[0].name
        problems = []
        if _vip32(plan) not in inet_addresses(hosts.cmd(rs.name, "ip -4 -o addr show dev lo")):
            problems.append(f"no {_vip32(plan)} on lo")
        ignore = actions.arp_setting(hosts, rs.name, "arp_ignore", intf)
        announce = actions.arp_setting(hosts, rs.name, "arp_announce", intf)
        if ignore not in (1, 2):
            problems.append(f"arp_ignore {ignore}")
        if announce != 2:
            problems.append(f"arp_announce {announce}")
        if problems:
            wrong.append(f"{rs.name}: {', '.join(problems)}")
    return CheckResult(
        "every real server holds the VIP on lo, ARP-silenced",
        not wrong,
        "; ".join(wrong)
        or f"all {len(plan.realservers)} have {_vip32(plan)} on lo, arp_ignore 1, arp_announce 2",
        f"on each real server: sysctl -w net.ipv4.conf.all.arp_ignore=1 "
        f"net.ipv4.conf.all.arp_announce=2, then ip addr add {_vip32(plan)} dev lo",
    )


def _check_arp(ctx: LabContext) -> CheckResult:
    """Ask for the VIP from the firewall (the router whose ARP cache matters) two ways."""
    hosts, plan = ctx.need_layout()
    fw_intf = plan.node("fw").intfs[1].name
    director_mac = actions.mac_of(hosts, "d1", plan.node("d1").intfs[0].name)
    answered = arping_macs(hosts.cmd("fw", f"arping -c 2 -w 3 -I {fw_intf} {plan.vip}"))
    hosts.cmd("fw", f"ip neigh del {plan.vip} dev {fw_intf} 2>/dev/null; ping -c 1 -W 1 {plan.vip}")
    cached = neigh_mac(hosts.cmd("fw", f"ip neigh show {plan.vip} dev {fw_intf}"))
    ok = answered == {director_mac} and cached == director_mac
    return CheckResult(
        "only the director answers ARP for the VIP",
        ok,
        f"arping from fw: answers from {', '.join(sorted(answered)) or 'nobody'}; fw's cache: "
        f"{cached or 'empty'}; d1 is {director_mac}",
        "a real server answering for the VIP steals the director's traffic (the ARP problem): "
        "set arp_ignore=1 and arp_announce=2 on every real server",
    )


def _check_service(ctx: LabContext) -> CheckResult:
    hosts, plan = ctx.need_layout()
    svc = actions.rules(hosts).get(("tcp", f"{plan.vip}:80"))
    if svc is None:
        return CheckResult(
            "the service TCP VIP:80 forwards to every real server by DR",
            False,
            f"no service TCP {plan.vip}:80",
            f"ipvsadm -A -t {plan.vip}:80 -s rr, then -a ... -r RIP:80 -g per real server",
        )
    wrong = []
    for rs in plan.realservers:
        dest = svc.dests.get(f"{rs.ip}:80")
        if dest is None:
            wrong.append(f"{rs.ip}:80 missing")
        elif dest.forward != "Route":
            wrong.append(f"{rs.ip}:80 is {dest.forward}")
        elif dest.weight <= 0:
            wrong.append(f"{rs.ip}:80 has weight {dest.weight}")
    return CheckResult(
        "the service TCP VIP:80 forwards to every real server by DR",
        not wrong,
        "; ".join(wrong)
        or f"{len(svc.dests)} real servers in Route mode, scheduler {svc.scheduler}",
        "add each real server with -g (gatewaying = direct routing) and a positive weight",
    )


LAB = Lab(
    number=1,
    slug="dr-by-hand",
    title="LVS-DR by hand",
    summary=(
        "VIP on the real servers' lo, the ARP problem, -g services; replies bypass the director"
    ),
    layout="dr",
    params=LayoutParams(n_rs=3, n_clients=2),
    prepare=prepare,
    solve=solve,
    check=check,
)
