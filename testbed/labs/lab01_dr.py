"""Lab 1, LVS-DR by hand: the VIP on the real servers' lo, the ARP problem, -g services.

Starting state: the DR layout with the director running but no services; the real servers
without the VIP on lo and with arp_ignore/arp_announce at 0 (as a fresh Linux box); fw's
neighbour entry for the VIP deleted. The student configures both sides and sees replies
bypass the director.

The check reads fw's neighbour entry for the VIP first, before it sends anything: that entry
is where the student's own requests go, and a real server's MAC there (learnt while that
server still answered ARP for the VIP) sends them past the director. The check flushes
nothing; it says what to flush.
"""

from __future__ import annotations

from testbed.labs import actions
from testbed.labs.checks import http_service_forwards
from testbed.labs.model import CheckResult, Checks, Lab, LabContext
from testbed.labs.parse import arping_macs, inet_addresses, neigh_mac
from testbed.topo.plan import LayoutParams, Plan

HTTP_ROUNDS = 3  # requests per real server: rr reaches each at least once, others very likely
SERVERS_CHECK = "every real server holds the VIP on lo, ARP-silenced"
SERVICE_CHECK = "the service TCP VIP:80 forwards to every real server by DR"
FW_ENTRY_CHECK = "fw sends the VIP's traffic to the director"
ARP_CHECK = "only the director answers ARP for the VIP"
HTTP_CHECK = "HTTP from c1 reaches every real server"
BYPASS_CHECK = "replies bypass the director (OutPkts 0)"
Macs = dict[str, tuple[str, str]]  # MAC -> (host, interface), from `actions.lan_macs`


def _vip32(plan: Plan) -> str:
    return f"{plan.vip}/32"


def _fw_lan(plan: Plan) -> str:
    return plan.node("fw").intfs[1].name


def prepare(ctx: LabContext) -> None:
    hosts, plan = ctx.need_layout()
    actions.ipvsadm_ok(hosts, "-C")
    actions.ipvsadm_ok(hosts, "-Z")
    for rs in plan.realservers:
        hosts.cmd(rs.name, f"ip addr del {_vip32(plan)} dev lo 2>/dev/null")
        actions.set_arp_settings(hosts, rs.name, rs.intfs[0].name, 0, 0)
    hosts.cmd("fw", f"ip neigh del {plan.vip} dev {_fw_lan(plan)} 2>/dev/null")


def solve(ctx: LabContext) -> None:
    hosts, plan = ctx.need_layout()
    for rs in plan.realservers:
        # The sysctls first: a VIP on lo with arp_ignore=0 would answer ARP at once.
        actions.set_arp_settings(hosts, rs.name, rs.intfs[0].name, 1, 2)
        hosts.cmd(rs.name, f"ip addr replace {_vip32(plan)} dev lo")
    actions.ipvsadm_ok(hosts, f"-A -t {plan.vip}:80 -s rr")
    for rs in plan.realservers:
        actions.ipvsadm_ok(hosts, f"-a -t {plan.vip}:80 -r {rs.ip}:80 -g")
    hosts.cmd("fw", f"ip neigh flush dev {_fw_lan(plan)}")


def check(ctx: LabContext) -> list[CheckResult]:
    hosts, plan = ctx.need_layout()
    # What the student's own requests use, read before the check sends anything.
    entry = neigh_mac(hosts.cmd("fw", f"ip neigh show {plan.vip} dev {_fw_lan(plan)}"))
    macs = actions.lan_macs(hosts, plan, ["d1", *(rs.name for rs in plan.realservers)])
    checks = Checks()
    servers = checks.add(_check_realservers(ctx))
    service = checks.add(http_service_forwards(ctx, SERVICE_CHECK, "Route"))
    fw_entry = checks.after([servers], FW_ENTRY_CHECK, lambda: _check_fw_entry(ctx, entry, macs))
    arp = checks.after([servers], ARP_CHECK, lambda: _check_arp(ctx, macs))
    counted: dict[str, int] = {}
    http = checks.after(
        [servers, service, fw_entry, arp], HTTP_CHECK, lambda: _check_http(ctx, counted)
    )
    checks.after([http], BYPASS_CHECK, lambda: _check_bypass(counted))
    return checks.results


