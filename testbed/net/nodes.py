"""Mininet node classes for the layouts: clients, the firewall, directors and real servers.

Each node configures itself from its `NodePlan` (addresses on every interface, default route,
VIPs), sets its sysctls and remembers the old values, turns off transmit offloads (checksums
left partial by veth offload break TCP through AF_PACKET forwarders and OVS's userspace
datapath), runs in a cgroup of its own inside a tracked run (with a CPU quota, and for a
director a memory limit, when asked), and on `terminate` restores what it changed, stops every
process in its namespace and its cgroup, and removes the cgroup. A host holds its network
namespace open from birth to `terminate`, so "every process in its namespace" means exactly
that: a namespace inode alone could, once the namespace is gone, name someone else's.
Modelled on Mininet's examples/linuxrouter.py.

The director and VRRP daemons that run on a `DirectorHost` are started by
`testbed.net.network.Testbed`, not here: a node only knows itself.
"""

from __future__ import annotations

import ipaddress
import os
import shlex
import tempfile
from contextlib import contextmanager, suppress

from mininet.moduledeps import pathCheck
from mininet.node import Host, OVSSwitch
from mininet.nodelib import LinuxBridge

from testbed.net.daemon_configs import firewall_ruleset, ipvs_forward_ruleset
from testbed.runtime.cgroup import CpuQuota, HostCgroup
from testbed.runtime.registry import TAG_KEY, kill_pids, pids_in_netns
from testbed.topo.plan import NodePlan, Service

OFFLOADS_OFF = "tx off tso off gso off gro off"


class NodeConfigError(RuntimeError):
    """A node could not be configured; the message names the node and the failed command."""


