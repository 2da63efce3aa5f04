"""``virtual_routes``/``static_routes`` and ``virtual_rules``/``static_rules`` lines into
``ip route``/``ip rule`` arguments (keepalived's vrrp_iproute.c and vrrp_iprule.c).

keepalived's syntax is ip(8)'s with a few extra spellings, turned into ip's here:
``src A PREFIX`` (the preferred source may come first), ``gw`` for ``via``, ``oif`` for
``dev``, ``PREFIX via A or B`` (a deprecated multipath form: two ``nexthop``\\s),
``priority``/``preference`` for ``metric``, ``lookup`` for ``table``, ``order``/``priority``
for a rule's ``pref``, ``dev`` for a rule's ``iif``. ``no_track`` and ``track_group`` are
keepalived's own and not passed on. A rule without a preference gets one counting down from
16383, with keepalived's warning.

As keepalived does, a line with an invalid address or an unknown keyword is skipped with a
warning (the rest of the file still loads); IPv6 is refused (`ConfigError`) as everywhere in
this testbed.

Not for: carrying them out (the VRRP daemon runs ``ip route add|del``/``ip rule add|del``).
"""

from __future__ import annotations

from ipaddress import IPv4Address, ip_address

from testbed.keepalived_conf.lexer import Stmt, Tok, error_at
from testbed.keepalived_conf.reader import Reader
from testbed.keepalived_conf.vrrp_model import RULE_START_PRIORITY, Route, Rule

ROUTE_TYPES = frozenset(
    {"unicast", "local", "broadcast", "multicast", "throw", "unreachable", "prohibit"}
    | {"blackhole", "nat", "anycast"}
)
# keepalived keyword -> ip route keyword, for options with one value
_ROUTE_VALUED = {
    "src": "src",
    "via": "via",
    "gw": "via",
    "from": "from",
    "tos": "tos",
    "dsfield": "tos",
    "table": "table",
    "protocol": "protocol",
    "scope": "scope",
    "metric": "metric",
    "priority": "metric",
    "preference": "metric",
    "dev": "dev",
    "oif": "dev",
    "realms": "realms",
    "features": "features",
    "quickack": "quickack",
    "congctl": "congctl",
    "pref": "pref",
    "ttl-propagate": "ttl-propagate",
    "fastopen_no_cookie": "fastopen_no_cookie",
    "expires": "expires",
    "vrf": "vrf",
}
# metrics that may be preceded by "lock"
_ROUTE_METRICS = frozenset(
    {"mtu", "hoplimit", "advmss", "rtt", "rttvar", "reordering", "window", "cwnd", "ssthresh"}
    | {"rto_min", "initcwnd", "initrwnd"}
)
_ADDRESS_OPTIONS = frozenset({"src", "via", "gw", "or"})

_RULE_VALUED = {
    "table": "table",
    "lookup": "table",
    "preference": "pref",
    "order": "pref",
    "priority": "pref",
    "pref": "pref",
    "tos": "tos",
    "dsfield": "tos",
    "fwmark": "fwmark",
    "realms": "realms",
    "suppress_prefixlength": "suppress_prefixlength",
    "sup_pl": "suppress_prefixlength",
    "suppress_ifgroup": "suppress_ifgroup",
    "sup_group": "suppress_ifgroup",
    "dev": "iif",
    "iif": "iif",
    "oif": "oif",
    "tunnel-id": "tun_id",
    "uidrange": "uidrange",
    "protocol": "protocol",
    "ipproto": "ipproto",
    "sport": "sport",
    "dport": "dport",
    "goto": "goto",
}
RULE_TYPES = frozenset({"unicast", "blackhole", "unreachable", "prohibit", "nat"})
_RULE_FLAGS = frozenset({"not", "l3mdev", "nop"})


class _Skip(Exception):
    """This line is skipped with a warning (as keepalived skips it)."""


def _take(args: list[Tok], i: int, what: str) -> Tok:
    if i >= len(args):
        raise _Skip(f"'{what}' needs a value")
    return args[i]


def _address(tok: Tok, what: str) -> str:
    try:
        address = ip_address(tok.text)
    except ValueError:
        raise _Skip(f"invalid IP address {tok.text} for '{what}'") from None
    if not isinstance(address, IPv4Address):
        raise error_at(tok, f"'{what}': IPv6 is not supported by this testbed")
    return str(address)


def parse_route(r: Reader, stmt: Stmt) -> Route | None:
    """One route line, or None (skipped with a warning)."""
    r.no_block(stmt)
    try:
        return _route(r, stmt.words)
    except _Skip as skip:
        r.warn(stmt.head, f"route skipped: {skip}")
        return None