def figures(ctx: LabContext) -> dict[str, str]:
    """The MACs of the LAN's hosts (question 1) and the director's counters (question 5)."""
    hosts, plan = ctx.need_layout()
    macs = actions.lan_macs(hosts, plan, ["d1", *(rs.name for rs in plan.realservers)])
    return {
        "MAC addresses on the LAN": "\n".join(
            f"{host} {intf}: {mac}" for mac, (host, intf) in macs.items()
        ),
        "fw's neighbour entry for the VIP": hosts.cmd(
            "fw", f"ip neigh show {plan.vip} dev {_fw_lan(plan)}"
        ).strip()
        or "none",
        "d1 ipvsadm -L -n --stats --exact": actions.ipvsadm_ok(hosts, "-L -n --stats --exact"),
    }


def _check_realservers(ctx: LabContext) -> CheckResult:
    hosts, plan = ctx.need_layout()
    wrong, fixes = [], []
    for rs in plan.realservers:
        intf = rs.intfs[0].name
        problems = []
        ignore = actions.arp_setting(hosts, rs.name, "arp_ignore", intf)
        announce = actions.arp_setting(hosts, rs.name, "arp_announce", intf)
        if ignore not in (1, 2) or announce != 2:
            problems += [f"arp_ignore {ignore}"] if ignore not in (1, 2) else []
            problems += [f"arp_announce {announce}"] if announce != 2 else []
            fixes.append(
                f"`{rs.name} sysctl -w net.ipv4.conf.all.arp_ignore=1 "
                "net.ipv4.conf.all.arp_announce=2`"
            )
        if _vip32(plan) not in inet_addresses(hosts.cmd(rs.name, "ip -4 -o addr show dev lo")):
            problems.append(f"no {_vip32(plan)} on lo")
            fixes.append(f"`{rs.name} ip addr add {_vip32(plan)} dev lo`")
        if problems:
            wrong.append(f"{rs.name}: {', '.join(problems)}")
    return CheckResult(
        SERVERS_CHECK,
        not wrong,
        "; ".join(wrong)
        or f"all {len(plan.realservers)} have {_vip32(plan)} on lo, arp_ignore 1, arp_announce 2",
        " then ".join(fixes)
        + (
            f"; then `fw ip neigh flush dev {_fw_lan(plan)}` (fw may have learnt a real "
            "server's MAC for the VIP meanwhile)"
            if any("sysctl" in f for f in fixes)
            else ""
        ),
    )


def _host(mac: str, macs: Macs) -> str:
    """The host a MAC belongs to (the MAC itself if no host of the LAN has it)."""
    return macs[mac][0] if mac in macs else mac


def _named(mac: str | None, macs: Macs) -> str:
    """``rs3 (96:1f:37:94:e4:f6 on rs3-eth0)``."""
    if mac is None:
        return "nothing"
    if mac not in macs:
        return f"an unknown host ({mac})"
    host, intf = macs[mac]
    return f"{host} ({mac} on {intf})"


