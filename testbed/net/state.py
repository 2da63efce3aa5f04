"""What a layout's hosts hold now, beside what the plan says they should: the CLI's ``state``.

``plan`` prints the design; a lab changes hosts on purpose (lab 1 removes the real servers'
VIPs, lab 2 their gateways) and failover moves VIPs, so the design is not the state.
`observe` reads each host (addresses, default gateway, ``ip_forward``, the effective ARP
sysctls) through `HostAccess`; `compare` is pure and turns plan and observation into rows,
each saying whether it matches the plan.

Not for: judging a lab (the labs' checks), or reachability (`Testbed.check_reachability`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from testbed.net.hosts import HostAccess
from testbed.topo.plan import NodePlan, Plan

LOOPBACK = "127.0.0.1/8"
ARP_DR = (1, 2)  # arp_ignore, arp_announce of a DR real server (the LVS-HOWTO's values)


@dataclass(frozen=True)
class NodeState:
    """What one host holds now."""

    addrs: dict[str, tuple[str, ...]]  # interface -> IPv4 CIDRs, loopback's own left out
    gateway: str | None
    ip_forward: int | None
    arp: tuple[int, int] | None  # effective arp_ignore, arp_announce of its first NIC


@dataclass(frozen=True)
class StateRow:
    node: str
    what: str
    planned: str
    now: str
    ok: bool


def parse_addrs(text: str) -> dict[str, tuple[str, ...]]:
    """Interface -> addresses from ``ip -4 -o addr show`` (127.0.0.1/8 left out)."""
    found: dict[str, list[str]] = {}
    for m in re.finditer(r"^\d+:\s+(\S+)\s+inet\s+(\S+)", text, re.MULTILINE):
        if m.group(2) != LOOPBACK:
            found.setdefault(m.group(1), []).append(m.group(2))
    return {k: tuple(v) for k, v in found.items()}


def parse_gateway(text: str) -> str | None:
    """The gateway of the default route in ``ip -4 route show default`` output."""
    m = re.search(r"^default\b.*?\bvia (\S+)", text, re.MULTILINE)
    return m.group(1) if m else None


def _int_or_none(text: str) -> int | None:
    try:
        return int(text.strip())
    except ValueError:
        return None


def observe(hosts: HostAccess, plan: Plan) -> dict[str, NodeState]:
    """Read every host of the plan (one shell command each)."""
    states = {}
    for node in plan.nodes:
        intf = node.intfs[0].name
        conf = "/proc/sys/net/ipv4/conf"
        out = hosts.cmd(
            node.name,
            "ip -4 -o addr show; echo @@; ip -4 route show default; echo @@; "
            "cat /proc/sys/net/ipv4/ip_forward; echo @@; "
            f"cat {conf}/all/arp_ignore {conf}/{intf}/arp_ignore "
            f"{conf}/all/arp_announce {conf}/{intf}/arp_announce",
        )
        parts = out.split("@@")
        parts += [""] * (4 - len(parts))
        arp_values = [_int_or_none(x) for x in parts[3].split()]
        arp = None
        if len(arp_values) == 4 and None not in arp_values:
            # The kernel applies the larger of conf.all and conf.<intf>.
            arp = (max(arp_values[0], arp_values[1]), max(arp_values[2], arp_values[3]))
        states[node.name] = NodeState(
            addrs=parse_addrs(parts[0]),
            gateway=parse_gateway(parts[1]),
            ip_forward=_int_or_none(parts[2]),
            arp=arp,
        )
    return states


def _vips_of(node: NodePlan) -> set[str]:
    return {a for a, _ in node.vips}


def _held_vips(node: NodePlan, state: NodeState) -> set[str]:
    held = {a for addrs in state.addrs.values() for a in addrs}
    return _vips_of(node) & held


def _planned_vip_holder(plan: Plan) -> str | None:
    """The director that holds the VIPs by design: d1 when no VRRP moves them (None: the
    VRRP master, whichever it is; or nobody, with the OpenFlow director in the switches)."""
    if plan.openflow or not plan.directors or plan.has_pair:
        return None
    return plan.directors[0].name


def _show(values) -> str:
    return ", ".join(sorted(values)) or "none"


def compare(plan: Plan, states: dict[str, NodeState]) -> list[StateRow]:
    """One row per thing the plan decides and the hosts may have changed."""
    rows: list[StateRow] = []
    holders = [d.name for d in plan.directors if d.name in states and _held_vips(d, states[d.name])]
    for node in plan.nodes:
        state = states.get(node.name)
        if state is None:
            rows.append(StateRow(node.name, "host", "running", "not reachable", False))
            continue
        for intf in node.intfs:
            have = set(state.addrs.get(intf.name, ())) - _vips_of(node)
            want = set(intf.addrs)
            rows.append(StateRow(node.name, intf.name, _show(want), _show(have), want <= have))
        if node.lo_vips:
            have = set(state.addrs.get("lo", ()))
            rows.append(
                StateRow(
                    node.name,
                    "VIP on lo",
                    _show(node.lo_vips),
                    _show(have),
                    set(node.lo_vips) <= have,
                )
            )
        if node.role == "director":
            rows.append(_vip_row(plan, node, state, holders))
        if node.gateway is not None or state.gateway is not None:
            rows.append(
                StateRow(
                    node.name,
                    "gateway",
                    node.gateway or "none",
                    state.gateway or "none",
                    node.gateway == state.gateway,
                )
            )
        if node.role in ("director", "firewall"):
            want = 1 if node.role == "firewall" else 0
            rows.append(
                StateRow(
                    node.name,
                    "ip_forward",
                    str(want),
                    str(state.ip_forward),
                    state.ip_forward == want,
                )
            )
        if node.lo_vips:
            now = (
                "unknown"
                if state.arp is None
                else (f"arp_ignore {state.arp[0]}, arp_announce {state.arp[1]}")
            )
            ok = state.arp is not None and state.arp[0] in (1, 2) and state.arp[1] == ARP_DR[1]
            rows.append(
                StateRow(
                    node.name, "ARP", f"arp_ignore {ARP_DR[0]}, arp_announce {ARP_DR[1]}", now, ok
                )
            )
    return rows


def _vip_row(plan: Plan, node: NodePlan, state: NodeState, holders: list[str]) -> StateRow:
    held = _held_vips(node, state)
    if plan.openflow:
        return StateRow(
            node.name, "VIPs", "none (the controller answers for the VIP)", _show(held), not held
        )
    holder = _planned_vip_holder(plan)
    if holder is None:  # VRRP: whichever is master holds all, the other none
        planned = "all, while VRRP master"
        ok = len(holders) == 1 and (held == _vips_of(node) or not held)
        return StateRow(node.name, "VIPs", planned, _show(held), ok)
    want = _vips_of(node) if node.name == holder else set()
    return StateRow(node.name, "VIPs", _show(want), _show(held), held == want)
