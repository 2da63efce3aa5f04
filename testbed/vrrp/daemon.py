"""The VRRP speaker: keepalived's VRRP process for the testbed's directors.

What it is for: running the ``vrrp_instance`` and ``vrrp_sync_group`` blocks of a
keepalived.conf inside a director's network namespace (``lvs-testbed vrrp run --config
FILE``), wire-compatible with keepalived 2.2.7, and, when the file has ``virtual_server``
blocks, keepalived's checker beside it (``checker.py``, in its own thread). One thread runs
VRRP: it waits in ``select`` on the advert sockets and the control socket until the soonest
timer, then :meth:`VrrpDaemon.step` reads what arrived, polls links and scripts and fires
the state machines' timers. The state machines (``state.py``) decide; the daemon carries out
their actions:

* ``SendAdvert``: :func:`packet.encode` with the instance's primary address as source, to
  224.0.0.18 or to each ``unicast_peer``, over the interface's raw socket.
* ``AddVips``/``RemoveVips``: ``ip addr add|del ADDR/PREFIX dev DEV [brd B] [scope S]
  [label L]`` (no prefix written is keepalived's /32).
* ``SendGarp``: ``count`` gratuitous ARPs for each VIP, in keepalived's order (the whole
  VIP list, ``count`` times), on the VIP's interface.
* ``AddVips``/``RemoveVips`` also add the instance's ``virtual_routes`` and
  ``virtual_rules`` after its VIPs (``ip route add``, ``ip rule add``) and remove them before
  (rules, then routes), as keepalived's vrrp_state_become_master()/leave_master() do.
* ``Notify``: ``notify_<state>`` as written, then ``notify`` with keepalived's four
  arguments ``INSTANCE|GROUP NAME MASTER|BACKUP|FAULT|STOP PRIORITY`` (0 for a group).
  Scripts never block the loop; their output goes to the daemon's log; at shutdown, STOP
  scripts get a second to finish, as in keepalived.

Scripts (notify and ``vrrp_script``) are prepared once at start as keepalived does
(`testbed.runtime.scripts`): they run as their user (``keepalived_script`` or
``script_user`` by default), and one that is missing, not executable, or unsafe with
``enable_script_security`` is disabled with a warning; a disabled track script is dropped
from the instances that track it.

``static_ipaddress``, ``static_routes`` and ``static_rules`` are put in place at start and
removed at shutdown. With ``check_unicast_src`` (or global ``vrrp_check_unicast_src``) an
advert whose source is not one of the ``unicast_peer`` addresses is dropped (``NOT_A_PEER``).

Received datagrams go through :func:`packet.parse_ipv4` (TTL, lengths, checksums, from the
IP header the raw socket delivers), are dispatched by VRID to the instance on that socket
and checked with :func:`packet.validate`. Drops are counted per instance by reason and in
three buckets: ``malformed`` and ``other_vrid`` (seen on the instance's socket, so shared by
the instances on one interface) and ``misconfigured`` (an advert for this VRID that
disagrees with our configuration: password, interval, addresses, version, TTL).

Tracking: ``track_interface`` and each instance's own interface by polling
``/sys/class/net/<if>/operstate`` every 0.1 s; ``vrrp_script`` by running the script every
``interval`` (killed after ``timeout``, default the interval) with rise/fall
(``state.ScriptStatus``).

SIGTERM or SIGINT (or the ``shutdown`` control op): every instance stops as the state
machine does it (a master sends priority 0 and removes its VIPs), STOP notifies run, the
checker removes its services, exit 0. Control ops: ``status``, ``shutdown`` and
``fault-test`` (``{"interface": IF, "up": false|true|null}`` overrides what the link
poll reads, so a test can fail an instance over without touching the link).

What it is not: IPv6, VMACs, IPsec AH, ``vrrp_track_file``/``track_process``/BFD,
``garp_interval`` (GARPs of a burst go out back to back, keepalived's default), netlink
(links are polled), or config reload. It does not remove VIPs left behind by a daemon that
was killed with SIGKILL (neither does keepalived).

Everything that touches the system goes through :class:`Host` (``transport.LinuxHost`` for
real; fakes in the unit tests), and time through the injected clocks, so the whole daemon is
tested without root.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import select
import shlex
import signal
import sys
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path
from typing import Protocol

from testbed.check import lvsconfig
from testbed.check.checker import LOG as CHECK_LOG
from testbed.check.checker import (
    CheckerThread,
    HealthChecker,
    check_scripts,
    director_ipvsadm,
    kernel_ipvsadm,
    policy_of,
)
from testbed.check.checker import validate as validate_checks
from testbed.keepalived_conf import load_config
from testbed.keepalived_conf.ifmap import rename_interfaces
from testbed.keepalived_conf.model import (
    NOTIFY_KEYWORDS,
    Config,
    ConfigWarning,
    Route,
    Rule,
    Script,
    VirtualAddress,
    VrrpInstance,
    VrrpScript,
)
from testbed.runtime.control import (
    ControlServer,
    DaemonKind,
    check_request,
    error_reply,
    socket_path,
    write_index,
)
from testbed.runtime.scripts import (
    Child,
    LinuxScriptSystem,
    Preparation,
    PreparedScript,
    RunningScripts,
    ScriptPolicy,
    prepare,
)

from .packet import VRRP_MCAST_GROUP, Advert, DropReason, Expected, encode, parse_ipv4, validate
from .state import (
    Action,
    AddVips,
    InstanceParams,
    Notify,
    RemoveVips,
    ScriptStatus,
    SendAdvert,
    SendGarp,
    State,
    SyncGroup,
    VrrpMachine,
)
from .transport import LinuxHost

LOG = logging.getLogger("testbed.vrrp")
CONTROL = DaemonKind(
    "vrrp",
    "VRRP daemon",
    "start one on a director host with `lvs-testbed vrrp run --config FILE`",
    "Run the command on a director host (e.g. `d1 lvs-testbed vrrp status` in the Mininet "
    "CLI) or pass --name NAME",
)
LINK_POLL_S = 0.1
CHILD_POLL_S = 0.1
STOP_SCRIPTS_WAIT_S = 1.0  # keepalived gives STOP notify scripts TIMER_HZ
MAX_SLEEP_S = 1.0
MAX_DATAGRAMS_PER_WAKE = 64
TRANSITIONS_KEPT = 50
CONTROL_CLIENT_TIMEOUT_S = 0.2  # a stuck control client must not delay adverts
CONTROL_SCHEMAS = {
    "status": {},
    "shutdown": {},
    "fault-test": {"interface": ("str", True), "up": ("bool?", False)},
}
"""The control operations and their fields (runtime.control.check_request)."""
_ANY_ADDRESS = IPv4Address("192.0.2.1")  # stands in for an interface address in checks


class DaemonError(Exception):
    """The configuration cannot run here (e.g. an interface without an address)."""


# ------------------------------------------------------- what the daemon needs from its host


class VrrpTransport(Protocol):
    """A raw protocol-112 socket on one interface (``transport.RawVrrpSocket``)."""

    def fileno(self) -> int: ...

    def send(self, payload: bytes, src: IPv4Address, dst: IPv4Address) -> None: ...

    def recv(self) -> bytes | None: ...

    def close(self) -> None: ...


class Host(Protocol):
    """The system the daemon acts on (``transport.LinuxHost``)."""

    def open_vrrp_socket(
        self, ifname: str, primary: IPv4Address, multicast: bool
    ) -> VrrpTransport: ...

    def primary_address(
        self, ifname: str, exclude: frozenset[IPv4Address]
    ) -> IPv4Address | None: ...

    def link_up(self, ifname: str) -> bool: ...

    def ip(self, argv: list[str]) -> tuple[int, str]: ...

    def send_garp(self, ifname: str, address: IPv4Address) -> None: ...

    def prepare_script(self, script: Script, policy: ScriptPolicy) -> Preparation: ...

    def spawn(self, prepared: PreparedScript, extra: Sequence[str], quiet: bool) -> Child: ...

    def close(self) -> None: ...


# ------------------------------------------------------------------------ pure helpers


def route_argv(op: str, route: Route) -> list[str]:
    """``ip route add|append|del ...`` arguments for one virtual or static route."""
    verb = "append" if op == "add" and route.append else op
    return ["route", verb, *route.argv]


def rule_argv(op: str, rule: Rule) -> list[str]:
    return ["rule", op, *rule.argv]


def without_track_scripts(config: Config, names: set[str]) -> Config:
    """``config`` with the track scripts ``names`` dropped from every instance (keepalived
    drops a disabled track script from the instances tracking it)."""
    if not names:
        return config
    instances = {
        name: dataclasses.replace(
            inst, track_scripts=[t for t in inst.track_scripts if t.name not in names]
        )
        for name, inst in config.instances.items()
    }
    scripts = {k: v for k, v in config.scripts.items() if k not in names}
    return dataclasses.replace(config, instances=instances, scripts=scripts)


def vip_argv(op: str, vip: VirtualAddress, default_dev: str) -> list[str]:
    """``ip`` arguments to add or delete one VIP (no prefix: keepalived's /32)."""
    prefix = 32 if vip.prefix_len is None else vip.prefix_len
    argv = ["addr", op, f"{vip.address}/{prefix}", "dev", vip.dev or default_dev]
    if op == "add":
        if vip.brd is not None:
            argv += ["brd", str(vip.brd)]
        if vip.scope is not None:
            argv += ["scope", vip.scope]
        if vip.label is not None:
            argv += ["label", vip.label]
    return argv


def drop_bucket(reason: DropReason) -> str:
    """malformed, other_vrid or misconfigured (see ``DropReason.is_malformed``)."""
    if reason.is_malformed:
        return "malformed"
    if reason is DropReason.OTHER_VRID:
        return "other_vrid"
    return "misconfigured"


_DROP_HINTS = {
    DropReason.AUTH_MISMATCH: "authentication differs from ours",
    DropReason.INTERVAL_MISMATCH: "advert_int differs from ours",
    DropReason.ADDRESS_MISMATCH: "virtual_ipaddress list differs from ours",
    DropReason.BAD_TTL: "TTL is not 255 (sent through a router?)",
    DropReason.BAD_VERSION: "VRRP version differs from ours",
}


# ----------------------------------------------------------------------------- records


@dataclass(frozen=True)
class Transition:
    previous: str
    state: str
    monotonic_s: float
    wall_s: float

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class Counters:
    adverts_sent: int = 0
    adverts_received: int = 0
    send_errors: int = 0
    garps_sent: int = 0
    drops: Counter[str] = field(default_factory=Counter)  # by DropReason name

    def buckets(self) -> dict[str, int]:
        totals = {"malformed": 0, "other_vrid": 0, "misconfigured": 0}
        for reason, count in self.drops.items():
            totals[drop_bucket(DropReason[reason])] += count
        return totals


@dataclass
class _Socket:
    ifname: str
    multicast: bool
    transport: VrrpTransport
    by_vrid: dict[int, _Instance] = field(default_factory=dict)


@dataclass
class _Instance:
    config: VrrpInstance
    params: InstanceParams
    machine: VrrpMachine
    socket: _Socket
    expected: Expected
    destinations: tuple[IPv4Address, ...]
    group: str | None = None
    counters: Counters = field(default_factory=Counters)
    state_name: str = "INIT"
    transitions: deque[Transition] = field(default_factory=lambda: deque(maxlen=TRANSITIONS_KEPT))
    last_advert: tuple[IPv4Address, int] | None = None  # source and priority

    @property
    def name(self) -> str:
        return self.params.name

    def count_drop(self, reason: DropReason, src: IPv4Address | None) -> None:
        self.counters.drops[reason.name] += 1
        if self.counters.drops[reason.name] == 1:  # the first of each kind, then counters
            LOG.warning(
                "(%s) dropped an advert%s: %s%s",
                self.name,
                f" from {src}" if src else "",
                reason.name,
                f" ({_DROP_HINTS[reason]})" if reason in _DROP_HINTS else "",
            )


@dataclass
class _Script:
    config: VrrpScript
    status: ScriptStatus
    prepared: PreparedScript
    users: list[_Instance] = field(default_factory=list)
    next_run_s: float = 0.0
    child: Child | None = None
    started_s: float = 0.0

    @property
    def timeout_s(self) -> float:
        return (
            self.config.timeout_s if self.config.timeout_s is not None else self.config.interval_s
        )


# ------------------------------------------------------------------------------ daemon


class VrrpDaemon:
    """All vrrp_instances of one configuration on one host; see the module docstring.

    Tests drive :meth:`start`, :meth:`step` (with the time), :meth:`handle_request` and
    :meth:`shutdown`; :meth:`run` is the real loop around them.
    """

    def __init__(
        self,
        config: Config,
        host: Host,
        *,
        name: str,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        link_poll_s: float = LINK_POLL_S,
    ) -> None:
        self.config = config
        self.host = host
        self.name = name
        self.clock = clock
        self.wall = wall
        self.link_poll_s = link_poll_s
        self.checker: CheckerThread | None = None  # its status joins ours (run_daemon sets it)
        self.running = True  # until stop(): a SIGTERM before run() must not be lost
        self.control: ControlServer | None = None
        self._index: Path | None = None
        self._wake: tuple[int, int] | None = None
        self._now = clock()
        self._started = self._stopped = False
        self._sockets: dict[tuple[str, bool], _Socket] = {}
        self._instances: dict[str, _Instance] = {}
        self._groups: dict[str, SyncGroup] = {}
        self._group_states: dict[str, str] = {}
        self._scripts: dict[str, _Script] = {}
        self._links: dict[str, bool | None] = {}
        self._link_overrides: dict[str, bool] = {}
        self._next_link_poll_s = 0.0
        self._children = RunningScripts(LOG)
        self._prepared: dict[Script, PreparedScript | None] = {}
        self.warnings: list[str] = []  # scripts disabled or unsafe (run_daemon logs them)
        try:
            self._prepare_scripts()
            self._build()
        except BaseException:
            self.close()
            raise

    # ----- setup

    def _prepare_scripts(self) -> None:
        """Every notify and track script checked once, as keepalived does at start."""
        policy = policy_of(self.config)
        for script, what in vrrp_scripts(self.config):
            if script not in self._prepared:
                outcome = self.host.prepare_script(script, policy)
                self._prepared[script] = outcome.script
                self.warnings += [f"{what}: {m}" for m in outcome.warnings]
        disabled = {
            name
            for name, vscript in self.config.scripts.items()
            if self._prepared.get(vscript.as_script) is None
        }
        for name in sorted(disabled):
            self.warnings.append(f"Disabling track script {name}: it cannot run (see above)")
        self.config = without_track_scripts(self.config, disabled)

    def _build(self) -> None:
        for name, inst in self.config.instances.items():
            if inst.interface is None:
                raise DaemonError(f"vrrp_instance {name} has no interface")
            vips = frozenset(v.address for v in inst.virtual_ipaddresses)
            primary = inst.unicast_src_ip or self.host.primary_address(inst.interface, vips)
            if primary is None:
                raise DaemonError(
                    f"vrrp_instance {name}: interface {inst.interface} does not exist or has no "
                    "IPv4 address"
                )
            try:
                params = InstanceParams.from_config(self.config, name, primary)
            except ValueError as exc:
                raise DaemonError(str(exc)) from exc
            sock = self._socket(inst.interface, primary, multicast=not params.unicast_peers)
            if params.vrid in sock.by_vrid:
                raise DaemonError(
                    f"vrrp_instance {name}: VRID {params.vrid} is already used on "
                    f"{inst.interface} by {sock.by_vrid[params.vrid].name}"
                )
            group = self.config.sync_group_of(name)
            runtime = _Instance(
                config=inst,
                params=params,
                machine=VrrpMachine(params, self._emit),
                socket=sock,
                expected=params.expected(inst.check_unicast_src),
                destinations=params.unicast_peers or (VRRP_MCAST_GROUP,),
                group=group.name if group else None,
            )
            sock.by_vrid[params.vrid] = runtime
            self._instances[name] = runtime
            for ifname in (inst.interface, *(t.name for t in inst.track_interfaces)):
                self._links[ifname] = None
            for tracked in inst.track_scripts:
                script = self.config.scripts[tracked.name]
                if tracked.name not in self._scripts:
                    status = ScriptStatus(script.rise, script.fall, script.init_fail)
                    prepared = self._prepared[script.as_script]
                    assert prepared is not None  # disabled ones were dropped above
                    self._scripts[tracked.name] = _Script(script, status, prepared)
                self._scripts[tracked.name].users.append(runtime)
        for group in self.config.sync_groups.values():
            members = [self._instances[m].machine for m in group.group]
            self._groups[group.name] = SyncGroup(group.name, members, self._emit)
            self._group_states[group.name] = "INIT"

    def _socket(self, ifname: str, primary: IPv4Address, multicast: bool) -> _Socket:
        key = (ifname, multicast)
        if key not in self._sockets:
            transport = self.host.open_vrrp_socket(ifname, primary, multicast)
            self._sockets[key] = _Socket(ifname, multicast, transport)
        return self._sockets[key]

    # ----- lifecycle

    def start(self, now: float) -> None:
        """RFC Initialize: static addresses, routes and rules, links read, scripts' initial
        states, every instance started."""
        self._now = now
        self._static("add")
        self._poll_links(now)
        for name, script in self._scripts.items():
            if script.status.ok is not None:  # init_fail
                for user in script.users:
                    user.machine.track_script(name, script.status.ok, now)
            script.next_run_s = now
        for group in self._groups.values():
            group.start(now)
        for inst in self._instances.values():
            if inst.group is None:
                inst.machine.start(now)
        self._next_link_poll_s = now + self.link_poll_s
        self._started = True

    def step(self, now: float) -> float | None:
        """Read what arrived, poll links, scripts and children, fire timers.

        Returns when to step again at the latest (None: nothing is scheduled).
        """
        self._now = now
        for sock in self._sockets.values():
            self._drain(sock, now)
        if self._links and now >= self._next_link_poll_s:
            self._poll_links(now)
            self._next_link_poll_s = now + self.link_poll_s
        self._poll_scripts(now)
        self._children.reap()
        for inst in self._instances.values():
            inst.machine.poll(now)
        return self._next_deadline(now)

    def _next_deadline(self, now: float) -> float | None:
        deadlines = [
            d for d in (i.machine.next_deadline for i in self._instances.values()) if d is not None
        ]
        if self._links:
            deadlines.append(self._next_link_poll_s)
        for script in self._scripts.values():
            if script.child is None:
                deadlines.append(script.next_run_s)
            else:
                deadlines.append(min(script.started_s + script.timeout_s, now + CHILD_POLL_S))
        if self._children:
            deadlines.append(now + CHILD_POLL_S)
        return min(deadlines, default=None)

    def shutdown(self, now: float) -> None:
        """Stop every instance (priority 0 from a master, VIPs removed), STOP notifies,
        static addresses, routes and rules removed."""
        if not self._started or self._stopped:
            return
        self._stopped = True
        self._now = now
        LOG.info("Stopping")
        for group in self._groups.values():
            group.shutdown(now)
        for inst in self._instances.values():
            if inst.group is None:
                inst.machine.shutdown(now)
        for name in self._groups:
            self._emit(Notify("GROUP", name, "STOP", 0))  # keepalived's notify_shutdown()
        for script in self._scripts.values():
            if script.child is not None:
                script.child.kill()
                script.child = None
        self._static("del")

    def wait_for_children(self, timeout_s: float) -> None:
        """Give running notify scripts ``timeout_s`` to finish, then kill them."""
        self._children.wait(timeout_s)

    def close(self) -> None:
        for sock in self._sockets.values():
            sock.transport.close()
        self._sockets.clear()
        self.host.close()
        if self.control is not None:
            self.control.close()
            self.control = None
        if self._index is not None and self._index.exists():
            self._index.unlink()
        if self._wake is not None:
            wake, self._wake = self._wake, None  # first, so a late stop() leaves it alone
            for fd in wake:
                os.close(fd)

    # ----- receiving

    def _drain(self, sock: _Socket, now: float) -> None:
        for _ in range(MAX_DATAGRAMS_PER_WAKE):
            try:
                data = sock.transport.recv()
            except OSError as exc:
                LOG.warning("reading adverts on %s: %s", sock.ifname, exc)
                return
            if data is None:
                return
            self._receive(sock, data, now)

    def _receive(self, sock: _Socket, data: bytes, now: float) -> None:
        parsed = parse_ipv4(data)
        if isinstance(parsed, DropReason):
            for inst in sock.by_vrid.values():
                inst.count_drop(parsed, None)
            return
        inst = sock.by_vrid.get(parsed.vrid)
        if inst is None:
            for other in sock.by_vrid.values():
                other.count_drop(DropReason.OTHER_VRID, parsed.src)
            return
        if parsed.src == inst.params.primary_ip:
            return  # our own advert (the kernel should not loop it back)
        verdict = validate(parsed, inst.expected)
        if isinstance(verdict, DropReason):
            inst.count_drop(verdict, parsed.src)
            return
        inst.counters.adverts_received += 1
        assert verdict.src is not None  # parse_ipv4 fills it in
        inst.last_advert = (verdict.src, verdict.priority)
        inst.machine.on_advert(verdict, verdict.src, now)

    # ----- links and scripts

    def _poll_links(self, now: float) -> None:
        for ifname, before in self._links.items():
            up = self._link_overrides.get(ifname)
            if up is None:
                up = self.host.link_up(ifname)
            if up == before:
                continue
            self._links[ifname] = up
            if before is not None or not up:
                LOG.info("Kernel is reporting: interface %s %s", ifname, "UP" if up else "DOWN")
            for inst in self._instances.values():
                inst.machine.track_interface(ifname, up, now)

    def _poll_scripts(self, now: float) -> None:
        for name, script in self._scripts.items():
            if script.child is not None:
                rc = script.child.poll()
                if rc is None and now - script.started_s < script.timeout_s:
                    continue
                if rc is None:
                    script.child.kill()
                    LOG.warning("VRRP_Script(%s) timed out after %.1f s", name, script.timeout_s)
                script.child = None
                self._script_result(name, script, rc == 0, now)
            if now >= script.next_run_s:
                script.next_run_s = now + script.config.interval_s
                try:
                    script.child = self.host.spawn(script.prepared, (), quiet=True)
                    script.started_s = now
                except OSError as exc:
                    LOG.warning("VRRP_Script(%s) cannot run: %s", name, exc)
                    self._script_result(name, script, False, now)

    def _script_result(self, name: str, script: _Script, ok: bool, now: float) -> None:
        if not script.status.record(ok):
            return
        LOG.info("VRRP_Script(%s) %s", name, "succeeded" if script.status.ok else "failed")
        for user in script.users:
            user.machine.track_script(name, bool(script.status.ok), now)

    # ----- actions

    def _emit(self, action: Action) -> None:
        if isinstance(action, Notify):
            self._notify(action)
            return
        inst = self._instances[action.instance]
        if isinstance(action, SendAdvert):
            self._send_advert(inst, action.advert)
        elif isinstance(action, AddVips):
            LOG.info("(%s) setting VIPs", inst.name)
            for vip in action.vips:
                self._vip(inst, "add", vip)
            self._routes_and_rules(inst.name, inst.config, "add")
        elif isinstance(action, RemoveVips):
            self._routes_and_rules(inst.name, inst.config, "del")
            LOG.info("(%s) removing VIPs", inst.name)
            for vip in action.vips:
                self._vip(inst, "del", vip)
        elif isinstance(action, SendGarp):
            self._garp(inst, action)

    def _send_advert(self, inst: _Instance, advert: Advert) -> None:
        src = inst.params.primary_ip
        for dst in inst.destinations:
            try:
                inst.socket.transport.send(encode(advert, src, dst), src, dst)
            except OSError as exc:
                inst.counters.send_errors += 1
                LOG.warning("(%s) cannot send an advert to %s: %s", inst.name, dst, exc)
            else:
                inst.counters.adverts_sent += 1

    def _vip(self, inst: _Instance, op: str, vip: VirtualAddress) -> None:
        argv = vip_argv(op, vip, inst.params.interface or "")
        rc, err = self.host.ip(argv)
        if rc == 0:
            return
        if op == "add" and "File exists" in err:
            LOG.info("(%s) %s was already present", inst.name, argv[2])
        elif op == "del" and "Cannot assign requested address" in err:
            LOG.info("(%s) %s was already gone", inst.name, argv[2])
        else:
            LOG.error("(%s) ip %s failed: %s", inst.name, shlex.join(argv), err)

    def _routes_and_rules(self, who: str, inst: VrrpInstance, op: str) -> None:
        """keepalived: routes, then rules, after the VIPs; rules, then routes, before."""
        routes = [route_argv(op, r) for r in inst.virtual_routes]
        rules = [rule_argv(op, r) for r in inst.virtual_rules]
        for argv in routes + rules if op == "add" else rules + routes:
            self._ip_quietly(who, argv)

    def _ip_quietly(self, who: str, argv: list[str]) -> None:
        """``ip`` for a route, rule or static address; what is already so is only noted."""
        rc, err = self.host.ip(argv)
        if rc == 0:
            return
        if "File exists" in err or "No such process" in err or "Cannot assign" in err:
            LOG.info("(%s) ip %s: %s", who, shlex.join(argv), err)
        else:
            LOG.error("(%s) ip %s failed: %s", who, shlex.join(argv), err)

    def _static(self, op: str) -> None:
        """static_ipaddress, static_routes and static_rules: added at start (addresses
        first), removed at shutdown (rules first), as keepalived's vrrp_daemon.c does."""
        default_dev = self.config.global_defs.default_interface or "eth0"
        addresses = [vip_argv(op, a, default_dev) for a in self.config.static_addresses]
        routes = [route_argv(op, r) for r in self.config.static_routes]
        rules = [rule_argv(op, r) for r in self.config.static_rules]
        for argv in addresses + routes + rules if op == "add" else rules + routes + addresses:
            self._ip_quietly("static", argv)

    def _garp(self, inst: _Instance, action: SendGarp) -> None:
        devs = sorted({vip.dev or inst.params.interface or "" for vip in action.vips})
        LOG.info(
            "(%s) Sending %d gratuitous ARPs on %s for %s",
            inst.name,
            action.count,
            ", ".join(devs),
            ", ".join(str(v.address) for v in action.vips),
        )
        for _ in range(action.count):
            for vip in action.vips:
                dev = vip.dev or inst.params.interface or ""
                try:
                    self.host.send_garp(dev, vip.address)
                except OSError as exc:
                    LOG.warning("(%s) gratuitous ARP on %s failed: %s", inst.name, dev, exc)
                    return
                inst.counters.garps_sent += 1

    def _notify(self, note: Notify) -> None:
        if note.kind == "INSTANCE":
            inst = self._instances[note.name]
            previous, inst.state_name = inst.state_name, note.state
            if note.state == "BACKUP" and previous in ("INIT", "FAULT", "STOP"):
                inst.machine.master_ip = None  # a master seen before a fault is stale
            inst.transitions.append(Transition(previous, note.state, self._now, self.wall()))
            LOG.info("(%s) Entering %s STATE", note.name, note.state)
            scripts = inst.config
        else:
            self._group_states[note.name] = note.state
            LOG.info("VRRP_Group(%s) Syncing instances to %s state", note.name, note.state)
            scripts = self.config.sync_groups[note.name]
        specific = getattr(scripts, f"notify_{note.state.lower()}", None)
        if specific:
            self._run_notify(specific, ())
        if scripts.notify:
            self._run_notify(scripts.notify, (note.kind, note.name, note.state, str(note.priority)))

    def _run_notify(self, script: Script, extra: tuple[str, ...]) -> None:
        prepared = self._prepared.get(script)
        if prepared is None:
            return  # disabled at start (the warning said why)
        what = f"notify script {shlex.join(prepared.argv(extra))}"
        try:
            child = self.host.spawn(prepared, extra, quiet=False)
        except OSError as exc:
            LOG.error("cannot run %s: %s", what, exc)
            return
        LOG.info("running %s", what)
        self._children.add(child, what)

    # ----- control

    def handle_request(self, message: dict) -> dict:
        """The control ops: ``status``, ``shutdown``, ``fault-test`` (checked against
        CONTROL_SCHEMAS first: a malformed request is answered, never raised)."""
        problem = check_request(message, CONTROL_SCHEMAS)
        if problem is not None:
            return error_reply(f"bad control request: {problem}")
        op = message.get("op")
        if op == "status":
            return {"rc": 0, "status": self.status()}
        if op == "shutdown":
            self.stop()
            return {"rc": 0, "out": f"{self.name}: shutting down\n", "err": ""}
        if op == "fault-test":
            ifname = message.get("interface")
            up = message.get("up")
            if not isinstance(ifname, str) or ifname not in self._links:
                tracked = ", ".join(sorted(self._links)) or "none"
                return {
                    "rc": 2,
                    "out": "",
                    "err": f"{ifname!r} is not tracked (tracked: {tracked})\n",
                }
            if up is not None and not isinstance(up, bool):
                return {"rc": 2, "out": "", "err": "'up' is true, false or null\n"}
            if up is None:
                self._link_overrides.pop(ifname, None)
            else:
                self._link_overrides[ifname] = bool(up)
            self._now = self.clock()
            self._poll_links(self._now)
            return {"rc": 0, "status": self.status()}
        return {"rc": 2, "out": "", "err": f"unknown control operation {op!r}\n"}

    def status(self) -> dict:
        return {
            "name": self.name,
            "pid": os.getpid(),
            "monotonic_s": self._now,
            "wall_s": self.wall(),
            "instances": [self._instance_status(i) for i in self._instances.values()],
            "groups": [
                {
                    "name": name,
                    "state": self._group_states[name],
                    "members": list(self.config.sync_groups[name].group),
                }
                for name in self._groups
            ],
            "links": dict(self._links),
            "link_overrides": dict(self._link_overrides),
            "scripts": {
                name: {"ok": s.status.ok, "running": s.child is not None}
                for name, s in self._scripts.items()
            },
            "virtual_servers": self.checker.status() if self.checker is not None else [],
        }

    def _instance_status(self, inst: _Instance) -> dict:
        m, p, c = inst.machine, inst.params, inst.counters
        master = m.master_ip if m.state in (State.MASTER, State.BACKUP) else None
        return {
            "name": inst.name,
            "interface": p.interface,
            "vrid": p.vrid,
            "version": p.version,
            "advert_int_s": p.advert_int_cs / 100,
            "state": m.state.value,
            "priority": p.priority,
            "effective_priority": m.effective_priority,
            "master": str(master) if master is not None else None,
            "primary_ip": str(p.primary_ip),
            "unicast_peers": [str(a) for a in p.unicast_peers],
            "vips": [f"{v.address}/{32 if v.prefix_len is None else v.prefix_len}" for v in p.vips],
            "sync_group": inst.group,
            "adverts_received": c.adverts_received,
            "adverts_sent": c.adverts_sent,
            "send_errors": c.send_errors,
            "garps_sent": c.garps_sent,
            "drops": c.buckets(),
            "drop_reasons": dict(c.drops),
            "last_advert": None
            if inst.last_advert is None
            else {"from": str(inst.last_advert[0]), "priority": inst.last_advert[1]},
            "transitions": [t.as_dict() for t in inst.transitions],
            "tracked_interfaces": {
                t: self._links.get(t) for t in (p.interface, *(x.name for x in p.track_interfaces))
            },
            "tracked_scripts": {t.name: self._scripts[t.name].status.ok for t in p.track_scripts},
        }

    # ----- the real loop

    def serve_control(self, run_dir: Path) -> Path:
        """Open ``<run_dir>/<name>.vrrp.sock`` and its index file; returns the socket path."""
        run_dir.mkdir(parents=True, exist_ok=True)
        path = socket_path(run_dir, self.name, CONTROL.kind)
        self.control = ControlServer(path, client_timeout_s=CONTROL_CLIENT_TIMEOUT_S)
        self._index = write_index(run_dir, self.name, os.getpid(), CONTROL.kind)
        return path

    def stop(self, *_signal_args: object) -> None:
        """Ask :meth:`run` to shut down (safe in a signal handler)."""
        self.running = False
        if self._wake is not None:
            try:
                os.write(self._wake[1], b"\0")
            except OSError:
                pass  # full (the loop wakes anyway) or already closed

    def run(self) -> None:
        """Start, serve until :meth:`stop`, shut down; the caller closes."""
        self._wake = os.pipe()
        for fd in self._wake:
            os.set_blocking(fd, False)
        self.start(self.clock())
        waitables: list = [s.transport for s in self._sockets.values()] + [self._wake[0]]
        if self.control is not None:
            waitables.append(self.control)
        try:
            while self.running:
                deadline = self.step(self.clock())
                timeout_s = MAX_SLEEP_S
                if deadline is not None:
                    timeout_s = min(MAX_SLEEP_S, max(0.0, deadline - self.clock()))
                readable, _, _ = select.select(waitables, [], [], timeout_s)
                if self.control is not None and self.control in readable:
                    self._now = self.clock()
                    self.control.serve_one(self.handle_request)
                if self._wake[0] in readable:
                    try:
                        os.read(self._wake[0], 4096)
                    except BlockingIOError:
                        pass
        finally:  # also after a bug: a master still says priority 0 and drops its VIPs
            self.shutdown(self.clock())
            self.wait_for_children(STOP_SCRIPTS_WAIT_S)


# ------------------------------------------------------------------------- entry point


def default_name(config: Config) -> str:
    """global_defs router_id, else the host part of the first interface (``d1-eth0``: d1)."""
    if config.global_defs.router_id:
        return config.global_defs.router_id
    for inst in config.instances.values():
        if inst.interface:
            return inst.interface.split("-")[0]
    return "vrrp"


def vrrp_scripts(config: Config) -> list[tuple[Script, str]]:
    """Every script of the VRRP side, with what it is for (for warnings)."""
    out: list[tuple[Script, str]] = []
    for kind, objects in (
        ("vrrp_instance", config.instances),
        ("vrrp_sync_group", config.sync_groups),
    ):
        for name, obj in objects.items():
            for keyword in NOTIFY_KEYWORDS:
                if (script := getattr(obj, keyword)) is not None:
                    out.append((script, f"{keyword} of {kind} {name}"))
    for name, vscript in config.scripts.items():
        out.append((vscript.as_script, f"vrrp_script {name}"))
    return out


def script_warnings(config: Config) -> list[str]:
    """What keepalived would say about every script of ``config`` on this machine (users,
    paths, permissions); ``check-config`` prints these."""
    policy = policy_of(config)
    system = LinuxScriptSystem()
    out: list[str] = []
    every = vrrp_scripts(config) + check_scripts(config)
    seen: set[Script] = set()
    for script, what in every:
        if script in seen:
            continue
        seen.add(script)
        outcome = prepare(script.command, script.user, script.group, policy, system)
        out += [f"{what}: {message}" for message in outcome.warnings]
    if every and not policy.security:
        out.append(SECURITY_OFF)
    return out


SECURITY_OFF = (
    "scripts are being executed but enable_script_security is not set (keepalived calls this "
    "a SECURITY VIOLATION)"
)


def check_runnable(config: Config) -> None:
    """What ``vrrp run`` refuses beyond parsing, short of looking at the host.

    Raises :class:`DaemonError` (or ``checker.CheckerSetupError``); ``check-config`` uses it.
    """
    for name, inst in config.instances.items():
        if inst.interface is None:
            raise DaemonError(f"vrrp_instance {name} has no interface")
        try:
            InstanceParams.from_config(config, name, inst.unicast_src_ip or _ANY_ADDRESS)
        except ValueError as exc:
            raise DaemonError(str(exc)) from exc
    validate_checks(config)


def print_warnings(config_path: str, warnings: Sequence[ConfigWarning], config: Config) -> int:
    """Config warnings as ``file:line: warning: ...``, then what the director will refuse.

    Returns how many were printed.
    """
    for warning in warnings:
        print(f"{warning.file}:{warning.line}: warning: {warning.message}", file=sys.stderr)
    director = lvsconfig.director_warnings(config)
    for message in director:
        print(f"{config_path}: warning: {message}", file=sys.stderr)
    return len(warnings) + len(director)


def run_daemon(
    config_path: str,
    *,
    name: str | None = None,
    director: str | None = None,
    vrrp: bool = True,
    check: bool = True,
    release_ipvs: bool = True,
    run_dir: Path | None = None,
    config_id: str | None = None,
    iface_map: dict[str, str] | None = None,
    kernel_ipvs: bool = False,
) -> int:
    """``lvs-testbed vrrp run``: load, run until SIGTERM/SIGINT, shut down; the exit status.

    ``config_id`` is keepalived's ``-i`` (which ``@ID`` lines apply); ``iface_map`` renames
    the file's interfaces (``{"eth0": "d1-eth0"}``); with ``kernel_ipvs`` the health checker
    drives the kernel's IPVS with the real ipvsadm instead of the testbed's director. Raises
    ``config.ConfigError``, :class:`DaemonError` and ``checker.CheckerSetupError`` before
    anything has started.
    """
    config, warnings = load_config(config_path, config_id=config_id)
    if iface_map:
        config = rename_interfaces(config, iface_map)
    print_warnings(config_path, warnings, config)
    check_runnable(config)
    if not vrrp:
        config = dataclasses.replace(
            config,
            instances={},
            sync_groups={},
            scripts={},
            static_addresses=[],
            static_routes=[],
            static_rules=[],
        )
    name = name or default_name(config)
    daemon = VrrpDaemon(config, LinuxHost(), name=name)
    log_handler = logging.StreamHandler(sys.stdout)
    log_handler.setFormatter(logging.Formatter(f"%(asctime)s {name} %(levelname)s %(message)s"))
    LOG.addHandler(log_handler)
    LOG.setLevel(logging.INFO)
    CHECK_LOG.addHandler(log_handler)  # the health checker's log joins ours
    CHECK_LOG.setLevel(logging.INFO)
    try:
        script_notes = list(daemon.warnings)
        if check and config.virtual_servers:
            ipvsadm = kernel_ipvsadm() if kernel_ipvs else director_ipvsadm(director)
            health = HealthChecker(config, ipvsadm, release_on_stop=release_ipvs)
            script_notes += health.warnings
            daemon.checker = CheckerThread(health)
        if (vrrp_scripts(config) or check_scripts(config)) and not policy_of(config).security:
            script_notes.append(SECURITY_OFF)
        for note in script_notes:
            LOG.warning("%s", note)
        syncd = config.global_defs.lvs_sync_daemon
        if syncd is not None:
            LOG.info(
                "lvs_sync_daemon %s (sync ID %s): connection sync is run by the director "
                "(`lvs-testbed up` starts it with this interface and ID)",
                syncd.interface,
                config.sync_id(),
            )
        checker = daemon.checker
        run_dir = run_dir or Path(
            os.environ.get("LVS_TESTBED_RUN_DIR", f"/run/lvs-testbed/vrrp-{os.getpid()}")
        )
        path = daemon.serve_control(run_dir)
        signal.signal(signal.SIGTERM, daemon.stop)
        signal.signal(signal.SIGINT, daemon.stop)
        LOG.info(
            "VRRP daemon %s: %d instance(s), %d sync group(s), %d virtual server(s); control %s",
            name,
            len(config.instances),
            len(config.sync_groups),
            len(config.virtual_servers) if checker else 0,
            path,
        )
        if checker is not None:
            checker.start()
        try:
            daemon.run()
        finally:
            if checker is not None:
                checker.stop()
    finally:
        daemon.close()
        LOG.removeHandler(log_handler)
        CHECK_LOG.removeHandler(log_handler)
    return 0
