"""Lab 5, high availability: the NAT pair's VRRP, takeovers by crash and by clean stop, and a
split brain made with one nftables rule and healed.

Starting state: the NAT layout as `up nat` builds it (our keepalived-compatible VRRP daemons,
d1 MASTER, d2 BACKUP) with no rule blocking VRRP. The check reads the daemons' status over
their control sockets and the directors' addresses and rulesets; judging the status is pure.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from testbed.labs import actions
from testbed.labs.model import CheckResult, Checks, Lab, LabContext, LabError
from testbed.labs.parse import inet_addresses, vrrp_blocking_rules
from testbed.net.failover import recorded, vrrp_status
from testbed.net.hosts import HostAccess
from testbed.topo.plan import LayoutParams, Plan

RESET_FILE = "lab05.reset.json"  # in the run directory: when the lab was started or reset
SPLIT_TABLE = "splitbrain"
"""The table the handout (and the reference solution) adds on d2 to drop VRRP."""
TAKEOVER_WAIT_S = 10.0  # Master_Down_Interval is 3.61 s with 1 s adverts; room for a busy host


# -- judging status (pure) -------------------------------------------------------------------------
def is_master(status: dict | None) -> bool:
    """Every instance of the daemon is MASTER."""
    instances = (status or {}).get("instances", [])
    return bool(instances) and all(i.get("state") == "MASTER" for i in instances)


def transitions_seen(
    status: dict | None, since_wall_s: float | None = None
) -> set[tuple[str, str]]:
    """(previous, state) pairs of every instance's transitions (those recorded after
    ``since_wall_s`` when given: wall clock, as the daemons and the checker are different
    processes)."""
    return {
        (t["previous"], t["state"])
        for i in (status or {}).get("instances", [])
        for t in i.get("transitions", [])
        if since_wall_s is None or t.get("wall_s", 0.0) > since_wall_s
    }


def failed_over_and_back(status: dict | None, since_wall_s: float | None = None) -> bool:
    seen = transitions_seen(status, since_wall_s)
    return ("BACKUP", "MASTER") in seen and ("MASTER", "BACKUP") in seen


def states(status: dict | None) -> str:
    if status is None:
        return "not running"
    return (
        ", ".join(f"{i['name']} {i['state']}" for i in status.get("instances", []))
        or "no instances"
    )


# -- I/O -------------------------------------------------------------------------------------------
def _blocking_rules(hosts: HostAccess, plan: Plan) -> dict[str, list]:
    return {
        d.name: vrrp_blocking_rules(hosts.cmd(d.name, "nft -a list ruleset"))
        for d in plan.directors
    }


def _vips_held(hosts: HostAccess, plan: Plan, name: str) -> set[str]:
    held = {a.split("/")[0] for a in inet_addresses(hosts.cmd(name, "ip -4 -o addr show"))}
    return held & {plan.vip, plan.inner_vip}


def reset_mark(run_dir: Path) -> float | None:
    """When the lab was last started or reset (wall clock; None: never): the check counts
    transitions after it, so a reset also resets what the check reads of the daemons'
    history."""
    try:
        return float(json.loads((run_dir / RESET_FILE).read_text())["wall_s"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def prepare(ctx: LabContext) -> None:
    """Heal what the lab breaks: VRRP-blocking rules removed, links up, the daemons' history
    before now no longer counted. Daemons a `failover kill` or `shutdown` stopped are
    restarted by `restore` in the lab's CLI, not here."""
    hosts, plan = ctx.need_layout()
    (hosts.run_dir / RESET_FILE).write_text(json.dumps({"wall_s": time.time()}))
    for name, found in _blocking_rules(hosts, plan).items():
        for rule in found:
            if rule.handle is not None:
                hosts.cmd(
                    name,
                    f"nft delete rule {rule.family} {rule.table} {rule.chain} handle {rule.handle}",
                )
    for d in plan.directors:
        for intf in d.intfs:
            hosts.cmd(d.name, f"ip link set {intf.name} up")
    down = [d.name for d in plan.directors if vrrp_status(hosts.run_dir, d.name) is None]
    if down:
        raise LabError(
            f"the VRRP daemon of {', '.join(down)} is not running: type `restore` in "
            "the lab's CLI (or stop the lab and start it again)"
        )


def solve(ctx: LabContext) -> None:
    """Fail over and back by a split brain: d2 stops hearing adverts and takes over, then the
    rule goes and d2, hearing the higher priority again, steps back."""
    hosts, plan = ctx.need_layout()
    hosts.cmd("d2", f"nft add table inet {SPLIT_TABLE}")
    hosts.cmd(
        "d2", f"nft add chain inet {SPLIT_TABLE} input '{{ type filter hook input priority 0 ; }}'"
    )
    hosts.cmd("d2", f"nft add rule inet {SPLIT_TABLE} input ip protocol vrrp drop")
    if not actions.wait_until(lambda: is_master(vrrp_status(hosts.run_dir, "d2")), TAKEOVER_WAIT_S):
        raise LabError("d2 did not become master with VRRP blocked")
    hosts.cmd("d2", f"nft delete table inet {SPLIT_TABLE}")
    if not actions.wait_until(
        lambda: (
            not is_master(vrrp_status(hosts.run_dir, "d2"))
            and is_master(vrrp_status(hosts.run_dir, "d1"))
            and not _vips_held(hosts, plan, "d2")
        ),
        TAKEOVER_WAIT_S,
    ):
        raise LabError("d2 did not step back after the split brain healed")


DAEMONS_CHECK = "both directors' VRRP daemons run"
RULES_CHECK = "no nftables rule blocks VRRP on the directors"
MASTER_CHECK = "exactly one master, holding both VIPs"
HISTORY_CHECK = "the backup failed over and back since the lab started (or was reset)"


