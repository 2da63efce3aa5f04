"""Pure helpers the lab checks use: reading command output and judging figures with tolerance.

For: ``ipvsadm -S -n`` (the configuration, in the form ipvsadm saves and restores it),
``ipvsadm -L -n --stats --exact`` (counters), ``ipvsadm -L -n -c`` (connection entries),
``ip route`` / ``ip addr`` / ``ip neigh``, ``arping``, ``nft -a list ruleset`` and
``ovs-ofctl dump-flows`` text, the effective value of a per-interface ARP sysctl, and a
tolerance rule for weighted splits. Everything here takes text or numbers and returns data,
so it is unit-tested without a layout.

Not for: running the commands (`testbed.labs.actions`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from testbed.controllers.flows import FLOW_ID_MASK, LB_OWNER, OWNER_MASK

FORWARD_NAMES = {"-g": "Route", "-m": "Masq", "-i": "Tunnel"}
"""ipvsadm's forwarding options and the names its listing gives them."""
PROTO_OPTIONS = {"-t": "tcp", "-u": "udp", "-f": "fwm"}

ServiceKey = tuple[str, str]  # ("tcp", "10.0.0.100:80")


# -- ipvsadm -------------------------------------------------------------------------------------
@dataclass
class DestRule:
    """A real server of a service, as ``ipvsadm -S`` gives it."""

    forward: str  # Route, Masq or Tunnel
    weight: int


@dataclass
class ServiceRule:
    """A virtual service, as ``ipvsadm -S`` gives it, with its real servers by RIP:port."""

    scheduler: str
    persistent_s: int | None = None
    sched_flags: str = ""
    dests: dict[str, DestRule] = field(default_factory=dict)


def _options(tokens: list[str]) -> dict[str, str]:
    """``-x value`` pairs and bare flags (value "") of one saved rule line."""
    opts: dict[str, str] = {}
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if i + 1 < len(tokens) and not tokens[i + 1].startswith("-"):
            opts[tok] = tokens[i + 1]
            i += 2
        else:
            opts[tok] = ""
            i += 1
    return opts


def _service_key(opts: dict[str, str]) -> ServiceKey:
    for option, proto in PROTO_OPTIONS.items():
        if option in opts:
            return proto, opts[option]
    raise ValueError(f"no -t, -u or -f in {opts}")


def parse_rules(saved: str) -> dict[ServiceKey, ServiceRule]:
    """The services of ``ipvsadm -S -n`` output, keyed by (protocol, VIP:port)."""
    services: dict[ServiceKey, ServiceRule] = {}
    for line in saved.splitlines():
        tokens = line.split()
        if not tokens or tokens[0] not in ("-A", "-a"):
            continue
        opts = _options(tokens[1:])
        key = _service_key(opts)
        if tokens[0] == "-A":
            persistent = opts.get("-p")
            services[key] = ServiceRule(
                scheduler=opts.get("-s", "wlc"),
                persistent_s=int(persistent) if persistent else (300 if "-p" in opts else None),
                sched_flags=opts.get("-b", ""),
            )
        else:
            forward = next((name for flag, name in FORWARD_NAMES.items() if flag in opts), "Route")
            rule = services.setdefault(key, ServiceRule(scheduler="?"))
            rule.dests[opts["-r"]] = DestRule(forward, int(opts.get("-w", "1")))
    return services


@dataclass(frozen=True)
class Counters:
    conns: int
    in_pkts: int
    out_pkts: int
    in_bytes: int
    out_bytes: int


@dataclass
class ServiceStats:
    total: Counters
    dests: dict[str, Counters] = field(default_factory=dict)


_STATS_SERVICE = re.compile(r"^(TCP|UDP|FWM)\s+(\S+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*$")
_STATS_DEST = re.compile(r"^\s+->\s+(\S+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*$")


def parse_stats(text: str) -> dict[ServiceKey, ServiceStats]:
    """The counters of ``ipvsadm -L -n --stats --exact`` (exact: no K/M/G scaling)."""
    out: dict[ServiceKey, ServiceStats] = {}
    current: ServiceStats | None = None
    for line in text.splitlines():
        m = _STATS_SERVICE.match(line)
        if m:
            current = ServiceStats(Counters(*map(int, m.groups()[2:])))
            out[(m.group(1).lower(), m.group(2))] = current
            continue
        m = _STATS_DEST.match(line)
        if m and current is not None:
            current.dests[m.group(1)] = Counters(*map(int, m.groups()[1:]))
    return out


@dataclass(frozen=True)
class ConnEntry:
    """One line of ``ipvsadm -L -n -c``."""

    proto: str
    expire: str
    state: str
    source: str
    virtual: str
    destination: str


def parse_connections(text: str) -> list[ConnEntry]:
    entries = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 6 and fields[0] in ("TCP", "UDP"):
            entries.append(ConnEntry(fields[0].lower(), *fields[1:6]))
    return entries


