"""Bring a layout up and down: a tracked Mininet network plus everything that runs on it.

`Testbed` is the one way the CLI, experiments, labs and tests build a layout. It takes the
machine's run lock first (runtime/runlock.py: one process builds layouts at a time; several
Testbeds of that process share it), records every host, switch, interface and process in a
`Run` as it is created (holding each host's network namespace and tagging what it makes in
the root namespace with the run's id), so ``lvs-testbed clean`` can remove what a killed run
left and nothing else, and it always tears down in ``finally`` (also on Ctrl-C and on
SIGTERM/SIGHUP, which `handle_termination` turns into an exception). The daemons' logs go
to a directory that outlives the run (runtime/logs.py), named by `Testbed.logs_dir`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from mininet.log import setLogLevel
from mininet.net import Mininet
from mininet.node import OVSSwitch, RemoteController

from testbed import child_python
from testbed.net.capture import CAPTURE_DIR_ENV, LinkCaptures
from testbed.net.daemon_configs import UserConfig
from testbed.net.nodes import Bridge, OvsSwitch
from testbed.net.shaping import Shaping, require_netem
from testbed.runtime import ipvs, runlock
from testbed.runtime.logs import LogCap, new_log_dir
from testbed.runtime.registry import CleanReport, Run, ovs_bridge_tag
from testbed.topo.layouts import TOPOS, LvsTopo
from testbed.topo.plan import LayoutParams, Plan, Reach, ipvsadm_rules

LAYOUT_FILE = "layout.json"


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP arrived; raised so ``finally`` blocks tear the network down."""


def handle_termination() -> None:
    """Turn SIGTERM and SIGHUP into `Terminated` in the main thread."""

    def raise_terminated(signum, _frame):
        raise Terminated(f"signal {signum}")

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, raise_terminated)


class RootNameTaken(RuntimeError):
    """A root-namespace name the layout needs is in use; the message says by whom."""


class TrackedMininet(Mininet):
    """Mininet that records each node, bridge and root-namespace interface in a `Run`, holds
    each node's network namespace for the run's life, and tags root-namespace links."""

    def __init__(self, run: Run, **kwargs):
        self.run = run
        Mininet.__init__(self, **kwargs)

    def addHost(self, name, cls=None, **params):  # noqa: N802 - Mininet API
        host = Mininet.addHost(self, name, cls=cls, run=self.run, **params)
        self.run.hold_netns(host.pid, name)
        return host

    def addSwitch(self, name, cls=None, **params):  # noqa: N802
        if cls is not None and issubclass(cls, OVSSwitch):
            _check_ovs_name_free(name)
        if cls is not None and issubclass(cls, (OvsSwitch, Bridge)):
            params["run"] = self.run
        switch = Mininet.addSwitch(self, name, cls=cls, **params)
        if switch.inNamespace:
            self.run.hold_netns(switch.pid, name)
        else:
            self.run.record_process(switch.pid, f"switch {name} shell")
            self.run.record_bridge(name, "ovs" if isinstance(switch, OVSSwitch) else "linux")
        return switch

    def start(self) -> None:
        Mininet.start(self)
        for switch in self.switches:
            if not switch.inNamespace and not isinstance(switch, OVSSwitch):
                _tag_link(switch.name, self.run.tag)  # a Linux bridge in the root namespace

    def addController(self, name="c0", controller=None, **params):  # noqa: N802
        ctl = Mininet.addController(self, name, controller, **params)
        self.run.record_process(ctl.pid, f"controller {name} shell")
        return ctl

    def addLink(self, node1, node2, port1=None, port2=None, cls=None, **params):  # noqa: N802
        link = Mininet.addLink(self, node1, node2, port1, port2, cls, **params)
        for intf in (link.intf1, link.intf2):
            if not intf.node.inNamespace:
                self.run.record_link(intf.name)
                _tag_link(intf.name, self.run.tag)
        return link


