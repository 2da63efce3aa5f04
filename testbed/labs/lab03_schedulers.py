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
from testbed.labs.model import CheckResult, Checks, Lab, LabContext
from testbed.labs.parse import ServiceKey, ServiceRule, weighted_split
from testbed.topo.plan import LayoutParams, Plan

WRR_WEIGHTS = {"rs1": 3, "rs2": 2, "rs3": 1}
WRR_REQUESTS = 60
MAX_FAILED_REQUESTS = 3
QUIESCED = "rs3"
HASH_SCHEDULERS = ("sh", "mh")
PROBE_PORTS_PER_CLIENT = 5
PROBE_PORT_RANGE = (42000, 60000)  # above the ports the handout uses, below nothing special
WRR_CHECK = "tcp 80: wrr with weights rs1 3, rs2 2, rs3 1, no persistence"
SPLIT_CHECK = f"{WRR_REQUESTS} requests split about 30/20/10"
HASH_CHECK = "udp 7: source hashing (sh or mh)"
QUIESCE_CHECK = "udp 7: rs3 quiesced (weight 0), the others serving"
STICKY_CHECK = "udp 7: each client's new flows stick to one real server"
NOT_QUIESCED_CHECK = "udp 7: no new flow goes to the quiesced rs3"


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
    checks = Checks()
    wrr = checks.add(_check_wrr_config(plan, rules))
    checks.after([wrr], SPLIT_CHECK, lambda: _check_wrr_split(ctx))
    udp = rules.get(("udp", f"{plan.vip}:7"))
    hashing = checks.add(_check_hash_config(plan, udp))
    quiesced = checks.add(_check_quiesce_config(plan, udp))
    flows = _UdpFlows(ctx)
    checks.after([hashing], STICKY_CHECK, flows.sticky)
    checks.after([quiesced], NOT_QUIESCED_CHECK, flows.not_quiesced)
    return checks.results


def figures(ctx: LabContext) -> dict[str, str]:
    """The services as configured and their counters (questions 1, 3 and 4)."""
    hosts, _plan = ctx.need_layout()
    return {
        "d1 ipvsadm -L -n": actions.ipvsadm_ok(hosts, "-L -n"),
        "d1 ipvsadm -L -n --stats --exact": actions.ipvsadm_ok(hosts, "-L -n --stats --exact"),
    }


def _ip_names(plan: Plan) -> dict[str, str]:
    return {rs.ip: rs.name for rs in plan.realservers}


def _check_wrr_config(plan: Plan, rules: dict[ServiceKey, ServiceRule]) -> CheckResult:
    svc = rules.get(("tcp", f"{plan.vip}:80"))
    if svc is None:
        return CheckResult(
            WRR_CHECK,
            False,
            "no service TCP VIP:80",
            "`lab reset 3` puts the default services back",
        )
    ip = {rs.name: rs.ip for rs in plan.realservers}
    weights = {
        _ip_names(plan).get(rip.split(":")[0], rip): d.weight for rip, d in svc.dests.items()
    }
    problems, fixes = [], []
    if svc.persistent_s is not None:
        problems.append(f"persistent {svc.persistent_s} s")
        fixes.append(
            f"persistence (-p) is still on from step 3: `d1 ipvsadm -E -t {plan.vip}:80 -s wrr` "
            "(without -p) turns it off"
        )
    if svc.scheduler != "wrr":
        problems.append(f"scheduler {svc.scheduler}")
        if svc.persistent_s is None:
            fixes.append(f"`d1 ipvsadm -E -t {plan.vip}:80 -s wrr`")
    if weights != WRR_WEIGHTS:
        problems.append("weights " + ", ".join(f"{k} {v}" for k, v in sorted(weights.items())))
        fixes += [
            f"`d1 ipvsadm -e -t {plan.vip}:80 -r {ip[name]}:80 -g -w {weight}`"
            for name, weight in WRR_WEIGHTS.items()
            if weights.get(name) != weight
        ]
    return CheckResult(WRR_CHECK, not problems, "; ".join(problems) or "as asked", "; ".join(fixes))


def _check_wrr_split(ctx: LabContext) -> CheckResult:
    hosts, plan = ctx.need_layout()
    names = actions.http_names(hosts, "c1", plan.vip, WRR_REQUESTS)
    counts = Counter(n for n in names if n)
    failed = names.count("")
    shares = weighted_split(counts, WRR_WEIGHTS, WRR_REQUESTS - failed)
    ok = failed <= MAX_FAILED_REQUESTS and all(s.ok for s in shares)
    detail = ", ".join(f"{s.name} {s.got} (expected {s.expected:.0f})" for s in shares)
    return CheckResult(
        SPLIT_CHECK,
        ok,
        detail + (f"; {failed} failed" if failed else ""),
        f"{failed} requests failed: is every real server's HTTP server up (`rsN ss -ltn`)?"
        if failed > MAX_FAILED_REQUESTS
        else "each share may be off by 20 % (3 requests at least); did another client send "
        "requests during the check? Run it again",
    )