def _route(r: Reader, words: list[Tok]) -> Route:
    dest: list[str] = []
    options: list[str] = []
    gateways: list[str] = []
    nexthops: list[str] = []
    dev: str | None = None
    append = no_track = False
    i = 0
    while i < len(words):
        tok = words[i]
        word = tok.text
        if word == "inet6":
            raise error_at(tok, "IPv6 routes are not supported by this testbed")
        if word == "inet":
            i += 1
        elif word in ("add", "prepend", "append"):
            append = word == "append"
            i += 1
        elif word == "no_track":
            no_track = True
            i += 1
        elif word == "track_group":
            _take(words, i + 1, word)
            r.warn(tok, "track_group is not supported (routes are not tracked); ignored")
            i += 2
        elif word == "onlink":
            options.append(word)
            i += 1
        elif word == "encap":
            raise _Skip("'encap' (lightweight tunnels) is not supported")
        elif word == "nexthop":
            nexthops = _nexthops(words[i:])
            break
        elif word == "or":
            gateways.append(_address(_take(words, i + 1, word), word))
            i += 2
        elif word in _ROUTE_VALUED:
            value = _take(words, i + 1, word)
            text = value.text
            if word in _ADDRESS_OPTIONS:
                text = _address(value, word)
            if _ROUTE_VALUED[word] == "via":
                gateways.insert(0, text)
            elif _ROUTE_VALUED[word] == "dev":
                dev = text
            else:
                options += [_ROUTE_VALUED[word], text]
            i += 2
        elif word in _ROUTE_METRICS:
            value = _take(words, i + 1, word)
            if value.text == "lock":
                options += [word, "lock", _take(words, i + 2, word).text]
                i += 3
            else:
                options += [word, value.text]
                i += 2
        else:
            if dest:
                raise _Skip(f"unknown route keyword '{word}'")
            if word == "to":
                i += 1
                tok = _take(words, i, "to")
            if tok.text in ROUTE_TYPES:
                dest.append(tok.text)
                i += 1
                tok = _take(words, i, tok.text)
            network = r.ipv4_network(tok, "route")
            if network is None:
                raise _Skip(f"invalid route destination '{tok.text}'")
            dest.append(str(network))
            i += 1
    if not dest or dest[-1] in ROUTE_TYPES:
        raise _Skip("a route needs a destination")
    argv = [*dest]
    if len(gateways) > 1:  # "via A or B": one nexthop per gateway, each on the device
        for gateway in gateways:
            nexthops += ["nexthop", "via", gateway, *(["dev", dev] if dev else [])]
        dev = None
    elif gateways:
        argv += ["via", gateways[0]]
    if dev is not None:
        argv += ["dev", dev]
    return Route((*argv, *options, *nexthops), append, no_track)


def _nexthops(words: list[Tok]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(words):
        word = words[i].text
        if word == "nexthop" or word == "onlink":
            out.append(word)
            i += 1
        elif word in ("via", "dev", "weight"):
            value = _take(words, i + 1, word)
            out += [word, _address(value, word) if word == "via" else value.text]
            i += 2
        else:
            raise _Skip(f"unknown nexthop keyword '{word}'")
    return out


def parse_rule(r: Reader, stmt: Stmt, next_priority: list[int]) -> Rule | None:
    """One rule line, or None (skipped with a warning). ``next_priority`` is the counter
    keepalived keeps for rules written without a preference."""
    r.no_block(stmt)
    try:
        argv, no_track = _rule(r, stmt.words)
    except _Skip as skip:
        r.warn(stmt.head, f"rule skipped: {skip}")
        return None
    if "pref" not in argv:
        argv += ["pref", str(next_priority[0])]
        r.warn(
            stmt.head,
            f"rule has no preference; setting it to {next_priority[0]} (as keepalived does: "
            "probably not what you want)",
        )
        next_priority[0] -= 1
    return Rule(tuple(argv), no_track)


def _rule(r: Reader, words: list[Tok]) -> tuple[list[str], bool]:
    argv: list[str] = []
    no_track = False
    i = 0
    while i < len(words):
        tok = words[i]
        word = tok.text
        if word == "inet6":
            raise error_at(tok, "IPv6 rules are not supported by this testbed")
        if word in ("inet", "type"):
            i += 1
        elif word == "no_track":
            no_track = True
            i += 1
        elif word == "track_group":
            _take(words, i + 1, word)
            r.warn(tok, "track_group is not supported (rules are not tracked); ignored")
            i += 2
        elif word in _RULE_FLAGS or word in RULE_TYPES:
            argv.append(word)
            i += 1
        elif word in ("from", "to"):
            value = _take(words, i + 1, word)
            if value.text != "all":
                network = r.ipv4_network(value, f"rule {word}")
                if network is None:
                    raise _Skip(f"invalid IP {value.text} for '{word}'")
            argv += [word, value.text]
            i += 2
        elif word in _RULE_VALUED:
            argv += [_RULE_VALUED[word], _take(words, i + 1, word).text]
            i += 2
        else:
            raise _Skip(f"unknown rule keyword '{word}'")
    if not argv:
        raise _Skip("an empty rule")
    return argv, no_track


def rule_priority_counter() -> list[int]:
    """The counter `parse_rule` takes (a list, so it counts across calls)."""
    return [RULE_START_PRIORITY]
