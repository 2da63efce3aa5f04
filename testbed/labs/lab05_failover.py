"""Lab 5, high availability: the NAT pair's VRRP, takeovers by crash and by clean stop, and a
split brain made with one nftables rule and healed.

Starting state: the NAT layout as `up nat` builds it (our keepalived-compatible VRRP daemons,
d1 MASTER, d2 BACKUP) with no rule blocking VRRP. The check reads the daemons' status over
their control sockets and the directors' addresses and rulesets; judging the status is pure.
"""

from __future__ import annotations

from testbed.labs import actions
from testbed.labs.model import CheckResult, Lab, LabContext, LabError
from testbed.labs.parse import inet_addresses, vrrp_blocking_rules
from testbed.net.failover import vrrp_status
from testbed.net.hosts import HostAccess
from testbed.topo.plan import LayoutParams, Plan

SPLIT_TABLE = "splitbrain"
"""The table the handout (and the reference solution) adds on d2 to drop VRRP."""
TAKEOVER_WAIT_S = 10.0  # Master_Down_Interval is 3.61 s with 1 s adverts; room for a busy host


# -- judging status (pure) -------------------------------------------------------------------------
def is_master(status: dict | None) -> bool:
    """Every instance of the daemon is MASTER."""
    instances = (status or {}).get("instances", [])
    return bool(instances) and all(i.get("state") == "MASTER" for i in instances)


def transitions_seen(status: dict | None) -> set[tuple[str, str]]:
    """(previous, state) pairs of every instance's recorded transitions."""
    return {
        (t["previous"], t["state"])
        for i in (status or {}).get("instances", [])
        for t in i.get("transitions", [])
    }


def failed_over_and_back(status: dict | None) -> bool:
    seen = transitions_seen(status)
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


def prepare(ctx: LabContext) -> None:
    """Heal what the lab breaks: VRRP-blocking rules removed, links up. Daemons a `failover
    kill` or `shutdown` stopped are restarted by `restore` in the lab's CLI, not here."""
    hosts, plan = ctx.need_layout()
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


def check(ctx: LabContext) -> list[CheckResult]:
    hosts, plan = ctx.need_layout()
    status = {d.name: vrrp_status(hosts.run_dir, d.name) for d in plan.directors}
    down = [n for n, s in status.items() if s is None]
    results = [
        CheckResult(
            "both directors' VRRP daemons run",
            not down,
            "; ".join(f"{n}: {states(s)}" for n, s in status.items()),
            "type `restore` in the lab's CLI after a failover kill or shutdown",
        )
    ]

    masters = [n for n, s in status.items() if is_master(s)]
    holders = {n: _vips_held(hosts, plan, n) for n in status}
    both = {plan.vip, plan.inner_vip}
    one_master = (
        len(masters) == 1
        and holders[masters[0]] == both
        and not any(holders[n] for n in status if n != masters[0])
    )
    results.append(
        CheckResult(
            "exactly one master, holding both VIPs",
            one_master,
            f"masters: {', '.join(masters) or 'none'}; VIPs held: "
            + "; ".join(f"{n} {', '.join(sorted(v)) or 'none'}" for n, v in holders.items()),
            "two masters is a split brain: remove the rule that blocks VRRP (IP protocol 112)",
        )
    )

    backups = [n for n in status if n not in masters]
    backup = backups[0] if len(backups) == 1 else None
    seen = transitions_seen(status.get(backup)) if backup else set()
    results.append(
        CheckResult(
            "the backup failed over and back",
            backup is not None and failed_over_and_back(status.get(backup)),
            f"{backup}'s transitions: "
            + (", ".join(f"{a}->{b}" for a, b in sorted(seen)) or "none")
            if backup
            else "no single backup",
            "fail the master (failover kill), then `restore` it: the backup must go BACKUP->MASTER "
            "and MASTER->BACKUP",
        )
    )

    blocking = {n: r for n, r in _blocking_rules(hosts, plan).items() if r}
    results.append(
        CheckResult(
            "no nftables rule blocks VRRP on the directors",
            not blocking,
            "; ".join(
                f"{n}: {', '.join(f'{x.table}/{x.chain}: {x.text}' for x in r)}"
                for n, r in blocking.items()
            )
            or "none",
            f"heal the split brain: d2 nft delete table inet {SPLIT_TABLE}",
        )
    )
    return results


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
)
