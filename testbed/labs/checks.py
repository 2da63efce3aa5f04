"""Checks more than one lab runs, with the forwarding method as the parameter.

For: judging a running layout the same way in each lab that asks the same question (lab 1
asks it of DR, lab 2 of NAT), so a fix to the wording or the hint lands once.
"""

from __future__ import annotations

from testbed.labs import actions
from testbed.labs.model import CheckResult, LabContext

# ipvsadm's forwarding flag for each method `ipvsadm -L` names, and what the flag means.
FORWARD_FLAGS = {
    "Route": ("-g", "gatewaying = direct routing"),
    "Masq": ("-m", "masquerading"),
    "Tunnel": ("-i", "ipip tunnelling"),
}


def http_service_forwards(ctx: LabContext, name: str, forward: str) -> CheckResult:
    """Whether d1's service TCP VIP:80 sends to every real server by ``forward`` (as
    `ipvsadm -L` names it: Route, Masq, Tunnel) with a positive weight; the hint is the
    ipvsadm line that mends each real server found wrong."""
    hosts, plan = ctx.need_layout()
    flag, meaning = FORWARD_FLAGS[forward]
    vip = f"{plan.vip}:80"
    svc = actions.rules(hosts).get(("tcp", vip))
    if svc is None:
        return CheckResult(
            name,
            False,
            f"no service TCP {vip} on d1",
            f"`d1 ipvsadm -A -t {vip} -s rr`, then `d1 ipvsadm -a -t {vip} -r RIP:80 {flag}` "
            "for each real server",
        )
    wrong, fixes = [], []
    for rs in plan.realservers:
        dest = svc.dests.get(f"{rs.ip}:80")
        if dest is None:
            wrong.append(f"{rs.name} ({rs.ip}:80) missing")
            fixes.append(f"`d1 ipvsadm -a -t {vip} -r {rs.ip}:80 {flag}`")
        elif dest.forward != forward or dest.weight <= 0:
            wrong.append(f"{rs.name} ({rs.ip}:80) is {dest.forward} weight {dest.weight}")
            fixes.append(f"`d1 ipvsadm -e -t {vip} -r {rs.ip}:80 {flag} -w 1`")
    return CheckResult(
        name,
        not wrong,
        "; ".join(wrong)
        or f"{len(svc.dests)} real servers in {forward} mode, scheduler {svc.scheduler}",
        "; ".join(fixes) + f" ({flag}: {meaning}, and a positive weight)",
    )