def _udp_weights(plan: Plan, svc: ServiceRule) -> dict[str, int]:
    ip_names = _ip_names(plan)
    return {ip_names.get(rip.split(":")[0], rip): d.weight for rip, d in svc.dests.items()}


def _check_hash_config(plan: Plan, svc: ServiceRule | None) -> CheckResult:
    if svc is None:
        return CheckResult(
            HASH_CHECK,
            False,
            "no service UDP VIP:7",
            "`lab reset 3` puts the default services back",
        )
    return CheckResult(
        HASH_CHECK,
        svc.scheduler in HASH_SCHEDULERS,
        f"scheduler {svc.scheduler}",
        f"`d1 ipvsadm -E -u {plan.vip}:7 -s sh` (step 7)",
    )


def _check_quiesce_config(plan: Plan, svc: ServiceRule | None) -> CheckResult:
    if svc is None:
        return CheckResult(
            QUIESCE_CHECK,
            False,
            "no service UDP VIP:7",
            "`lab reset 3` puts the default services back",
        )
    weights = _udp_weights(plan, svc)
    fixes = []
    rs3 = f"{plan.node(QUIESCED).ip}:7"
    if QUIESCED not in weights:
        fixes.append(
            f"`d1 ipvsadm -a -u {plan.vip}:7 -r {rs3} -g -w 0` (rs3 was deleted, which cut its "
            "flows; quiescing is weight 0)"
        )
    elif weights[QUIESCED] != 0:
        fixes.append(
            f"`d1 ipvsadm -e -u {plan.vip}:7 -r {rs3} -g -w 0` (quiesce; -d would delete it "
            "and cut its flows)"
        )
    fixes += [
        f"`d1 ipvsadm -e -u {plan.vip}:7 -r {plan.node(n).ip}:7 -g -w 1`"
        for n, w in sorted(weights.items())
        if n != QUIESCED and w <= 0
    ]
    return CheckResult(
        QUIESCE_CHECK,
        not fixes,
        ", ".join(f"{k} weight {v}" for k, v in sorted(weights.items())),
        "; ".join(fixes),
    )


class _UdpFlows:
    """New flows from fresh source ports of each client, sent once for both judgements:
    which were echoed and where the scheduler sent each."""

    def __init__(self, ctx: LabContext) -> None:
        self.ctx = ctx
        self.landed: dict[str, set[str]] = {}
        self.answered: dict[str, int] = {}

    def _probe(self) -> None:
        if self.landed:
            return
        hosts, plan = self.ctx.need_layout()
        ip_names = _ip_names(plan)
        existing = {c.source for c in actions.connections(hosts)}
        rng = random.Random()
        for client in ("c1", "c2"):
            cip = plan.node(client).ip
            ports: list[int] = []
            while len(ports) < PROBE_PORTS_PER_CLIENT:
                port = rng.randrange(*PROBE_PORT_RANGE)
                if f"{cip}:{port}" not in existing and port not in ports:
                    ports.append(port)
            echoed = actions.udp_probe(hosts, client, plan.vip, 7, ports)
            self.answered[client] = sum(echoed.values())
            sources = {f"{cip}:{p}" for p in ports}
            self.landed[client] = {
                ip_names.get(c.destination.split(":")[0], c.destination)
                for c in actions.connections(hosts)
                if c.proto == "udp" and c.source in sources and c.virtual == f"{plan.vip}:7"
            }

    def sticky(self) -> CheckResult:
        self._probe()
        landed, answered = self.landed, self.answered
        sticky = [c for c in landed if len(landed[c]) == 1 and answered[c] > 0]
        spread = [c for c in landed if len(landed[c]) > 1]
        where = "; ".join(
            f"{c}: {answered[c]} of {PROBE_PORTS_PER_CLIENT} echoed, on "
            f"{', '.join(sorted(landed[c])) or 'none'}"
            for c in landed
        )
        return CheckResult(
            STICKY_CHECK,
            bool(sticky) and not spread,
            where,
            f"{', '.join(spread)}'s flows went to several real servers although the scheduler "
            "hashes: did the real servers' weights change during the check?"
            if spread
            else "no client was answered: are rs1 and rs2 serving UDP 7 (`rs1 ss -lun`)?",
        )

    def not_quiesced(self) -> CheckResult:
        self._probe()
        to_quiesced = [c for c in self.landed if QUIESCED in self.landed[c]]
        return CheckResult(
            NOT_QUIESCED_CHECK,
            not to_quiesced,
            f"new flows reached rs3 from {', '.join(to_quiesced)}" if to_quiesced else "none did",
            "weight 0 keeps a real server's existing flows and gives it no new ones",
        )


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
    minutes="45",
    prerequisites="lab 1 (LVS-DR by hand)",
    outcomes=(
        "choose a scheduler and weights (rr, wrr, sh, mh) and predict the split",
        "explain persistence templates and when persistence is needed",
        "quiesce a real server (weight 0) without breaking its connections",
    ),
    figures=figures,
)