def check(ctx: LabContext) -> list[CheckResult]:
    hosts, plan = ctx.need_layout()
    status = {d.name: vrrp_status(hosts.run_dir, d.name) for d in plan.directors}
    blocking = {n: r for n, r in _blocking_rules(hosts, plan).items() if r}
    checks = Checks()
    daemons = checks.add(_check_daemons(status))
    rules = checks.add(_check_rules(blocking))
    master = checks.after(
        [daemons, rules], MASTER_CHECK, lambda: _check_master(hosts, plan, status)
    )
    checks.after([master], HISTORY_CHECK, lambda: _check_history(status, reset_mark(hosts.run_dir)))
    return checks.results


def figures(ctx: LabContext) -> dict[str, str]:
    """The takeovers measured in this run (questions 1 and 2) and each daemon's transitions."""
    hosts, plan = ctx.need_layout()
    runs = recorded(hosts.run_dir)
    out = {
        "failovers measured in this run": "\n".join(
            f"{r['how']}: {r['backup']} took over in "
            + ("-" if r["takeover_s"] is None else f"{r['takeover_s']:.3f} s")
            + f" (RFC bound {r['rfc_bound_s']:.3f} s), probe outage {r['outage_ms']:.0f} ms, "
            f"{r['probe_lost']} of {r['probe_sent']} requests lost"
            for r in runs
        )
        or "none"
    }
    for d in plan.directors:
        st = vrrp_status(hosts.run_dir, d.name)
        out[f"{d.name} VRRP transitions"] = (
            "daemon not running"
            if st is None
            else "\n".join(
                f"{i['name']}: {t['previous']}->{t['state']} at "
                + time.strftime("%H:%M:%S", time.localtime(t["wall_s"]))
                for i in st.get("instances", [])
                for t in i.get("transitions", [])
            )
        )
    return out


def _check_daemons(status: dict[str, dict | None]) -> CheckResult:
    down = [n for n, s in status.items() if s is None]
    return CheckResult(
        DAEMONS_CHECK,
        not down,
        "; ".join(f"{n}: {states(s)}" for n, s in status.items()),
        f"{' and '.join(down)}'s VRRP daemon is stopped, as a failover by kill or shutdown "
        "leaves it: type `restore` in the lab's CLI (it waits for the takeover)",
    )


def _check_rules(blocking: dict[str, list]) -> CheckResult:
    return CheckResult(
        RULES_CHECK,
        not blocking,
        "; ".join(
            f"{n}: {', '.join(f'{x.table}/{x.chain}: {x.text}' for x in r)}"
            for n, r in blocking.items()
        )
        or "none",
        "; ".join(
            f"`{n} nft delete rule {x.family} {x.table} {x.chain} handle {x.handle}`"
            for n, r in blocking.items()
            for x in r
        )
        + " (a rule that drops VRRP makes a split brain: the backup stops hearing the master)",
    )


def _check_master(hosts: HostAccess, plan: Plan, status: dict[str, dict | None]) -> CheckResult:
    masters = [n for n, s in status.items() if is_master(s)]
    holders = {n: _vips_held(hosts, plan, n) for n in status}
    both = {plan.vip, plan.inner_vip}
    strays = [n for n in status if n not in masters and holders[n]]
    one_master = len(masters) == 1 and holders[masters[0]] == both and not strays
    if len(masters) > 1:
        hint = (
            "both directors are master: they do not hear each other's adverts. Are their "
            "links up (`d1 ip link`, `d2 ip link`)? A split brain heals once adverts pass"
        )
    elif not masters:
        hint = "no director is master yet: after a `restore`, wait about 4 s and check again"
    elif strays:
        hint = (
            f"{', '.join(strays)} holds VIPs without being master: `lab reset 5` removes "
            "them, or `restore` after a failover"
        )
    else:
        hint = f"{masters[0]} is master but lacks a VIP: `lab reset 5`, then `restore`"
    return CheckResult(
        MASTER_CHECK,
        one_master,
        f"masters: {', '.join(masters) or 'none'}; VIPs held: "
        + "; ".join(f"{n} {', '.join(sorted(v)) or 'none'}" for n, v in holders.items()),
        hint,
    )


def _check_history(status: dict[str, dict | None], since_wall_s: float | None) -> CheckResult:
    masters = [n for n, s in status.items() if is_master(s)]
    backup = next(n for n in status if n not in masters)
    seen = transitions_seen(status.get(backup), since_wall_s)
    return CheckResult(
        HISTORY_CHECK,
        ("BACKUP", "MASTER") in seen and ("MASTER", "BACKUP") in seen,
        f"{backup}'s transitions since then: "
        + (", ".join(f"{a}->{b}" for a, b in sorted(seen)) or "none"),
        "fail the master (`failover kill`), then `restore` it: the backup must go "
        "BACKUP->MASTER and back MASTER->BACKUP",
    )


LAB = Lab(
    number=5,
    slug="failover",
    title="High availability: VRRP failover and split brain",
    summary="vrrp status, failover kill/shutdown and restore, takeover times, a split brain healed",
    layout="nat",
    params=LayoutParams(n_rs=3, n_clients=2),
    prepare=prepare,
    solve=solve,
    check=check,
    minutes="45",
    prerequisites="lab 2 (LVS-NAT and the two-NIC director), what multicast is",
    outcomes=(
        "read VRRP state and explain master election, priorities and preemption",
        "predict takeover times from RFC 3768's timers and measure them",
        "make a split brain with a firewall rule, recognise it and heal it",
    ),
    figures=figures,
)
