"""The VRRP state machine (RFC 3768 / RFC 5798 section 6.4) as keepalived 2.2.7 runs it.

What it is for: deciding, from received adverts, timers and tracked interfaces/scripts,
when an instance is Backup, Master or Fault, and what must happen at each transition.
Time and I/O are injected: every entry point takes ``now`` (seconds, from whatever clock
the caller uses, e.g. ``time.monotonic()``), and every effect is an :data:`Action` handed to
the ``emit`` callable given at construction. Nothing here sleeps, opens a socket or touches
an interface, so failover timing is tested with a fake clock.

What it is not: the daemon. The daemon receives packets (``packet.decode`` with
:meth:`InstanceParams.expected`), calls :meth:`VrrpMachine.on_advert`, sleeps until
:meth:`VrrpMachine.poll` says, and carries out the actions: encode and send adverts, add and
remove VIPs, send gratuitous ARPs, run notify scripts. Running ``vrrp_script`` commands is
also the daemon's; :class:`ScriptStatus` is the pure rise/fall part.

States: Initialize, Backup and Master from the RFCs, plus keepalived's Fault for tracked
interfaces and scripts. keepalived behaviours kept (and deviations from the RFC text):

* preempt_delay (keepalived.conf(5)): "Seconds of delay until preemption after getting the
  advertisement timeout at startup or when seeing a lower priority master". A backup keeps
  accepting a lower-priority master's adverts until the delay has passed; it starts at
  :meth:`VrrpMachine.start` and, after a return to Backup, at the first lower-priority advert.
* A master that hears a lower-priority advert answers with an advert and a burst of
  gratuitous ARPs (keepalived's default ``lower_prio_no_advert`` false and
  ``garp_lower_prio_repeat`` = ``garp_master_repeat``); RFC 3768 would just discard it.
* Gratuitous ARP on becoming master: ``garp_master_repeat`` (5) per VIP at once and again
  ``garp_master_delay`` (5 s) later; refresh every ``garp_master_refresh`` (0: off).
* Tracking weights change the effective priority within [1, 254]; the address owner (255)
  keeps 255. Weight 0 means "failed is FAULT". In a sync group, weights are ignored.
* Skew_Time uses the effective priority; for VRRPv2 it is RFC 3768's (256 - Priority) / 256
  seconds, which does not scale with the advert interval (keepalived's VRRP_TIMER_SKEW).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum
from ipaddress import IPv4Address

from testbed.keepalived_conf.model import (
    DEFAULT_GARP_MASTER_DELAY_S,
    DEFAULT_GARP_MASTER_REFRESH_REPEAT,
    DEFAULT_GARP_MASTER_REFRESH_S,
    DEFAULT_GARP_MASTER_REPEAT,
    OWNER_PRIORITY,
    Config,
    VirtualAddress,
)

from .packet import V2_MAX_INTERVAL_S, V3_MAX_INTERVAL_CS, Advert, AuthType, Expected

MAX_BACKUP_PRIORITY = 254
DOWN_TIMER_ADVERTS = 3  # "Master_Down_Interval = (3 * Advertisement_Interval) + Skew_time"
_MAX_INTERVAL_CS = {2: V2_MAX_INTERVAL_S * 100, 3: V3_MAX_INTERVAL_CS}


class State(Enum):
    INIT = "INIT"
    BACKUP = "BACKUP"
    MASTER = "MASTER"
    FAULT = "FAULT"


# ------------------------------------------------------------------------- actions


@dataclass(frozen=True)
class SendAdvert:
    """Encode ``advert`` and send it (to 224.0.0.18, or to each unicast peer)."""

    instance: str
    advert: Advert


@dataclass(frozen=True)
class AddVips:
    instance: str
    vips: tuple[VirtualAddress, ...]


@dataclass(frozen=True)
class RemoveVips:
    instance: str
    vips: tuple[VirtualAddress, ...]


@dataclass(frozen=True)
class SendGarp:
    """One burst: ``count`` gratuitous ARPs for each of ``vips``."""

    instance: str
    vips: tuple[VirtualAddress, ...]
    count: int


@dataclass(frozen=True)
class Notify:
    """Run the notify_<state> script, then ``notify`` with ``kind name state priority``.

    ``kind`` is ``"INSTANCE"`` or ``"GROUP"``; ``state`` is MASTER, BACKUP, FAULT or STOP.
    """

    kind: str
    name: str
    state: str
    priority: int


Action = SendAdvert | AddVips | RemoveVips | SendGarp | Notify
Emit = Callable[[Action], None]


# ---------------------------------------------------------------------- parameters


@dataclass(frozen=True)
class Tracker:
    """A tracked interface or script. Weight 0: failed means FAULT (reverse: OK means FAULT).

    Non-zero weight (keepalived.conf(5)): a positive weight is added while OK, a negative
    one is added while failed; ``reverse`` flips the sign.
    """

    name: str
    weight: int = 0
    reverse: bool = False


@dataclass(frozen=True)
class InstanceParams:
    """Everything the state machine needs to know about one vrrp_instance."""

    name: str
    vrid: int
    primary_ip: IPv4Address  # our advert source; compared on equal priority
    priority: int = 100
    vips: tuple[VirtualAddress, ...] = ()
    version: int = 2
    advert_int_cs: int = 100
    preempt: bool = True
    preempt_delay_s: float = 0.0
    initial_master: bool = False  # ``state MASTER``: only the owner (255) acts on it at once
    auth_type: AuthType = AuthType.NONE
    auth_pass: bytes = b""
    interface: str | None = None  # our own interface: tracked with weight 0
    track_interfaces: tuple[Tracker, ...] = ()
    track_scripts: tuple[Tracker, ...] = ()
    unicast_peers: tuple[IPv4Address, ...] = ()
    garp_master_delay_s: float = DEFAULT_GARP_MASTER_DELAY_S
    garp_master_repeat: int = DEFAULT_GARP_MASTER_REPEAT
    garp_master_refresh_s: float = DEFAULT_GARP_MASTER_REFRESH_S
    garp_master_refresh_repeat: int = DEFAULT_GARP_MASTER_REFRESH_REPEAT
    garp_lower_prio_delay_s: float | None = None  # None: garp_master_delay_s
    garp_lower_prio_repeat: int | None = None  # None: garp_master_repeat
    lower_prio_no_advert: bool = False

    def __post_init__(self) -> None:
        if not 1 <= self.vrid <= 255:
            raise ValueError(f"{self.name}: VRID must be 1..255")
        if not 1 <= self.priority <= OWNER_PRIORITY:
            raise ValueError(f"{self.name}: priority must be 1..255")
        if self.version not in (2, 3):
            raise ValueError(f"{self.name}: version must be 2 or 3")
        if self.version == 2 and self.advert_int_cs % 100:
            raise ValueError(f"{self.name}: a VRRPv2 advert interval is whole seconds")
        if not 0 < self.advert_int_cs <= _MAX_INTERVAL_CS[self.version]:
            raise ValueError(f"{self.name}: advert interval out of range")

    @property
    def vip_addresses(self) -> tuple[IPv4Address, ...]:
        return tuple(v.address for v in self.vips)

    @property
    def lower_prio_garp_repeat(self) -> int:
        """keepalived's garp_lower_prio_repeat, which defaults to garp_master_repeat."""
        if self.garp_lower_prio_repeat is None:
            return self.garp_master_repeat
        return self.garp_lower_prio_repeat

    @property
    def lower_prio_garp_delay_s(self) -> float:
        if self.garp_lower_prio_delay_s is None:
            return self.garp_master_delay_s
        return self.garp_lower_prio_delay_s

    @property
    def is_owner(self) -> bool:
        return self.priority == OWNER_PRIORITY

    def expected(self, check_unicast_src: bool = False) -> Expected:
        """What :func:`packet.validate` should check received adverts against."""
        return Expected(
            vrid=self.vrid,
            version=self.version,
            interval_cs=self.advert_int_cs,
            auth_type=self.auth_type,
            auth_pass=self.auth_pass,
            addresses=self.vip_addresses,
            check_ttl=not self.unicast_peers,
            peers=frozenset(self.unicast_peers)
            if check_unicast_src and self.unicast_peers
            else None,
        )

    @classmethod
    def from_config(
        cls, config: Config, name: str, interface_ip: IPv4Address | None = None
    ) -> InstanceParams:
        """Resolves one parsed vrrp_instance the way keepalived completes it.

        ``interface_ip`` is the primary address of the instance's interface, which only the
        daemon can look up; ``unicast_src_ip`` takes precedence over it.
        """
        inst = config.instances[name]
        primary = inst.unicast_src_ip or interface_ip
        if primary is None:
            raise ValueError(f"{name}: no unicast_src_ip and no interface address given")
        g = config.global_defs
        version = config.effective_version(inst)
        if version == 2:  # keepalived rounds a fractional v2 interval to whole seconds
            advert_int_cs = max(1, int(inst.advert_int_s + 0.5)) * 100
        else:
            advert_int_cs = max(1, int(inst.advert_int_s * 100 + 0.5))
        auth = inst.authentication if version == 2 else None
        scripts = []
        for tracked in inst.track_scripts:
            script = config.scripts[tracked.name]
            weight = script.weight if tracked.weight is None else tracked.weight
            reverse = script.weight_reverse if tracked.reverse is None else tracked.reverse
            scripts.append(Tracker(tracked.name, weight, reverse))

        def pick(own: float | None, glob: float | None, default: float) -> float:
            return own if own is not None else glob if glob is not None else default

        return cls(
            name=name,
            vrid=inst.virtual_router_id,
            primary_ip=primary,
            priority=inst.base_priority,
            vips=tuple(inst.virtual_ipaddresses),
            version=version,
            advert_int_cs=advert_int_cs,
            preempt=inst.effective_preempt,
            preempt_delay_s=inst.effective_preempt_delay_s,
            initial_master=inst.initial_master,
            auth_type=AuthType.PASS if auth else AuthType.NONE,
            auth_pass=auth.auth_pass.encode() if auth else b"",
            interface=inst.interface,
            track_interfaces=tuple(
                Tracker(t.name, t.weight, t.reverse) for t in inst.track_interfaces
            ),
            track_scripts=tuple(scripts),
            unicast_peers=tuple(inst.unicast_peers),
            garp_master_delay_s=pick(
                inst.garp_master_delay_s, g.vrrp_garp_master_delay_s, DEFAULT_GARP_MASTER_DELAY_S
            ),
            garp_master_repeat=int(
                pick(inst.garp_master_repeat, g.vrrp_garp_master_repeat, DEFAULT_GARP_MASTER_REPEAT)
            ),
            garp_master_refresh_s=pick(
                inst.garp_master_refresh_s,
                g.vrrp_garp_master_refresh_s,
                DEFAULT_GARP_MASTER_REFRESH_S,
            ),
            garp_master_refresh_repeat=int(
                pick(
                    inst.garp_master_refresh_repeat,
                    g.vrrp_garp_master_refresh_repeat,
                    DEFAULT_GARP_MASTER_REFRESH_REPEAT,
                )
            ),
        )


