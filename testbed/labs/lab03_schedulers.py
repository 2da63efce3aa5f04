"""Lab 3, schedulers and persistence: wrr weights, source hashing, quiescing.

Starting state: the DR layout with its default services (rr, weight 1, on tcp 80 and udp 7).
The student sets wrr 3:2:1 on tcp 80, quiesces rs3 on udp 7 (weight 0) and watches its flow
go on, then moves udp 7 to source hashing (sh, or mh) and sees one client stick to one real
server whatever its source port.
"""

from __future__ import annotations

import random
from collections import Counter

from testbed.labs import actions
from testbed.labs.model import CheckResult, Lab, LabContext
from testbed.labs.parse import ServiceKey, ServiceRule, weighted_split
from testbed.topo.plan import LayoutParams, Plan

WRR_WEIGHTS = {"rs1": 3, "rs2": 2, "rs3": 1}
WRR_REQUESTS = 60
MAX_FAILED_REQUESTS = 3
QUIESCED = "rs3"
HASH_SCHEDULERS = ("sh", "mh")
PROBE_PORTS_PER_CLIENT = 5
PROBE_PORT_RANGE = (42000, 60000)  # above the ports the handout uses, below nothing special


def prepare(ctx: LabContext) -> None:
    hosts, plan = ctx.need_layout()
    actions.restore_default_services(hosts, plan)


def solve(ctx: LabContext) -> None:
    hosts, plan = ctx.need_layout()
    ip = {rs.name: rs.ip for rs in plan.realservers}
    actions.ipvsadm_ok(hosts, f"-E -t {plan.vip}:80 -s wrr")
    for name, weight in WRR_WEIGHTS.items():
        actions.ipvsadm_ok(hosts, f"-e -t {plan.vip}:80 -r {ip[name]}:80 -g -w {weight}")
    actions.ipvsadm_ok(hosts, f"-e -u {plan.vip}:7 -r {ip[QUIESCED]}:7 -g -w 0")
    actions.ipvsadm_ok(hosts, f"-E -u {plan.vip}:7 -s sh")


def check(ctx: LabContext) -> list[CheckResult]:
    hosts, plan = ctx.need_layout()
    rules = actions.rules(hosts)
    results = [_check_wrr_config(plan, rules), _check_wrr_split(ctx)]
    results += _check_udp(ctx, rules)
    return results


def _ip_names(plan: Plan) -> dict[str, str]:
    return {rs.ip: rs.name for rs in plan.realservers}


def _check_wrr_config(plan: Plan, rules: dict[ServiceKey, ServiceRule]) -> CheckResult:
    name = "tcp 80: wrr with weights rs1 3, rs2 2, rs3 1, no persistence"
    svc = rules.get(("tcp", f"{plan.vip}:80"))
    if svc is None:
        return CheckResult(
            name, False, "no service TCP VIP:80", "`lab reset 3` puts the default services back"
        )
    weights = {
        _ip_names(plan).get(rip.split(":")[0], rip): d.weight for rip, d in svc.dests.items()
    }
    problems = []
    if svc.scheduler != "wrr":
        problems.append(f"scheduler {svc.scheduler}")
    if svc.persistent_s is not None:
        problems.append(f"persistent {svc.persistent_s} s")
    if weights != WRR_WEIGHTS:
        problems.append("weights " + ", ".join(f"{k} {v}" for k, v in sorted(weights.items())))
    return CheckResult(
        name,
        not problems,
        "; ".join(problems) or "as asked",
        f"ipvsadm -E -t {plan.vip}:80 -s wrr (no -p), then -e -t {plan.vip}:80 -r RIP:80 -g -w W "
        "for each real server",
    )


def _check_wrr_split(ctx: LabContext) -> CheckResult:
    hosts, plan = ctx.need_layout()
    names = actions.http_names(hosts, "c1", plan.vip, WRR_REQUESTS)
    counts = Counter(n for n in names if n)
    failed = names.count("")
    shares = weighted_split(counts, WRR_WEIGHTS, WRR_REQUESTS - failed)
    ok = failed <= MAX_FAILED_REQUESTS and all(s.ok for s in shares)
    detail = ", ".join(f"{s.name} {s.got} (expected {s.expected:.0f})" for s in shares)
    return CheckResult(
        f"{WRR_REQUESTS} requests split about 30/20/10",
        ok,
        detail + (f"; {failed} failed" if failed else ""),
        "each share may be off by 20 % (3 requests at least); persistence, another scheduler "
        "or other weights move them further",
    )