def _tag_link(name: str, tag: str) -> None:
    """Give a root-namespace interface the run's tag as its alias (what `clean` checks)."""
    res = subprocess.run(
        ["ip", "link", "set", "dev", name, "alias", tag],
        capture_output=True,
        text=True,
        check=False,
        timeout=10,
    )
    if res.returncode != 0:
        raise RuntimeError(f"cannot tag interface {name}: {res.stderr.strip()}")


def _check_ovs_name_free(name: str) -> None:
    """Mininet deletes an existing bridge of the same name when it starts a switch: refuse
    instead, naming who made it."""
    tag = ovs_bridge_tag(name)
    if tag is None:
        return
    owner = f"left by run {tag}: `lvs-testbed clean` removes it" if tag else "not made by us"
    raise RootNameTaken(
        f"an Open vSwitch bridge named {name} already exists ({owner}); this layout needs the "
        "name. Remove it (if it is yours) or run the layout with --switch bridge"
    )


@dataclass
class ReachResult:
    reach: Reach
    ok: bool  # the observed reachability equals the expected one

    @property
    def observed(self) -> bool:
        return self.reach.expect if self.ok else not self.reach.expect


class Testbed:
    """A layout, up. Use as a context manager::

    with Testbed("dr", LayoutParams(n_rs=3)) as tb:
        tb.net["c1"].cmd("ping -c1", tb.plan.vip)
    """

    __test__ = False  # not a pytest test class, despite the name

    def __init__(
        self,
        layout: str,
        params: LayoutParams | None = None,
        kind: str | None = None,
        quiet: bool = True,
        configs: dict[str, str | UserConfig] | None = None,
        capture_root: Path | None = None,
    ):
        if layout not in TOPOS:
            raise ValueError(f"unknown layout {layout!r}; known: {', '.join(TOPOS)}")
        self.params = params or LayoutParams()
        self.topo: LvsTopo = TOPOS[layout](**_fields(self.params))
        self.plan: Plan = self.topo.plan
        self.kind = kind or layout
        self.quiet = quiet
        # director name -> the user's keepalived.conf (a path is a UserConfig with defaults)
        self.configs = {
            name: c if isinstance(c, UserConfig) else UserConfig(str(c))
            for name, c in (configs or {}).items()
        }
        if self.params.ha == "keepalived" and any(c.iface_map for c in self.configs.values()):
            raise ValueError(
                "keepalived reads the file as it is: rename its interfaces in the file, or "
                "use --ha vrrp for --map-iface"
            )
        # Per-link pcaps go to <capture_root>/<run id>/ (testbed.net.capture); a point of an
        # `experiment run --capture` is told its directory by the environment.
        env_root = os.environ.get(CAPTURE_DIR_ENV)
        self.capture_root = capture_root or (Path(env_root) if env_root else None)
        self.captures: LinkCaptures | None = None
        self.capture_dir: Path | None = None
        self.capture_files: list[Path] = []
        self.run: Run | None = None
        self.logs_dir: Path | None = None
        self._log_cap: LogCap | None = None
        self._locked = False
        self.net: TrackedMininet | None = None
        self.controller_proc: subprocess.Popen | None = None
        self.procs: dict[
            tuple[str, str], subprocess.Popen
        ] = {}  # (host, what) -> the latest spawned
        self.adopted = False  # True: the network is Mininet's own (`adopt`), not ours

    @classmethod
    def adopt(cls, net) -> Testbed:
        """A Testbed around a network that Mininet's own ``mn --custom topos/<layout>.py``
        built and started: it starts and stops the layout's daemons (`start_daemons`,
        `stop_daemons`) and leaves the network to ``mn``."""
        topo = getattr(net, "topo", None)
        if not isinstance(topo, LvsTopo):
            raise ValueError(
                "not an lvs-testbed layout: start mn with --custom topos/dr.py --topo lvs-dr "
                "(or nat.py / lvs-nat, nat1.py / lvs-nat1)"
            )
        testbed = cls(topo.layout, topo.plan.params, kind=f"mn-{topo.layout}")
        testbed.topo, testbed.plan = topo, topo.plan
        testbed.net = net
        testbed.adopted = True
        return testbed

    def start_daemons(self) -> None:
        """On an adopted network: a run directory of our own, then what `start` runs on the
        hosts (real servers' HTTP and echo, the directors, the NAT pair's VRRP)."""
        if self.run is not None:
            raise RuntimeError("the daemons are running already (`lvs stop` first)")
        try:
            self._open_run()
            self.start_services()
        except BaseException:
            self.stop_daemons()
            raise

    def stop_daemons(self) -> CleanReport | None:
        """On an adopted network: stop what `start_daemons` started (every process it recorded,
        by pid and start time) and remove its run directory; the network stays up."""
        self.procs.clear()
        return self._close_run()

    def _open_run(self) -> None:
        """The run's directory (with the layout, for other processes to rebuild the plan) and
        its kept log directory, capped while the run lives."""
        self.run = Run(self.kind)
        self.logs_dir = new_log_dir(self.run.id)
        self.run.record_logs(self.logs_dir)
        self._log_cap = LogCap(self.logs_dir).start()
        (self.run.dir / LAYOUT_FILE).write_text(
            json.dumps({"layout": self.plan.layout, "params": dataclasses.asdict(self.params)})
        )
        _prepare_host_environment(self.run.dir, ipvsadm_shim=not self.plan.kernel_ipvs)

    def _close_run(self) -> CleanReport | None:
        """Remove what the run recorded and stop capping its logs (they stay in `logs_dir`)."""
        report = None
        try:
            if self.run is not None:
                run, self.run = self.run, None
                report = run.cleanup()
        finally:
            if self._log_cap is not None:
                self._log_cap.stop()
                self._log_cap = None
        return report

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> Testbed:
        require_netem(Shaping(delay_ms=self.params.delay_ms, loss_pct=self.params.loss_pct))
        if os.geteuid() != 0:
            raise PermissionError("building a layout needs root (Mininet): run with sudo")
        if self.plan.kernel_ipvs:
            ipvs.load()  # IpvsUnavailable (a RuntimeError) before anything is built
        setLogLevel("output" if self.quiet else "info")
        runlock.acquire()  # RunLockBusy names the holder
        self._locked = True
        try:
            self._open_run()
            self.net = TrackedMininet(self.run, topo=self.topo, controller=None, build=False)
            if self.plan.controller_app:
                port = self.start_controller(self.plan.controller_app)
                self.net.addController("c0", controller=RemoteController, ip="127.0.0.1", port=port)
            self.net.build()
            self.net.start()
            if self.capture_root is not None:  # before the daemons: their first packets too
                self.capture_dir = self.capture_root / self.run.dir.name
                self.captures = LinkCaptures(self.capture_dir, self.run)
                self.captures.start(self.net.links, self.net.hosts)
            self.start_services()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> CleanReport | None:
        """Stop the captures (their files named and kept), the network, then remove anything
        recorded that is still there, then give the run lock back. The logs stay in `logs_dir`."""
        try:
            if self.captures is not None:  # while the interfaces still exist
                captures, self.captures = self.captures, None
                self.capture_files = captures.stop()
        finally:
            report = self._stop_network()
        return report

    def _stop_network(self) -> CleanReport | None:
        report = None
        try:
            if self.net is not None:
                self.net.stop()
        finally:
            self.net = None
            try:
                report = self._close_run()
            finally:
                if self._locked:
                    self._locked = False
                    runlock.release()
        return report

    def __enter__(self) -> Testbed:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- what runs on the hosts ----------------------------------------------------------
    def start_services(self) -> None:
        """Real servers serve HTTP and UDP echo; directors run the userspace director with
        the layout's default services (``director`` "python") or get them in kernel IPVS
        ("ipvs"); a NAT pair's failover daemons start last. All of it, up to the first
        election, runs with the hosts' CPU quotas lifted: at 5% of a core the daemons' start
        and first control requests would take longer than any sensible wait, and the quota
        is for the steady state being measured."""
        with contextlib.ExitStack() as lifted:
            for host in self.net.hosts:
                lifted.enter_context(host.quota_lifted())
            self._start_services()

    def _start_services(self) -> None:
        for rs in self.plan.realservers:
            binds = [rs.ip] + [v.split("/")[0] for v in rs.lo_vips]
            argv = [child_python(), "-m", "testbed.traffic.servers", "--name", rs.name]
            for addr in binds:
                argv += ["--bind", addr]
            self.spawn(rs.name, argv, "servers")
            if rs.lo_vips:
                self._prepare_tunnel(rs.name)
        pair = self.plan.has_pair
        ours_configure = (
            pair and self.params.ha == "vrrp"
        )  # our VRRP daemon applies virtual_servers
        if self.params.director == "python":
            rules = None
            if not ours_configure:
                rules = self.run.dir / "rules.ipvsadm"
                rules.write_text(ipvsadm_rules(self.plan))
            for d in self.plan.directors:
                self.start_director(d.name, rules)
        elif self.plan.kernel_ipvs:
            for d in self.plan.directors:
                self.start_kernel_ipvs(d.name)
        for rs in self.plan.realservers:
            _wait_for(
                lambda rs=rs: ":80 " in self.net[rs.name].cmd("ss -Hltn 'sport = :80'"),
                f"{rs.name}'s HTTP server",
                self.logs_dir / f"{rs.name}.servers.log",
            )
        if pair:
            for d in self.plan.directors:
                self.net[d.name].del_vips()  # VRRP places them from now on
                self.start_failover_daemon(d.name)
            self.wait_master("d1")

    # -- kernel IPVS (--director ipvs) -----------------------------------------------------
    def start_kernel_ipvs(self, name: str) -> None:
        """Kernel IPVS on director ``name``: the layout's services through the real ipvsadm
        (unless a health checker sets them up, as ours does with ``ha="vrrp"`` and
        keepalived with ``ha="keepalived"``), and for a pair with ``conn_sync`` the kernel's
        sync daemons (keepalived runs its own, from its lvs_sync_daemon)."""
        p = self.params
        if not (self.plan.has_pair and p.ha in ("vrrp", "keepalived")):
            self.kernel_ipvsadm(name, ["-R"], ipvsadm_rules(self.plan))
        settings = self.sync_settings(name)
        if settings is not None and p.ha != "keepalived":
            # The kernel's master and backup sync daemons (what the Python director's
            # --sync-iface does): either director can then take over the other's connections.
            for argv in ipvs.sync_daemon_argvs(*settings):
                self.kernel_ipvsadm(name, argv)

    def kernel_ipvsadm(self, name: str, argv: list[str], stdin_text: str | None = None) -> str:
        """The real ipvsadm in director ``name``'s namespace; its output, or RuntimeError."""
        res = ipvs.run_ipvsadm(argv, stdin_text, netns_pid=self.net[name].pid)
        if res.rc != 0:
            raise RuntimeError(
                f"`ipvsadm {' '.join(argv)}` on {name} failed ({res.rc}): "
                f"{(res.out + res.err).strip()}"
            )
        return res.out

    # -- OpenFlow controllers -------------------------------------------------------------
    def start_controller(self, app: str) -> int:
        """Start the os-ken ``app`` in the root namespace (where OVS connects to it); the
        OpenFlow director (lb) gets the layout's default services. Returns its port."""
        port = _free_port()
        argv = [child_python(), "-m", "testbed", "controller", "run", app, "--port", str(port)]
        if app == "lb":
            rules = self.run.dir / "rules.ipvsadm"
            rules.write_text(ipvsadm_rules(self.plan))
            argv += ["--rules", str(rules), "--mode", "dr" if self.plan.layout == "dr" else "nat"]
            if self.plan.inner_vip:
                argv += ["--gateway-ip", self.plan.inner_vip]
        log = open(self.logs_dir / "controller.log", "ab")  # noqa: SIM115 - the child owns it
        try:
            proc = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        finally:
            log.close()
        self.run.record_process(proc.pid, f"controller {app}")
        self.controller_proc = proc
        _wait_for(
            lambda: _listening(port) or proc.poll() is not None,
            f"controller {app}",
            self.logs_dir / "controller.log",
        )
        if proc.poll() is not None:
            raise RuntimeError(
                f"the controller exited: {(self.logs_dir / 'controller.log').read_text()[-500:]}"
            )
        return port

    def restart_controller(self) -> None:
        """Stop the controller and start it again on the same port (switches reconnect)."""
        proc = self.controller_proc
        port = int(proc.args[proc.args.index("--port") + 1])
        proc.terminate()
        proc.wait(timeout=10)
        _wait_for(lambda: not _listening(port), "the old controller to close its port")
        self.controller_proc = subprocess.Popen(
            proc.args,
            stdout=open(self.logs_dir / "controller.log", "ab"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.run.record_process(self.controller_proc.pid, "controller (restarted)")
        _wait_for(
            lambda: _listening(port),
            "the controller to come back",
            self.logs_dir / "controller.log",
        )

    # -- failover (NAT pair) ----------------------------------------------------------------
    def keepalived_conf(self, name: str) -> Path:
        """The director's keepalived.conf: the user's own file where it is (so relative
        include lines resolve as keepalived resolves them), or one generated for the layout
        (`testbed.net.daemon_configs`) in the run directory."""
        if name in self.configs:
            return Path(self.configs[name].path).resolve()
        path = self.run.dir / f"{name}.keepalived.conf"
        if not path.exists():
            path.write_text(generated_keepalived_conf(self.plan, name))
        return path

    def user_config_argv(self, name: str) -> list[str]:
        """``--config-id`` and ``--map-iface`` options for a director's own file."""
        user = self.configs.get(name)
        if user is None:
            return []
        argv = ["--config-id", user.config_id or name]
        for old, new in sorted(user.iface_map.items()):
            argv += ["--map-iface", f"{old}={new}"]
        return argv

    def sync_settings(self, name: str) -> tuple[str, int] | None:
        """The director's connection sync (interface, sync ID): the user's
        ``lvs_sync_daemon`` when their file has one, else the layout's (the inner NIC, sync
        ID 1) when ``conn_sync``; None for no sync."""
        user = self.configs.get(name)
        if user is not None:
            config = user.effective(name)
            syncd = config.global_defs.lvs_sync_daemon
            if syncd is not None:
                return syncd.interface, config.sync_id()
        if self.plan.has_pair and self.params.conn_sync:
            # Sync connections over the inner segment, where both directors have a NIC.
            return self.plan.node(name).intfs[-1].name, 1
        return None

    def sync_args(self, name: str) -> list[str]:
        """`sync_settings` as the Python director's options, with the peer it trusts."""
        settings = self.sync_settings(name)
        if settings is None:
            return []
        iface, sync_id = settings
        return [
            "--sync-iface",
            iface,
            "--sync-id",
            str(sync_id),
            *self._sync_peer_args(name, iface),
        ]

    def _sync_peer_args(self, name: str, iface: str) -> list[str]:
        """``--sync-peer`` with the other director's address on ``iface``'s segment (the
        first of its NIC there: its sync messages come from it, daemon.primary_ipv4), so sync
        from anyone else on the segment is ignored (in nat1 the clients share it)."""
        mine = next((i for i in self.plan.node(name).intfs if i.name == iface), None)
        if mine is None:
            return []
        for director in self.plan.directors:
            if director.name == name:
                continue
            for intf in director.intfs:
                if intf.switch == mine.switch:
                    return ["--sync-peer", intf.addrs[0].split("/")[0]]
        return []

    def start_failover_daemon(self, name: str) -> None:
        """Start the VRRP speaker on ``name``: ours (`lvs-testbed vrrp run`), or Debian's
        keepalived (VRRP only) with ``ha="keepalived"``."""
        conf = self.keepalived_conf(name)
        if self.params.ha == "keepalived":
            argv = [
                "keepalived",
                "-n",
                "-l",
                "-D",
                "-f",
                str(conf),
                "-p",
                str(self.run.dir / f"{name}.keepalived.pid"),
                "-r",
                str(self.run.dir / f"{name}.keepalived-vrrp.pid"),
            ]
            if self.plan.kernel_ipvs:
                # Its checker process drives kernel IPVS (virtual_servers, lvs_sync_daemon).
                argv += ["-c", str(self.run.dir / f"{name}.keepalived-check.pid")]
            else:
                argv.insert(4, "--vrrp")  # the Python director is not keepalived's to drive
            if name in self.configs:
                argv += ["-i", self.configs[name].config_id or name]
            self.spawn(name, argv, "keepalived")
            return
        argv = [
            child_python(),
            "-m",
            "testbed",
            "vrrp",
            "run",
            "--config",
            str(conf),
            "--name",
            name,
            *self.user_config_argv(name),
        ]
        if self.plan.kernel_ipvs:
            argv.append("--kernel-ipvs")  # its health checker drives the real ipvsadm
        with self.net[name].quota_lifted():
            proc = self.spawn(name, argv, "vrrp")
            _wait_for(
                lambda: _index_of(self.run.dir, name, "vrrp", proc.pid) or proc.poll() is not None,
                f"VRRP daemon on {name}",
                self.logs_dir / f"{name}.vrrp.log",
            )
        if proc.poll() is not None:
            log = (self.logs_dir / f"{name}.vrrp.log").read_text()
            raise RuntimeError(f"the VRRP daemon on {name} exited: {log.strip()[-500:]}")

    def restore(self, how: str, name: str = "d1") -> None:
        """Undo `testbed.net.failover.inject`: restart the daemons a kill or shutdown stopped,
        or bring the links back up. With preempt (the default) the master takes over again."""
        if how == "link":
            for intf in self.plan.node(name).intfs:
                self.net[name].check(f"ip link set {intf.name} up")
            return
        if how == "kill":
            # A crashed master comes back without its VIPs, as after a reboot; left in place
            # they would answer ARP beside the new master's.
            for addr, intf in self.plan.node(name).vips:
                self.net[name].cmd(f"ip addr del {addr} dev {intf} 2>/dev/null")
        if how == "kill" and self.params.director == "python":
            rules = None
            if self.params.ha != "vrrp":
                rules = self.run.dir / "rules.ipvsadm"
            self.start_director(name, rules)
        if how == "kill" and self.plan.kernel_ipvs:
            # The kernel's table outlives the daemons; a rebooted director starts empty.
            for argv in (["-C"], ["--stop-daemon", "master"], ["--stop-daemon", "backup"]):
                ipvs.run_ipvsadm(argv, netns_pid=self.net[name].pid)
            self.start_kernel_ipvs(name)
        self.start_failover_daemon(name)

    def vip_holder(self) -> str | None:
        """Which director holds the outer VIP. After a crash (failover by kill) the dead master
        still has the address configured: then the one whose VRRP daemon is MASTER wins."""
        from testbed.net.failover import master_since, vrrp_status

        vip = f"{self.plan.vip}/"
        holders = [
            d.name for d in self.plan.directors if vip in self.net[d.name].cmd("ip -4 -o addr show")
        ]
        if len(holders) > 1:
            alive = [h for h in holders if master_since(vrrp_status(self.run.dir, h)) is not None]
            holders = alive or holders
        return holders[0] if holders else None

    def wait_master(self, name: str, timeout_s: float = 15.0) -> None:
        """Wait until ``name`` holds the VIP (first election: 3 adverts plus skew)."""
        _wait_for(
            lambda: self.vip_holder() == name,
            f"{name} becoming master",
            self.logs_dir / f"{name}.vrrp.log",
            timeout_s,
        )

    def _prepare_tunnel(self, name: str) -> None:
        """Let a DR real server also take TUN (IP-in-IP) traffic for the VIP on its lo: the
        kernel's tunl0 where the kernel has ipip, a userspace decapsulator where it has not."""
        if _kernel_has_ipip():
            self.net[name].check("ip link set tunl0 up")
            self.net[name].set_sysctls(
                {"net.ipv4.conf.tunl0.rp_filter": 0, "net.ipv4.conf.all.rp_filter": 0}
            )
        else:
            self.spawn(name, [child_python(), "-m", "testbed.traffic.ipipd"], "ipipd")

    def start_director(self, name: str, rules: Path | None = None) -> None:
        """Start the director daemon on host ``name`` and wait for its control socket."""
        p = self.params
        argv = [
            child_python(),
            "-m",
            "testbed",
            "director",
            "run",
            "--io",
            p.io_mode,
            "--batch",
            str(p.batch),
            "--wait-us",
            str(p.wait_us),
            "--table-bits",
            str(p.table_bits),
            "--conn-max",
            str(p.conn_max),
        ]
        for intf in self.plan.node(name).intfs:
            argv += ["--iface", intf.name]
        if rules is not None:
            argv += ["--rules", str(rules)]
        argv += self.sync_args(name)
        with self.net[name].quota_lifted():
            proc = self.spawn(name, argv, "director")
            _wait_for(
                lambda: (
                    _index_of(self.run.dir, name, "director", proc.pid) or proc.poll() is not None
                ),
                f"director on {name}",
                self.logs_dir / f"{name}.director.log",
            )
        if proc.poll() is not None:
            log = (self.logs_dir / f"{name}.director.log").read_text()
            raise RuntimeError(f"the director on {name} exited: {log.strip()[-500:]}")

    def director_request(self, message: dict, name: str = "d1", timeout_s: float = 10.0) -> dict:
        """A control request to ``name``'s director from this process (outside the director's
        CPU quota, unlike a command run in its host)."""
        from testbed.runtime.control import request, socket_path

        return request(socket_path(self.run.dir, name), message, timeout_s=timeout_s)

    def ipvsadm(self, args: str, name: str = "d1") -> tuple[int, str]:
        """``ipvsadm ARGS`` on ``name``'s director (the real one with kernel IPVS); (exit
        status, output)."""
        import shlex

        if self.plan.kernel_ipvs:
            res = ipvs.run_ipvsadm(shlex.split(args), netns_pid=self.net[name].pid)
            return res.rc, res.out + res.err
        reply = self.director_request({"op": "ipvsadm", "argv": shlex.split(args)}, name)
        return reply.get("rc", 1), reply.get("out", "") + reply.get("err", "")

    def spawn(self, host: str, argv: list[str], what: str):
        """Start ``argv`` in ``host``, logging to ``<run dir>/<host>.<what>.log``."""
        log = open(self.logs_dir / f"{host}.{what}.log", "ab")  # noqa: SIM115 - the child owns it
        try:
            proc = self.net[host].popen(argv, stdout=log, stderr=subprocess.STDOUT)
        finally:
            log.close()
        self.procs[(host, what)] = proc
        if self.adopted:  # Mininet's hosts, not ours: stop_daemons stops it by its record
            self.run.record_process(proc.pid, f"{what} on {host}")
        return proc

    # -- checks ----------------------------------------------------------------------------
    def check_reachability(self, timeout_s: float = 1.0) -> list[ReachResult]:
        """Ping every pair the plan has an expectation for, all at once; compare."""
        assert self.net is not None
        procs = []
        for reach in self.plan.reach:
            cmd = ["ping", "-n", "-q", "-c", "3", "-i", "0.2", "-W", f"{timeout_s:g}", reach.dst_ip]
            procs.append((reach, self.net[reach.src].popen(cmd)))
        results = []
        for reach, proc in procs:
            proc.communicate()
            results.append(ReachResult(reach, (proc.returncode == 0) == reach.expect))
        return results

    def wait_ready(self, timeout_s: float = 5.0) -> bool:
        """Wait until the plan's positive reachability holds (ARP, bridges settling)."""
        deadline = time.monotonic() + timeout_s
        while True:
            results = self.check_reachability(timeout_s=0.5)
            if all(r.ok for r in results if r.reach.expect) or time.monotonic() > deadline:
                return all(r.ok for r in results)


def _fields(params: LayoutParams) -> dict:
    return {k: getattr(params, k) for k in params.__dataclass_fields__}


def _prepare_host_environment(run_dir: Path, ipvsadm_shim: bool = True) -> None:
    """Hosts inherit our environment: put ``lvs-testbed`` (next to this interpreter, in the
    venv) and a plain ``ipvsadm`` (as the LVS-HOWTO types it) on their PATH, and tell them
    the run directory, where directors keep their control sockets. Without ``ipvsadm_shim``
    (kernel IPVS) the plain ``ipvsadm`` is the system's own, for the host's own IPVS."""
    shims = run_dir / "bin"
    shims.mkdir(exist_ok=True)
    python = child_python()
    cli = Path(python).parent / "lvs-testbed"
    if ipvsadm_shim:
        shim = shims / "ipvsadm"
        shim.write_text(f'#!/bin/sh\nexec "{python}" -m testbed ipvsadm "$@"\n')
        shim.chmod(0o755)
    path = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p]
    for bindir in (str(cli.parent), str(shims)):
        if bindir not in path:
            path.insert(0, bindir)
    os.environ["PATH"] = os.pathsep.join(path)
    os.environ["LVS_TESTBED_RUN_DIR"] = str(run_dir)


@functools.cache
def _kernel_has_ipip() -> bool:
    from testbed.traffic.ipipd import kernel_has_ipip

    return kernel_has_ipip()


def generated_keepalived_conf(plan: Plan, name: str) -> str:
    """The keepalived.conf ``up`` uses for director ``name`` of a NAT layout."""
    from testbed.keepalived_conf import render_config
    from testbed.keepalived_conf.model import LvsSyncDaemon
    from testbed.net.daemon_configs import INNER_INSTANCE, nat_pair_config

    p = plan.params
    config = nat_pair_config(plan, name, advert_int_s=p.advert_int_s, version=p.vrrp_version)
    if plan.kernel_ipvs and p.ha == "keepalived" and p.conn_sync:
        # keepalived runs the kernel's sync daemon itself (master while VI_INNER is), over
        # the inner NIC; with the Python director, the director syncs (--sync-iface).
        inner = plan.node(name).intfs[-1].name
        config.global_defs = dataclasses.replace(
            config.global_defs, lvs_sync_daemon=LvsSyncDaemon(inner, INNER_INSTANCE, 1)
        )
    return render_config(config)


def _free_port(start: int = 6653) -> int:
    """The first port from ``start`` nothing listens on (OpenFlow's is 6653)."""
    import socket

    for port in range(start, start + 200):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise RuntimeError("no free TCP port for the OpenFlow controller near 6653")


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _index_of(run_dir: Path, name: str, kind: str, pid: int) -> bool:
    """Whether the daemon ``pid`` has written its index (a killed predecessor's may linger)."""
    try:
        return json.loads((run_dir / f"{name}.{kind}.json").read_text()).get("pid") == pid
    except (FileNotFoundError, json.JSONDecodeError):
        return False


# Daemons start in about a second here, but a Python process under software emulation (the
# full-kernel runner without KVM) takes ten times that: the bound only matters on failure.
START_TIMEOUT_S = 60.0


def _wait_for(
    ready, what: str, log: Path | None = None, timeout_s: float = START_TIMEOUT_S
) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():
        if time.monotonic() > deadline:
            tail = log.read_text()[-500:] if log is not None and log.exists() else ""
            raise RuntimeError(f"{what} did not start within {timeout_s:g} s. {tail}".strip())
        time.sleep(0.05)