# ------------------------------------------------------------------ state handlers


class _StateHandler:
    """One state's reactions; by default a state ignores adverts and has no timers."""

    state: State

    def enter(self, m: VrrpMachine, previous: State, now: float) -> None:
        pass

    def leave(self, m: VrrpMachine, following: State, now: float) -> None:
        pass

    def on_advert(self, m: VrrpMachine, advert: Advert, src: IPv4Address, now: float) -> None:
        pass

    def on_timer(self, m: VrrpMachine, timer: str, now: float) -> None:
        pass


class _Init(_StateHandler):
    """Before start() and after shutdown(); entered again only by shutdown()."""

    state = State.INIT

    def enter(self, m: VrrpMachine, previous: State, now: float) -> None:
        m._notify("STOP")


class _Fault(_StateHandler):
    """keepalived's FAULT: a tracked interface or script is down. Adverts are ignored."""

    state = State.FAULT

    def enter(self, m: VrrpMachine, previous: State, now: float) -> None:
        m._notify("FAULT")


class _Backup(_StateHandler):
    """RFC 3768 6.4.2 / RFC 5798 6.4.2."""

    state = State.BACKUP

    def enter(self, m: VrrpMachine, previous: State, now: float) -> None:
        if previous in (State.INIT, State.FAULT):
            m.master_adver_int_cs = m.params.advert_int_cs
        if previous is not State.INIT:
            m._preempt_until = None  # keepalived restarts the delay at the next lower advert
        m.wants_master = False
        m._timers["down"] = now + m.master_down_interval_s
        m._notify("BACKUP")

    def leave(self, m: VrrpMachine, following: State, now: float) -> None:
        m._timers.pop("down", None)

    def on_advert(self, m: VrrpMachine, advert: Advert, src: IPv4Address, now: float) -> None:
        # "If the Priority in the ADVERTISEMENT is Zero, then: Set the Master_Down_Timer
        # to Skew_Time"
        if advert.priority == 0:
            m._timers["down"] = now + m.skew_time_s
            return
        # "If Preempt_Mode is False, or If the Priority in the ADVERTISEMENT is greater than
        # or equal to the local Priority, then: [v3: Set Master_Adver_Interval to Adver
        # Interval contained in the ADVERTISEMENT; Recompute the Master_Down_Interval]
        # Reset the Master_Down_Timer to Master_Down_Interval; else: Discard the
        # ADVERTISEMENT" -- and the running Master_Down_Timer makes us master.
        if not self._accept(m, advert.priority, now):
            return
        if m.params.version == 3:
            m.master_adver_int_cs = advert.interval_cs
        m._timers["down"] = now + m.master_down_interval_s
        m.master_ip = src
        m.wants_master = False

    @staticmethod
    def _accept(m: VrrpMachine, priority: int, now: float) -> bool:
        if priority >= m.effective_priority:
            m._preempt_until = None  # keepalived: "stop preempt delay"
            return True
        if not m.params.preempt:
            return True
        if m.params.preempt_delay_s <= 0:
            return False
        if m._preempt_until is None:
            m._preempt_until = now + m.params.preempt_delay_s
        return now < m._preempt_until

    def on_timer(self, m: VrrpMachine, timer: str, now: float) -> None:
        # "If the Master_Down_Timer fires, then: ... Transition to the {Master} state"
        m.wants_master = True
        if m._group is not None and not m._group.can_goto_master(m):
            # keepalived waits until every member of the sync group wants to be master.
            m._timers["down"] = now + m.master_down_interval_s
            return
        m._set_state(_MASTER, now)


