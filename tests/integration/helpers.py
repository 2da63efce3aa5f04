"""Small clients used by the integration tests, run inside Mininet hosts."""

from __future__ import annotations

import re
import sys


def http_get(host, url: str, timeout_s: float = 3.0) -> str:
    """The body of GET ``url`` from inside ``host`` ('' on failure)."""
    return host.cmd(f"curl -s -m {timeout_s:g} {url}").strip()


def who_served(host, vip: str, n: int) -> list[str]:
    """The real server names that answered ``n`` HTTP requests to the VIP."""
    names = []
    for _ in range(n):
        body = http_get(host, f"http://{vip}/")
        names.append(body.split()[0] if body else "")
    return names


def udp_echo(
    host, dst: str, port: int = 7, sport: int = 0, payload: str = "ping", timeout_s: float = 1.0
) -> bool:
    """Send one datagram from ``host`` (optionally from a fixed source port); True if echoed."""
    code = (
        "import socket,sys;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);"
        f"s.bind(('',{sport}));s.settimeout({timeout_s});s.sendto({payload.encode()!r},('{dst}',{port}));"
        "\ntry:\n d=s.recv(2048);print('ECHO',d.decode())\nexcept OSError:\n print('TIMEOUT')"
    )
    out = host.cmd(f'{sys.executable} -c "{code}"')
    return f"ECHO {payload}" in out


def ipvsadm(host, args: str) -> tuple[int, str]:
    out = host.cmd(f"ipvsadm {args}; echo __rc=$?")
    body, _, rc = out.rpartition("__rc=")
    return int(rc.strip()), body


def dest_counter(
    host, vip_port: str, rip_port: str, proto_flag: str = "-t", column: int = 1
) -> int:
    """One counter of a real server from `ipvsadm -L -n --stats --exact` (1=Conns, 2=InPkts,
    3=OutPkts, 4=InBytes, 5=OutBytes)."""
    _rc, out = ipvsadm(host, f"-L -n --stats --exact {proto_flag} {vip_port}")
    for line in out.splitlines():
        m = re.match(r"\s+->\s+(\S+)\s+(.*)", line)
        if m and m.group(1) == rip_port:
            return int(m.group(2).split()[column - 1])
    raise AssertionError(f"{rip_port} not in:\n{out}")