class LvsHost(Host):
    """Base of every testbed host: plan-driven addresses, sysctls with restore, quota."""

    def __init__(self, name: str, run=None, **params):
        self.run = run
        self.saved_sysctls: dict[str, str] = {}
        self.cgroup: HostCgroup | None = None
        self.quota: CpuQuota | None = None
        self.quota_lifts = 0  # nesting depth of quota_lifted()
        self.netns_fd: int | None = None
        Host.__init__(self, name, **params)
        # Held until terminate: while it is open the namespace cannot be freed, so its
        # (device, inode) names this host's namespace and no other.
        self.netns_fd = os.open(f"/proc/{self.pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)

    # -- helpers ---------------------------------------------------------------------------
    def check(self, cmd: str) -> str:
        """Run ``cmd`` in the node's shell; raise NodeConfigError if it fails."""
        out = self.cmd(cmd + " 2>&1; echo __rc=$?")
        body, _, rc = out.rstrip().rpartition("__rc=")
        if rc.strip() != "0":
            raise NodeConfigError(f"{self.name}: `{cmd}` failed: {body.strip()}")
        return body

    def set_sysctls(self, values: dict[str, str | int]) -> None:
        """Set sysctls in this node's namespace, remembering the first old value of each."""
        for key, value in values.items():
            if key not in self.saved_sysctls:
                self.saved_sysctls[key] = self.check(f"sysctl -n {key}").strip()
            self.check(f"sysctl -qw {key}={shlex.quote(str(value))}")

    def load_nft(self, ruleset: str) -> None:
        """Load an nftables ruleset into this node's namespace (through a file: the node's
        interactive shell cannot take a here-document)."""
        with tempfile.NamedTemporaryFile("w", prefix="lvs-testbed-nft-", suffix=".nft") as f:
            f.write(ruleset + "\n")
            f.flush()
            self.check(f"nft -f {f.name}")

    def restore_sysctls(self) -> None:
        for key, value in reversed(list(self.saved_sysctls.items())):
            self.cmd(f"sysctl -qw {key}={shlex.quote(value)}")
        self.saved_sysctls.clear()

    # -- Mininet hooks ---------------------------------------------------------------------
    def config(
        self,
        plan: NodePlan | None = None,
        cpu: float | None = None,
        cpu_period_us: int | None = None,
        mem_mib: int | None = None,
        offloads_off: bool = True,
        **params,
    ):
        result = Host.config(self, **params)
        if plan is not None:
            for intf in plan.intfs:
                self.check(f"ip addr flush dev {intf.name}")
                for addr in intf.addrs:
                    self.check(f"ip addr add {addr} dev {intf.name}")
                self.check(f"ip link set {intf.name} up")
            if plan.gateway:
                self.check(f"ip route replace default via {plan.gateway}")
        if offloads_off:
            for intf in self.intfList():
                if intf.name != "lo":
                    # Not every driver has every offload; ethtool fails only if none applied.
                    self.cmd(f"ethtool -K {intf.name} {OFFLOADS_OFF} 2>/dev/null")
        # Every host of a tracked run has a cgroup (its processes, its CPU time); plain
        # `mn --custom` makes one only for a quota or a memory limit.
        self.quota = CpuQuota(cpu, cpu_period_us) if cpu is not None else None
        if cpu is not None or mem_mib or self.run is not None:
            self._join_cgroup(self.quota, mem_mib or None)
        return result

    def _join_cgroup(self, quota: CpuQuota | None, mem_mib: int | None) -> None:
        run_id = self.run.id if self.run is not None else f"mn-{os.getpid()}"
        self.cgroup = HostCgroup(run_id, self.name, memory=mem_mib is not None)
        if self.run is not None:
            self.run.record_cgroup(self.cgroup.dirs)
        self.cgroup.create(quota, mem_mib << 20 if mem_mib is not None else None)
        self.cgroup.add(self.pid)

    @contextmanager
    def quota_lifted(self):
        """Run the body without the host's CPU quota (a daemon's start-up at 5% of a core
        would take seconds; the quota is for the steady state being measured). Nests: the
        quota comes back when the outermost body ends."""
        if self.cgroup is None or self.quota is None:
            yield
            return
        if self.quota_lifts == 0:
            self.cgroup.set_quota(None)
        self.quota_lifts += 1
        try:
            yield
        finally:
            self.quota_lifts -= 1
            if self.quota_lifts == 0 and self.cgroup is not None:
                self.cgroup.set_quota(self.quota)

    def popen(self, *args, **kwargs):
        """Mininet's popen forks from the controlling process, outside the host's cgroup:
        the child joins it before it execs (inside the host /sys is remounted, so it could
        not do so itself). Each child is recorded so a killed run can stop it."""
        if self.cgroup is not None and "preexec_fn" not in kwargs:
            kwargs["preexec_fn"] = self.cgroup.join_self
        proc = Host.popen(self, *args, **kwargs)
        if self.run is not None:
            self.run.record_process(proc.pid, f"{self.name}: {args[0]!r:.200}")
        return proc

    def set_cpu_quota(self, fraction: float) -> None:
        """Change the host's CPU quota in place (a calibration re-measures without rebuilding
        the layout). Only a host built with a quota has the cgroup to change."""
        if self.cgroup is None or self.quota is None:
            raise RuntimeError(
                f"{self.name} was built without a CPU quota; give one when building it"
            )
        self.quota = CpuQuota(fraction, self.quota.period_us)
        if self.quota_lifts == 0:  # else the outermost lift puts the new one in place
            self.cgroup.set_quota(self.quota)

    def terminate(self) -> None:
        if self.cgroup is not None:
            # Daemons at a few percent of a core take seconds to exit; stopping is not measured.
            with suppress(OSError):
                self.cgroup.set_quota(None)
        if self.shell:
            self.restore_sysctls()
        Host.terminate(self)
        # Daemons started with popen live in their own sessions; the shell's SIGHUP misses them.
        if self.netns_fd is not None:
            st = os.fstat(self.netns_fd)
            kill_pids(pids_in_netns((st.st_dev, st.st_ino)) - {os.getpid()})
            os.close(self.netns_fd)
            self.netns_fd = None
        if self.cgroup is not None:
            kill_pids(set(self.cgroup.pids()) - {os.getpid()})
            self.cgroup.remove()
            self.cgroup = None


class OvsSwitch(OVSSwitch):
    """Open vSwitch (userspace datapath here) whose bridge carries its run's id in
    ``external_ids`` from the transaction that creates it, so `lvs-testbed clean` removes only
    its own run's bridge of that name."""

    def __init__(self, name: str, run=None, **params):
        self.run = run
        OVSSwitch.__init__(self, name, **params)

    def bridgeOpts(self) -> str:  # noqa: N802 - Mininet API
        opts = OVSSwitch.bridgeOpts(self)
        if self.run is not None:
            opts += f" external_ids:{TAG_KEY}={self.run.id}"
        return opts


class Bridge(LinuxBridge):
    """A Linux bridge in its own network namespace.

    With br_netfilter loaded, bridged frames in the root namespace pass the host's iptables
    and conntrack (a Docker host's FORWARD policy DROP silently breaks the layout). The
    bridge-nf-call sysctls are per namespace, so the bridge gets a namespace of its own with
    them off; the host's settings stay untouched, and the bridge, its ports and its namespace
    all vanish with the switch's shell.
    """

    def __init__(self, name: str, run=None, **params):
        params["inNamespace"] = True
        LinuxBridge.__init__(self, name, **params)

    @classmethod
    def setup(cls) -> None:
        # LinuxBridge.setup warns about the root namespace's bridge-nf-call sysctls, which
        # do not apply to a bridge in its own namespace.
        pathCheck("brctl", moduleName="bridge-utils")

    def start(self, controllers) -> None:
        for table in ("arp", "ip", "ip6"):
            self.cmd(f"sysctl -qw net.bridge.bridge-nf-call-{table}tables=0 2>/dev/null")
        LinuxBridge.start(self, controllers)


class ClientHost(LvsHost):
    """A client: one interface on the outer segment. It stands for many real clients, so it
    gets the widest range of source ports: a few clients at thousands of connections per
    second would otherwise reuse ports within the director's TIME_WAIT and cap its table."""

    def config(self, **params):
        result = LvsHost.config(self, **params)
        self.set_sysctls({"net.ipv4.ip_local_port_range": "1024 65535"})
        return result


class FirewallHost(LvsHost):
    """The DR layout's router: forwards between clients and the LAN, admitting from outside
    only ping and the services on the VIP, and anything from the LAN outwards."""

    TABLE = "lvs_testbed_fw"

    def config(
        self,
        vip: str | None = None,
        services: tuple[Service, ...] = (),
        outside_intf: str | None = None,
        **params,
    ):
        result = LvsHost.config(self, **params)
        self.set_sysctls({"net.ipv4.ip_forward": 1})
        self.load_nft(firewall_ruleset(self.TABLE, vip, services, outside_intf))
        return result

    def terminate(self) -> None:
        if self.shell:
            self.cmd(f"nft delete table inet {self.TABLE} 2>/dev/null")
        LvsHost.terminate(self)


class RealServerHost(LvsHost):
    """A real server. In DR (and TUN) it holds the VIP on ``lo`` and never answers ARP for it
    (arp_ignore=1, arp_announce=2, as the LVS-HOWTO says), so only the director attracts it."""

    def config(self, plan: NodePlan | None = None, **params):
        result = LvsHost.config(self, plan=plan, **params)
        if plan is not None and plan.lo_vips:
            self.set_sysctls(
                {
                    "net.ipv4.conf.all.arp_ignore": 1,
                    "net.ipv4.conf.all.arp_announce": 2,
                }
            )
            for vip in plan.lo_vips:
                self.check(f"ip addr add {vip} dev lo")
        return result


class DirectorHost(LvsHost):
    """A director: its NIC(s), its VIPs while it is master, its CPU quota.

    The kernel does not forward here (ip_forward=0): the userspace director forwards exactly
    the frames of its services and connections, so a director is never an open relay. With
    ``kernel_ipvs`` the kernel's IPVS is the director instead; for NAT (``nat``) it needs
    ip_forward=1, since it rewrites the real servers' replies in the forward hook, and a
    forward filter then lets only those replies through (`ipvs_forward_ruleset`). ICMP
    redirects are off: a one-NIC NAT director would otherwise tell real servers to bypass it.
    """

    IPVS_TABLE = "lvs_testbed_ipvs"

    def config(
        self,
        plan: NodePlan | None = None,
        master: bool = False,
        kernel_ipvs: bool = False,
        nat: bool = False,
        services: tuple[Service, ...] = (),
        **params,
    ):
        result = LvsHost.config(self, plan=plan, **params)
        self.plan = plan
        self.ipvs_filter = False
        if kernel_ipvs and nat and plan is not None:
            self.set_sysctls(
                {
                    "net.ipv4.ip_forward": 1,
                    "net.ipv4.conf.all.send_redirects": 0,
                    "net.ipv4.conf.default.send_redirects": 0,
                    **{f"net.ipv4.conf.{i.name}.send_redirects": 0 for i in plan.intfs},
                }
            )
            rs_net = ipaddress.ip_interface(plan.intfs[-1].addrs[-1]).network
            self.load_nft(ipvs_forward_ruleset(self.IPVS_TABLE, str(rs_net), services))
            self.ipvs_filter = True
        else:
            self.set_sysctls({"net.ipv4.ip_forward": 0})
        if plan is not None and master:
            self.add_vips()
        return result

    def terminate(self) -> None:
        if self.shell and getattr(self, "ipvs_filter", False):
            self.cmd(f"nft delete table inet {self.IPVS_TABLE} 2>/dev/null")
        LvsHost.terminate(self)

    def add_vips(self) -> None:
        for addr, intf in self.plan.vips:
            self.check(f"ip addr replace {addr} dev {intf}")

    def del_vips(self) -> None:
        for addr, intf in self.plan.vips:
            self.cmd(f"ip addr del {addr} dev {intf} 2>/dev/null")