class _Master(_StateHandler):
    """RFC 3768 6.4.3 / RFC 5798 6.4.3, with keepalived's gratuitous ARP schedule."""

    state = State.MASTER
    _TIMERS = ("adver", "garp", "garp_lower", "refresh")

    def enter(self, m: VrrpMachine, previous: State, now: float) -> None:
        p = m.params
        # keepalived sends the advert first so the old master drops the VIPs before our
        # gratuitous ARPs go out.
        m._send_advert(m.effective_priority, now)
        m._emit(AddVips(p.name, p.vips))
        m._garp(p.garp_master_repeat)
        m._notify("MASTER")
        m.master_ip = p.primary_ip
        m.wants_master = False
        if p.garp_master_delay_s > 0:
            m._timers["garp"] = now + p.garp_master_delay_s
        if p.garp_master_refresh_s > 0:
            m._timers["refresh"] = now + p.garp_master_refresh_s

    def leave(self, m: VrrpMachine, following: State, now: float) -> None:
        for timer in self._TIMERS:
            m._timers.pop(timer, None)
        if following in (State.FAULT, State.INIT):
            # Shutdown: "Send an ADVERTISEMENT with Priority = 0"; keepalived does the
            # same when a tracked object fails, so backups take over after Skew_Time.
            m._emit(SendAdvert(m.params.name, m._advert(0)))
        m._emit(RemoveVips(m.params.name, m.params.vips))

    def on_advert(self, m: VrrpMachine, advert: Advert, src: IPv4Address, now: float) -> None:
        p = m.params
        if advert.priority == 0:
            # "Send an ADVERTISEMENT; Reset the Adver_Timer to Advertisement_Interval"
            m._send_advert(m.effective_priority, now)
            return
        # "If the Priority in the ADVERTISEMENT is greater than the local Priority, or If
        # the Priority in the ADVERTISEMENT is equal to the local Priority and the primary
        # IP Address of the sender is greater than the local primary IP Address, then:
        # ... Transition to the {Backup} state"
        if advert.priority > m.effective_priority or (
            advert.priority == m.effective_priority and src > p.primary_ip
        ):
            if p.version == 3:
                m.master_adver_int_cs = advert.interval_cs
            m.master_ip = src
            m._set_state(_BACKUP, now)
            return
        # A lower-priority master: the RFC discards the advert; keepalived reasserts itself.
        if not p.lower_prio_no_advert:
            m._send_advert(m.effective_priority, now)
        if p.lower_prio_garp_repeat:
            m._garp(p.lower_prio_garp_repeat)
            if p.lower_prio_garp_delay_s > 0:
                m._timers["garp_lower"] = now + p.lower_prio_garp_delay_s

    def on_timer(self, m: VrrpMachine, timer: str, now: float) -> None:
        p = m.params
        if timer == "adver":
            m._send_advert(m.effective_priority, now)
        elif timer == "garp":
            m._garp(p.garp_master_repeat)
        elif timer == "garp_lower":
            m._garp(p.lower_prio_garp_repeat)
        elif timer == "refresh":
            m._garp(p.garp_master_refresh_repeat)
            m._timers["refresh"] = now + p.garp_master_refresh_s