# -- ip, arping, sysctl ---------------------------------------------------------------------------
def default_gateway(route_text: str) -> str | None:
    """The gateway of the default route in ``ip route show`` output (None: no default route,
    or one without a gateway)."""
    for line in route_text.splitlines():
        fields = line.split()
        if fields[:1] == ["default"] and "via" in fields:
            return fields[fields.index("via") + 1]
    return None


def inet_addresses(addr_text: str) -> set[str]:
    """Every ``inet ADDR/PREFIX`` in ``ip -4 addr show`` output."""
    return set(re.findall(r"\binet (\d+\.\d+\.\d+\.\d+/\d+)", addr_text))


def effective_arp_setting(all_value: int, intf_value: int) -> int:
    """The kernel applies the larger of ``conf.all.X`` and ``conf.<intf>.X`` for arp_ignore
    and arp_announce (IN_DEV_MAXCONF), so either may carry the setting."""
    return max(all_value, intf_value)


def arping_macs(text: str) -> set[str]:
    """The MAC addresses that answered, from iputils ``arping`` output (lower case)."""
    return {m.lower() for m in re.findall(r"reply from \S+ \[([0-9A-Fa-f:]{17})\]", text)}


def neigh_mac(text: str) -> str | None:
    """The link-layer address of the first entry in ``ip neigh show ADDR`` output."""
    m = re.search(r"\blladdr ([0-9A-Fa-f:]{17})", text)
    return m.group(1).lower() if m else None


REQUEST_MARK = "REQ"


def request_names(text: str) -> list[str]:
    """The real server named by each ``REQ name`` line ('' where the request failed)."""
    names = []
    for line in text.splitlines():
        fields = line.split()
        if fields[:1] == [REQUEST_MARK]:
            names.append(fields[1] if len(fields) > 1 else "")
    return names


# -- judging figures -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Share:
    name: str
    expected: float
    got: int
    ok: bool


def weighted_split(
    counts: dict[str, int],
    weights: dict[str, int],
    total: int,
    rel_tol: float = 0.2,
    abs_tol: int = 3,
) -> list[Share]:
    """How ``total`` requests should have split by ``weights`` against ``counts``: a share is
    ok within ``rel_tol`` of its expectation or ``abs_tol`` requests, whichever is larger
    (a few requests of the student's own, or a retry, must not fail the check)."""
    weight_sum = sum(weights.values())
    if weight_sum <= 0:
        raise ValueError("no positive weight to split by")
    shares = []
    for name, weight in sorted(weights.items()):
        expected = total * weight / weight_sum
        got = counts.get(name, 0)
        shares.append(
            Share(name, expected, got, abs(got - expected) <= max(abs_tol, rel_tol * expected))
        )
    return shares


def ratio_within(value: float, reference: float, low: float, high: float) -> bool:
    """Whether value / reference lies in [low, high] (False when the reference is not positive)."""
    return reference > 0 and low <= value / reference <= high


# -- nftables, OpenFlow ----------------------------------------------------------------------------
@dataclass(frozen=True)
class NftRule:
    family: str
    table: str
    chain: str
    handle: int | None
    text: str


# "ip protocol vrrp", "meta l4proto 112", "ip protocol { tcp, vrrp }"...
_VRRP_MATCH = re.compile(
    r"\b(?:ip protocol|meta l4proto)\s+(?:\{[^}]*\b(?:vrrp|112)\b[^}]*\}|(?:vrrp|112)\b)"
)


def vrrp_blocking_rules(ruleset: str) -> list[NftRule]:
    """Rules of ``nft -a list ruleset`` that drop or reject VRRP (IP protocol 112)."""
    found = []
    family = table = chain = ""
    for raw in ruleset.splitlines():
        line = raw.strip()
        m = re.match(r"table (\S+) (\S+) \{", line)
        if m:
            family, table = m.groups()
            continue
        m = re.match(r"chain (\S+) \{", line)
        if m:
            chain = m.group(1)
            continue
        if _VRRP_MATCH.search(line) and re.search(r"\b(drop|reject)\b", line):
            h = re.search(r"# handle (\d+)", line)
            found.append(
                NftRule(
                    family, table, chain, int(h.group(1)) if h else None, line.split(" # handle")[0]
                )
            )
    return found


def lb_connection_flows(dump_flows: str) -> int:
    """How many flows in ``ovs-ofctl dump-flows`` output are the OpenFlow director's
    per-connection flows (its cookie owner with a non-zero flow id)."""
    count = 0
    for m in re.finditer(r"cookie=0x([0-9a-fA-F]+)", dump_flows):
        value = int(m.group(1), 16)
        if value & OWNER_MASK == LB_OWNER and value & FLOW_ID_MASK:
            count += 1
    return count
