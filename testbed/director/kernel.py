"""Keep the director namespace's own kernel out of what the userspace director handles.

The kernel sees every frame the director reads. For a VIP that is a local address it would
answer a SYN to a service port with a RST (or a datagram with port unreachable) before the
real server could answer. One nftables set holds the services (protocol . VIP . port);
prerouting drops what is in it, at a priority before conntrack so the kernel does not even
track it. Other ports on the VIP still reach the kernel, as with IPVS, and ping works.
NAT replies need no rule: directors run with ip_forward=0, so the kernel drops them.
"""

from __future__ import annotations

import subprocess

from testbed.director.model import Director, int_to_ip

TABLE = "lvs_testbed_director"
PROTO_NAMES = {6: "tcp", 17: "udp"}
NFT_TIMEOUT_S = 5.0


def ruleset(director: Director) -> str:
    """The whole table, services included (pure, for tests)."""
    elements = sorted(
        f"{PROTO_NAMES[svc.proto]} . {int_to_ip(svc.addr)} . {svc.port}"
        for svc in director.services()
        if not svc.fwmark and svc.proto in PROTO_NAMES and svc.port
    )
    lines = [
        f"table inet {TABLE} {{",
        "  set services {",
        "    type inet_proto . ipv4_addr . inet_service",
    ]
    if elements:
        lines.append(f"    elements = {{ {', '.join(elements)} }}")
    lines += [
        "  }",
        "  chain prerouting {",
        "    type filter hook prerouting priority -300; policy accept;",
        "    meta l4proto . ip daddr . th dport @services drop",
        "  }",
        "}",
    ]
    return "\n".join(lines)


def apply(director: Director) -> None:
    """Replace the table with one for the current services, in one nft transaction: if it
    fails (or does not finish in NFT_TIMEOUT_S), the old table stays as it was. Raises
    RuntimeError then."""
    script = f"table inet {TABLE}\ndelete table inet {TABLE}\n{ruleset(director)}\n"
    try:
        res = subprocess.run(
            ["nft", "-f", "-"],
            input=script,
            text=True,
            capture_output=True,
            check=False,
            timeout=NFT_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"nft did not finish in {NFT_TIMEOUT_S:g} s") from exc
    except OSError as exc:
        raise RuntimeError(f"nft could not be run: {exc}") from exc
    if res.returncode != 0:
        raise RuntimeError(f"nft could not load the director's bypass rules: {res.stderr.strip()}")


def remove() -> None:
    try:
        subprocess.run(
            ["nft", "delete", "table", "inet", TABLE],
            capture_output=True,
            check=False,
            timeout=NFT_TIMEOUT_S,
        )
    except (subprocess.TimeoutExpired, OSError):
        pass  # the namespace goes with its host; nothing else depends on the table


def ip_forward_enabled() -> bool:
    with open("/proc/sys/net/ipv4/ip_forward") as f:
        return f.read().strip() == "1"