_INIT, _FAULT, _BACKUP, _MASTER = _Init(), _Fault(), _Backup(), _Master()


# ------------------------------------------------------------------------- machine


class VrrpMachine:
    """One VRRP instance. Drive it with start/on_advert/poll/track_*/shutdown."""

    def __init__(self, params: InstanceParams, emit: Emit) -> None:
        self.params = params
        self._emit = emit
        self._handler: _StateHandler = _INIT
        self._timers: dict[str, float] = {}
        self._preempt_until: float | None = None
        self._group: SyncGroup | None = None
        self._weights_ignored = False
        self.master_adver_int_cs = params.advert_int_cs
        self.master_ip: IPv4Address | None = None
        self.wants_master = False
        own = (Tracker(params.interface),) if params.interface else ()
        self._interfaces = own + tuple(
            t for t in params.track_interfaces if t.name != params.interface
        )
        self._interface_up = {t.name: True for t in self._interfaces}
        # Unknown until the script has run once: keepalived keeps the instance out of
        # BACKUP until then when the script is unweighted.
        self._script_ok: dict[str, bool | None] = {t.name: None for t in params.track_scripts}
        self.effective_priority = self._priority_now()
        self._own_fault = self._own_fault_now()

    # ----- timer formulas

    @property
    def state(self) -> State:
        return self._handler.state

    @property
    def advert_interval_s(self) -> float:
        return self.params.advert_int_cs / 100

    @property
    def skew_time_s(self) -> float:
        """RFC 3768: "( (256 - Priority) / 256 )" seconds.

        RFC 5798: "(((256 - priority) * Master_Adver_Interval) / 256)" centiseconds.
        """
        priority = self.effective_priority
        if self.params.version == 2:
            return (256 - priority) / 256
        return (256 - priority) * self.master_adver_int_cs / 256 / 100

    @property
    def master_down_interval_s(self) -> float:
        """ "(3 * Master_Adver_Interval) + Skew_time" (v2: the Advertisement_Interval)."""
        return DOWN_TIMER_ADVERTS * self.master_adver_int_cs / 100 + self.skew_time_s

    @property
    def next_deadline(self) -> float | None:
        """When :meth:`poll` next has work to do; ``None`` when no timer runs."""
        return min(self._timers.values(), default=None)

    @property
    def faulted(self) -> bool:
        return self._own_fault or (self._group is not None and self._group.faulted)

    # ----- entry points

    def start(self, now: float) -> None:
        """RFC 6.4.1 Initialize: the owner becomes master at once, others back up."""
        if self.state is not State.INIT:
            return
        self._preempt_until = (
            now + self.params.preempt_delay_s if self.params.preempt_delay_s > 0 else None
        )
        if self.faulted:
            self._set_state(_FAULT, now)
            if self._group is not None:
                self._group._fault_changed(now)
        else:
            self._come_up(now)

    def on_advert(self, advert: Advert, src_ip: IPv4Address, now: float) -> None:
        """An advert that passed ``packet.validate`` (see :meth:`InstanceParams.expected`)."""
        self.poll(now)
        if advert.vrid != self.params.vrid or src_ip == self.params.primary_ip:
            return  # not ours, or our own advert looped back
        self._handler.on_advert(self, advert, src_ip, now)

    def poll(self, now: float) -> float | None:
        """Fires every timer due by ``now``; returns the next deadline (see next_deadline).

        A timer acts at ``now``, not at its deadline, as keepalived does: a late poll makes
        a late transition, and the next advert is due an interval after it.
        """
        while True:
            due = [(at, name) for name, at in self._timers.items() if at <= now]
            if not due:
                return self.next_deadline
            _, name = min(due)
            del self._timers[name]
            self._handler.on_timer(self, name, now)

    def shutdown(self, now: float) -> None:
        """Stop: a master sends priority 0 and drops its VIPs; notify STOP."""
        if self.state is not State.INIT:
            self._set_state(_INIT, now)

    def track_interface(self, name: str, up: bool, now: float) -> None:
        """A tracked interface (or the instance's own) went up or down."""
        if name in self._interface_up:
            self._interface_up[name] = up
            self._tracking_changed(now)

    def track_script(self, name: str, ok: bool, now: float) -> None:
        """A tracked vrrp_script's status after rise/fall (see :class:`ScriptStatus`)."""
        if name in self._script_ok:
            self._script_ok[name] = ok
            self._tracking_changed(now)

    # ----- internals used by the state handlers and the sync group

    def _set_state(self, handler: _StateHandler, now: float) -> None:
        previous = self._handler
        previous.leave(self, handler.state, now)
        self._handler = handler
        handler.enter(self, previous.state, now)
        if self._group is not None:
            self._group._member_moved(self, previous.state, handler.state, now)

    def _come_up(self, now: float) -> None:
        """Leaving Initialize or Fault, as RFC 6.4.1 Initialize does."""
        if self.params.is_owner and self.params.initial_master:
            self._set_state(_MASTER, now)
        else:
            self._set_state(_BACKUP, now)

    def _advert(self, priority: int) -> Advert:
        p = self.params
        return Advert(
            version=p.version,
            vrid=p.vrid,
            priority=priority,
            addresses=p.vip_addresses,
            interval_cs=p.advert_int_cs,
            auth_type=p.auth_type,
            auth_data=p.auth_pass,
        )

    def _send_advert(self, priority: int, now: float) -> None:
        self._emit(SendAdvert(self.params.name, self._advert(priority)))
        self._timers["adver"] = now + self.advert_interval_s

    def _garp(self, count: int) -> None:
        if count and self.params.vips:
            self._emit(SendGarp(self.params.name, self.params.vips, count))

    def _notify(self, state: str) -> None:
        self._emit(Notify("INSTANCE", self.params.name, state, self.effective_priority))

    def _trackers(self) -> Iterable[tuple[Tracker, bool | None]]:
        for t in self._interfaces:
            yield t, self._interface_up[t.name]
        for t in self.params.track_scripts:
            yield t, self._script_ok[t.name]

    def _priority_now(self) -> int:
        if self.params.is_owner:
            return OWNER_PRIORITY
        total = self.params.priority
        if not self._weights_ignored:
            for t, ok in self._trackers():
                if t.weight and ok is not None:
                    # +ve weights count while OK, -ve while failed; reverse flips the sign.
                    active = ok if t.weight > 0 else not ok
                    if active:
                        total += -t.weight if t.reverse else t.weight
        return min(MAX_BACKUP_PRIORITY, max(1, total))

    def _own_fault_now(self) -> bool:
        # Unweighted: failed (or, reversed, OK) is FAULT; unknown counts as failed.
        return any(t.weight == 0 and (ok is None or ok == t.reverse) for t, ok in self._trackers())

    def _refresh_tracking(self) -> bool:
        """Recomputes priority and fault; returns whether the fault status changed."""
        priority = self._priority_now()
        if priority != self.effective_priority:
            before = self.master_down_interval_s
            self.effective_priority = priority
            if "down" in self._timers:  # keepalived moves the deadline by the skew change
                self._timers["down"] += self.master_down_interval_s - before
        fault = self._own_fault_now()
        changed = fault != self._own_fault
        self._own_fault = fault
        return changed

    def _tracking_changed(self, now: float) -> None:
        self.poll(now)
        if not self._refresh_tracking() or self.state is State.INIT:
            return
        if self._group is not None:
            self._group._fault_changed(now)
        elif self._own_fault and self.state is not State.FAULT:
            self._set_state(_FAULT, now)
        elif not self._own_fault and self.state is State.FAULT:
            self._come_up(now)