def _check_udp(ctx: LabContext, rules: dict[ServiceKey, ServiceRule]) -> list[CheckResult]:
    hosts, plan = ctx.need_layout()
    ip_names = _ip_names(plan)
    svc = rules.get(("udp", f"{plan.vip}:7"))
    if svc is None:
        return [
            CheckResult(
                "udp 7: a hashing scheduler, rs3 quiesced",
                False,
                "no service UDP VIP:7",
                "`lab reset 3` puts the default services back",
            )
        ]
    weights = {ip_names.get(rip.split(":")[0], rip): d.weight for rip, d in svc.dests.items()}
    others_up = all(w > 0 for n, w in weights.items() if n != QUIESCED)
    results = [
        CheckResult(
            "udp 7: source hashing (sh or mh)",
            svc.scheduler in HASH_SCHEDULERS,
            f"scheduler {svc.scheduler}",
            f"ipvsadm -E -u {plan.vip}:7 -s sh",
        ),
        CheckResult(
            "udp 7: rs3 quiesced (weight 0), the others serving",
            weights.get(QUIESCED) == 0 and others_up,
            ", ".join(f"{k} weight {v}" for k, v in sorted(weights.items())),
            f"ipvsadm -e -u {plan.vip}:7 -r {plan.node(QUIESCED).ip}:7 -g -w 0 (quiesce; -d would "
            "delete it and cut its flows)",
        ),
    ]
    # New flows from fresh source ports: where the scheduler sends each.
    existing = {c.source for c in actions.connections(hosts)}
    rng = random.Random()
    landed: dict[str, set[str]] = {}
    answered: dict[str, int] = {}
    for client in ("c1", "c2"):
        cip = plan.node(client).ip
        ports = []
        while len(ports) < PROBE_PORTS_PER_CLIENT:
            port = rng.randrange(*PROBE_PORT_RANGE)
            if f"{cip}:{port}" not in existing and port not in ports:
                ports.append(port)
        echoed = actions.udp_probe(hosts, client, plan.vip, 7, ports)
        answered[client] = sum(echoed.values())
        sources = {f"{cip}:{p}" for p in ports}
        landed[client] = {
            ip_names.get(c.destination.split(":")[0], c.destination)
            for c in actions.connections(hosts)
            if c.proto == "udp" and c.source in sources and c.virtual == f"{plan.vip}:7"
        }
    sticky = [c for c in landed if len(landed[c]) == 1 and answered[c] > 0]
    spread = [c for c in landed if len(landed[c]) > 1]
    where = "; ".join(
        f"{c}: {answered[c]} of {PROBE_PORTS_PER_CLIENT} echoed, on "
        f"{', '.join(sorted(landed[c])) or 'none'}"
        for c in landed
    )
    results.append(
        CheckResult(
            "udp 7: each client's new flows stick to one real server",
            bool(sticky) and not spread,
            where,
            "with sh (or mh) the client address alone picks the real server; rr spreads a "
            "client's flows",
        )
    )
    to_quiesced = [c for c in landed if QUIESCED in landed[c]]
    results.append(
        CheckResult(
            "udp 7: no new flow goes to the quiesced rs3",
            not to_quiesced,
            f"new flows reached rs3 from {', '.join(to_quiesced)}" if to_quiesced else "none did",
            "weight 0 keeps a real server's existing flows and gives it no new ones",
        )
    )
    return results


LAB = Lab(
    number=3,
    slug="schedulers",
    title="Schedulers and persistence",
    summary="wrr 3:2:1 on tcp 80, quiesce rs3 and source hashing on udp 7, persistence",
    layout="dr",
    params=LayoutParams(n_rs=3, n_clients=2),
    prepare=prepare,
    solve=solve,
    check=check,
)
