"""The VRRP daemon's real-host edges that need no root: socket option structs, the primary
address from `ip -j`, link state from /sys (a fake tree and the real lo), and scripts started
in their own process group. Raw sockets and AF_PACKET are left to the integration tests."""

from __future__ import annotations

import socket
import struct
import time
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from testbed.keepalived_conf.model import Script
from testbed.runtime.scripts import PreparedScript, ScriptPolicy
from testbed.vrrp.transport import (
    LinuxHost,
    SpawnedProcess,
    link_up_from_sysfs,
    mac_from_sysfs,
    mreqn,
    pktinfo,
    primary_from_ip_json,
)


def test_mreqn_is_group_address_ifindex():
    raw = mreqn(IPv4Address("224.0.0.18"), IPv4Address("10.0.1.2"), 7)
    assert raw == socket.inet_aton("224.0.0.18") + socket.inet_aton("10.0.1.2") + struct.pack(
        "=i", 7
    )
    assert len(raw) == 12


def test_pktinfo_carries_the_source_in_ipi_spec_dst():
    raw = pktinfo(3, IPv4Address("10.0.1.2"))
    assert raw == struct.pack("=i", 3) + socket.inet_aton("10.0.1.2") + bytes(4)


IP_JSON = [
    {
        "ifname": "d1-eth0",
        "addr_info": [
            {"family": "inet", "local": "10.0.1.100", "prefixlen": 24},  # a VIP left first
            {"family": "inet", "local": "10.0.1.2", "prefixlen": 24},
            {"family": "inet", "local": "10.0.1.101", "prefixlen": 24, "secondary": True},
            {"family": "inet6", "local": "fe80::1", "prefixlen": 64},
        ],
    }
]


def test_primary_address_skips_vips_and_secondaries():
    vips = frozenset({IPv4Address("10.0.1.100")})
    assert primary_from_ip_json(IP_JSON, vips) == IPv4Address("10.0.1.2")
    assert primary_from_ip_json(IP_JSON, frozenset()) == IPv4Address("10.0.1.100")
    only_vip = [{"addr_info": [IP_JSON[0]["addr_info"][0]]}]
    assert primary_from_ip_json(only_vip, vips) is None
    assert primary_from_ip_json([], frozenset()) is None


def fake_interface(root, name: str, operstate: str, flags: str, mac: str = "02:00:00:00:01:02"):
    path = root / name
    path.mkdir()
    (path / "operstate").write_text(operstate + "\n")
    (path / "flags").write_text(flags + "\n")
    (path / "address").write_text(mac + "\n")


@pytest.mark.parametrize(
    ("operstate", "flags", "up"),
    [
        ("up", "0x1003", True),
        ("down", "0x1002", False),
        ("lowerlayerdown", "0x1003", False),
        ("unknown", "0x9", True),  # lo and some virtual drivers
        ("unknown", "0x8", False),
        ("dormant", "0x1003", False),
    ],
)
def test_link_state_from_sysfs(tmp_path, operstate, flags, up):
    fake_interface(tmp_path, "d1-eth0", operstate, flags)
    assert link_up_from_sysfs("d1-eth0", tmp_path) is up


def test_a_missing_interface_is_down(tmp_path):
    assert link_up_from_sysfs("d1-eth9", tmp_path) is False


def test_mac_from_sysfs(tmp_path):
    fake_interface(tmp_path, "d1-eth0", "up", "0x1003", "0a:1b:2c:3d:4e:5f")
    assert mac_from_sysfs("d1-eth0", tmp_path) == bytes.fromhex("0a1b2c3d4e5f")


def test_linux_host_reads_lo_without_root():
    host = LinuxHost()
    assert host.primary_address("lo") == IPv4Address("127.0.0.1")
    assert host.primary_address("no-such-if0") is None
    assert host.link_up("lo") is True
    assert host.link_up("no-such-if0") is False
    policy = ScriptPolicy()
    assert host.prepare_script(Script("/bin/sh -c true"), policy).script is not None
    assert host.prepare_script(Script("/etc/passwd"), policy).script is None  # not executable
    rc, err = host.ip(["addr", "show", "dev", "no-such-if0"])
    assert rc != 0 and "does not exist" in err


def sh(command: str) -> PreparedScript:
    return PreparedScript(command, ("/bin/sh", "-c", command), True, None, None, "root")


def wait_for(child: SpawnedProcess, timeout_s: float = 5.0) -> int | None:
    deadline = time.monotonic() + timeout_s
    while (rc := child.poll()) is None and time.monotonic() < deadline:
        time.sleep(0.01)
    return rc


def test_spawned_script_exit_status():
    child = SpawnedProcess(sh("exit 3"), (), quiet=True)
    assert wait_for(child) == 3


def test_killing_a_script_kills_its_process_group(tmp_path):
    pid_file = tmp_path / "grandchild.pid"
    child = SpawnedProcess(sh(f"sleep 30 & echo $! > {pid_file}; wait"), (), quiet=True)
    deadline = time.monotonic() + 5.0
    while not pid_file.exists() or not pid_file.read_text().strip():
        assert time.monotonic() < deadline
        time.sleep(0.01)
    grandchild = int(pid_file.read_text())
    child.kill()
    assert child.poll() is not None
    deadline = time.monotonic() + 5.0
    while running(grandchild):
        assert time.monotonic() < deadline, "the script's own child survived"
        time.sleep(0.01)


def running(pid: int) -> bool:
    """Alive and not a zombie waiting for init to reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