# ---------------------------------------------------------------------- sync group


class SyncGroup:
    """A vrrp_sync_group: its instances are master together or backup together.

    keepalived 2.x rules: a member whose Master_Down_Timer fires becomes master only when
    every other member also wants to (else it waits another Master_Down_Interval), and
    then all members become master; a member pushed back to backup by a higher-priority
    advert takes the others with it; a fault in any member faults them all, and they come
    back together when every member is healthy. Tracking weights are ignored unless
    ``tracking_weights`` (keepalived's ``sync_group_tracking_weight``).
    """

    def __init__(
        self,
        name: str,
        members: Iterable[VrrpMachine],
        emit: Emit,
        tracking_weights: bool = False,
    ) -> None:
        self.name = name
        self.members = tuple(members)
        self._emit = emit
        self.state = State.INIT
        for m in self.members:
            if m._group is not None:
                raise ValueError(f"{m.params.name} is already in sync group {m._group.name}")
            m._group = self
            m._weights_ignored = not tracking_weights
            m._refresh_tracking()

    @property
    def faulted(self) -> bool:
        return any(m._own_fault for m in self.members)

    def start(self, now: float) -> None:
        for m in self.members:
            m.start(now)

    def poll(self, now: float) -> float | None:
        deadlines = [d for d in (m.poll(now) for m in self.members) if d is not None]
        return min(deadlines, default=None)

    def shutdown(self, now: float) -> None:
        for m in self.members:
            m.shutdown(now)

    def can_goto_master(self, member: VrrpMachine) -> bool:
        """keepalived's vrrp_sync_can_goto_master: "Only sync to master if everyone wants to"."""
        if self.state is State.MASTER:
            return True
        return all(m.wants_master for m in self.members if m is not member)

    def _member_moved(self, member: VrrpMachine, previous: State, new: State, now: float) -> None:
        if new is State.MASTER:
            self._sync(State.MASTER, now)
        elif new is State.BACKUP and previous is State.MASTER:
            self._sync(State.BACKUP, now)
        elif new is State.BACKUP and self.state is State.MASTER:
            member._set_state(_MASTER, now)  # coming up while the group is master: join it
        elif new is State.BACKUP and self.state in (State.INIT, State.FAULT):
            self._set(State.BACKUP)

    def _sync(self, target: State, now: float) -> None:
        if self.state is target:
            return
        self._set(target)
        source = State.BACKUP if target is State.MASTER else State.MASTER
        handler = _MASTER if target is State.MASTER else _BACKUP
        for m in self.members:
            if m.state is source:
                m._set_state(handler, now)

    def _fault_changed(self, now: float) -> None:
        if self.faulted:
            if self.state is not State.FAULT:
                self._set(State.FAULT)
            for m in self.members:
                if m.state in (State.BACKUP, State.MASTER):
                    m._set_state(_FAULT, now)
        elif self.state is State.FAULT:
            self.state = State.INIT  # so the first member back up notifies BACKUP
            for m in self.members:
                if m.state is State.FAULT:
                    m._come_up(now)

    def _set(self, state: State) -> None:
        self.state = state
        self._emit(Notify("GROUP", self.name, state.value, 0))


# ---------------------------------------------------------------------- vrrp_script


class ScriptStatus:
    """keepalived's rise/fall debounce of a vrrp_script's exit status.

    Unknown until the first run, which alone decides (keepalived's "one success is
    enough"); after that ``rise`` consecutive successes turn it OK and ``fall``
    consecutive failures turn it failed. ``init_fail`` starts it failed.
    """

    def __init__(self, rise: int = 1, fall: int = 1, init_fail: bool = False) -> None:
        self.rise = rise
        self.fall = fall
        self.ok: bool | None = False if init_fail else None
        self._streak = 0

    def record(self, success: bool) -> bool:
        """Feeds one exit status; returns True when :attr:`ok` changed."""
        if self.ok is None or success == self.ok:
            changed = self.ok is None
            self.ok = success
            self._streak = 0
            return changed
        self._streak += 1
        if self._streak >= (self.rise if success else self.fall):
            self.ok = success
            self._streak = 0
            return True
        return False