def _check_fw_entry(ctx: LabContext, entry: str | None, macs: Macs) -> CheckResult:
    """fw's neighbour entry for the VIP as the student's requests found it; with none, fw
    resolves the VIP now (one ping from fw), as the next request would."""
    hosts, plan = ctx.need_layout()
    seen = f"fw's entry for the VIP holds {_named(entry, macs)}"
    if entry is None:
        hosts.cmd("fw", f"ping -c 1 -W 1 {plan.vip} >/dev/null")
        entry = neigh_mac(hosts.cmd("fw", f"ip neigh show {plan.vip} dev {_fw_lan(plan)}"))
        seen = f"fw had no entry for the VIP; resolving it now gave {_named(entry, macs)}"
    holder = _host(entry, macs) if entry else ""
    if holder.startswith("rs"):
        hint = (
            f"fw sends every request for the VIP straight to {holder}, past the director: it "
            f"learnt {holder}'s MAC for the VIP while {holder} still answered ARP for it, and "
            f"keeps it. Flush it: `fw ip neigh flush dev {_fw_lan(plan)}`, then send a "
            "request again"
        )
    else:
        hint = (
            "fw cannot resolve the VIP to d1: is the VIP on d1 "
            f"(`d1 ip -4 addr show dev {plan.node('d1').intfs[0].name}`)? `lab reset 1` "
            "puts it back"
        )
    return CheckResult(FW_ENTRY_CHECK, holder == "d1", seen, hint)


def _check_arp(ctx: LabContext, macs: Macs) -> CheckResult:
    """Ask fw (the router whose ARP cache matters) who has the VIP."""
    hosts, plan = ctx.need_layout()
    answered = arping_macs(hosts.cmd("fw", f"arping -c 2 -w 3 -I {_fw_lan(plan)} {plan.vip}"))
    others = sorted(_host(m, macs) for m in answered if _host(m, macs) != "d1")
    return CheckResult(
        ARP_CHECK,
        bool(answered) and not others,
        "arping from fw: answers from "
        + ("; ".join(_named(m, macs) for m in sorted(answered)) or "nobody"),
        f"{', '.join(others)} answer(s) ARP for the VIP and steal the director's traffic (the "
        "ARP problem): set arp_ignore=1 and arp_announce=2 there"
        if others
        else "nobody answered: is the VIP on d1? `lab reset 1` puts it back",
    )


def _check_http(ctx: LabContext, counted: dict[str, int]) -> CheckResult:
    """Requests from c1; the director's counters around them go to ``counted``."""
    hosts, plan = ctx.need_layout()
    key = ("tcp", f"{plan.vip}:80")
    before = actions.stats(hosts).get(key)
    names = actions.http_names(hosts, "c1", plan.vip, HTTP_ROUNDS * len(plan.realservers))
    after = actions.stats(hosts).get(key)
    if before is not None and after is not None:
        counted["in_pkts"] = after.total.in_pkts - before.total.in_pkts
        counted["out_pkts"] = after.total.out_pkts
    served = {n for n in names if n}
    missing = sorted(rs.name for rs in plan.realservers if rs.name not in served)
    return CheckResult(
        HTTP_CHECK,
        not missing,
        f"{len(names) - names.count('')} of {len(names)} requests answered, by "
        f"{', '.join(sorted(served)) or 'none'}",
        f"{', '.join(missing)} never answered although configured: is its HTTP server up "
        f"(`{missing[0]} ss -ltn`)? `lab reset 1` starts over"
        if missing
        else "",
    )


def _check_bypass(counted: dict[str, int]) -> CheckResult:
    in_pkts, out_pkts = counted.get("in_pkts", 0), counted.get("out_pkts", 0)
    return CheckResult(
        BYPASS_CHECK,
        in_pkts > 0 and out_pkts == 0,
        f"InPkts +{in_pkts} during the check, OutPkts {out_pkts} in all",
        "OutPkts counts replies through the director: in DR there are none. Is each real "
        "server added with -g (Route)?"
        if in_pkts > 0
        else "the check's requests were not counted by the service: is it TCP VIP:80?",
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
    minutes="30-45",
    prerequisites="IP addresses and subnets, ARP, a Linux shell (ip, sysctl)",
    outcomes=(
        "configure an LVS-DR service with ipvsadm (-A, -a ... -g)",
        "explain the ARP problem and silence it with arp_ignore and arp_announce",
        "show with counters and tcpdump that DR replies bypass the director",
    ),
    figures=figures,
)
