"""Each layout comes up with reachability exactly as designed, and goes away completely."""

import pytest

from testbed.net.network import Testbed
from testbed.topo.plan import LayoutParams


@pytest.mark.parametrize("layout", ["dr", "nat", "nat1"])
def test_reachability_is_exactly_as_designed(layout, no_leftovers):
    with Testbed(layout, LayoutParams(n_rs=2, n_clients=2)) as tb:
        tb.wait_ready()
        results = tb.check_reachability()
    wrong = [(r.reach.src, r.reach.dst, r.reach.expect) for r in results if not r.ok]
    assert not wrong, f"reachability differs from the plan: {wrong}"
    assert len(results) == len(tb.plan.reach) > 0


def test_real_servers_hold_the_vip_silently_in_dr(no_leftovers):
    with Testbed("dr", LayoutParams(n_rs=2, n_clients=1)) as tb:
        rs1, fw = tb.net["rs1"], tb.net["fw"]
        assert "10.0.0.100/32" in rs1.cmd("ip -4 addr show dev lo")
        assert rs1.cmd("sysctl -n net.ipv4.conf.all.arp_ignore").strip() == "1"
        assert rs1.cmd("sysctl -n net.ipv4.conf.all.arp_announce").strip() == "2"
        # Only the director answers ARP for the VIP.
        fw.cmd("ping -c1 -W1 10.0.0.100")
        neigh = fw.cmd("ip neigh show 10.0.0.100")
        assert tb.net["d1"].intf("d1-eth0").MAC() in neigh


def test_tx_offload_is_off_on_host_interfaces(no_leftovers):
    with Testbed("nat", LayoutParams(n_rs=1, n_clients=1)) as tb:
        out = tb.net["d1"].cmd("ethtool -k d1-eth1")
        assert "tx-checksumming: off" in out


def test_ovs_userspace_switch_carries_the_layout(no_leftovers):
    with Testbed("dr", LayoutParams(n_rs=1, n_clients=1, switch="ovs")) as tb:
        tb.wait_ready()
        results = tb.check_reachability()
    assert all(r.ok for r in results), [(r.reach.src, r.reach.dst) for r in results if not r.ok]


def test_piped_input_runs_each_line_as_a_cli_command(no_leftovers):
    """Piped into `up`, a line after a host command that takes a while still runs as a CLI
    command (Mininet's CLI would have handed it to that command's shell), and lines copied
    with their prompt run too: the same as --script."""
    import subprocess
    import sys

    lines = [
        "c1 sleep 1",  # input arrives while it runs: it must not get any
        "lvs-testbed> d1 echo PIPED-$((40+2))",
        "d1 echo AFTER-$((40+3))",
        "exit",
    ]
    out = subprocess.run(
        [sys.executable, "-m", "testbed", "up", "dr", "--rs", "1", "--clients", "2"],
        input="\n".join(lines) + "\n",
        capture_output=True,
        text=True,
        timeout=300,
    )
    shown = out.stdout + out.stderr
    assert out.returncode == 0, shown[-3000:]
    assert "PIPED-42" in shown and "AFTER-43" in shown, shown[-3000:]
    assert "command not found" not in shown and "Unknown command" not in shown, shown[-3000:]
