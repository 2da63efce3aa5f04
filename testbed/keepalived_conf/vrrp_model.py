"""keepalived.conf's VRRP side as typed data (keepalived's vrrp_data.h).

For: ``vrrp_instance`` (addresses, peers, tracking, notify scripts, routes and rules held
while MASTER), ``vrrp_sync_group``, ``vrrp_script`` and the ``static_ipaddress``,
``static_routes`` and ``static_rules`` blocks, with keepalived's defaults. Fields keepalived
inherits from ``global_defs`` are ``None`` when not written (see `model.Config`).

Not for: reading or writing text (`vrrp_parser`, `render`) or the LVS side (`check_model`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address

from testbed.keepalived_conf.common import Script

# keepalived defaults (keepalived/include/vrrp.h, global_data.c, keepalived.conf(5)).
DEFAULT_PRIORITY = 100  # VRRP_PRIO_DFL
OWNER_PRIORITY = 255  # VRRP_PRIO_OWNER: "address owner"
DEFAULT_ADVERT_INT_S = 1.0  # VRRP_ADVER_DFL
DEFAULT_VRRP_VERSION = 2  # global_data.c set_vrrp_defaults
DEFAULT_GARP_MASTER_DELAY_S = 5.0  # VRRP_GARP_DELAY
DEFAULT_GARP_MASTER_REPEAT = 5  # VRRP_GARP_REP
DEFAULT_GARP_MASTER_REFRESH_S = 0.0  # VRRP_GARP_REFRESH: no refresh
DEFAULT_GARP_MASTER_REFRESH_REPEAT = 1  # VRRP_GARP_REFRESH_REP
RULE_START_PRIORITY = 16383  # vrrp_iprule.c: a rule without a preference gets this, then less

NOTIFY_KEYWORDS = ("notify_master", "notify_backup", "notify_fault", "notify_stop", "notify")


@dataclass(frozen=True)
class VirtualAddress:
    """One ``virtual_ipaddress`` or ``static_ipaddress`` line; no prefix is keepalived's /32."""

    address: IPv4Address
    prefix_len: int | None = None
    dev: str | None = None
    label: str | None = None
    brd: IPv4Address | None = None
    scope: str | None = None


@dataclass(frozen=True)
class Route:
    """One ``virtual_routes``/``static_routes`` line as ``ip route add`` arguments.

    keepalived's spellings are normalised on reading (``gw`` is ``via``, ``oif`` is ``dev``,
    ``or B`` is a second ``nexthop``), so ``argv`` is valid for both ``ip route`` and
    keepalived. ``append`` is ``ip route append``. ``no_track`` is kept for rendering: this
    testbed does not watch routes (keepalived re-adds a deleted tracked route).
    """

    argv: tuple[str, ...]
    append: bool = False
    no_track: bool = False


@dataclass(frozen=True)
class Rule:
    """One ``virtual_rules``/``static_rules`` line as ``ip rule add`` arguments (with the
    preference keepalived assigns when none is written)."""

    argv: tuple[str, ...]
    no_track: bool = False


@dataclass(frozen=True)
class TrackInterface:
    """``track_interface`` entry: weight 0 means "down is FAULT", else a priority change."""

    name: str
    weight: int = 0
    reverse: bool = False


@dataclass(frozen=True)
class TrackScript:
    """``track_script`` entry; ``weight=None`` takes the ``vrrp_script``'s weight."""

    name: str
    weight: int | None = None
    reverse: bool | None = None


@dataclass(frozen=True)
class Authentication:
    """VRRPv2 authentication; only ``PASS`` (keepalived uses the first 8 characters)."""

    auth_pass: str
    auth_type: str = "PASS"


@dataclass
class VrrpInstance:
    name: str
    virtual_router_id: int = 0  # required; 0 only until the parser has seen it
    state: str | None = None  # "MASTER" | "BACKUP": the initial state hint
    interface: str | None = None
    priority: int | None = None
    advert_int_s: float = DEFAULT_ADVERT_INT_S
    version: int | None = None
    nopreempt: bool = False
    preempt_delay_s: float = 0.0
    authentication: Authentication | None = None
    virtual_ipaddresses: list[VirtualAddress] = field(default_factory=list)
    unicast_src_ip: IPv4Address | None = None
    unicast_peers: list[IPv4Address] = field(default_factory=list)
    check_unicast_src: bool = False
    track_interfaces: list[TrackInterface] = field(default_factory=list)
    track_scripts: list[TrackScript] = field(default_factory=list)
    notify_master: Script | None = None
    notify_backup: Script | None = None
    notify_fault: Script | None = None
    notify_stop: Script | None = None
    notify: Script | None = None
    garp_master_delay_s: float | None = None
    garp_master_repeat: int | None = None
    garp_master_refresh_s: float | None = None
    garp_master_refresh_repeat: int | None = None
    virtual_routes: list[Route] = field(default_factory=list)
    virtual_rules: list[Rule] = field(default_factory=list)

    @property
    def base_priority(self) -> int:
        """keepalived: no ``priority`` means 255 with ``state MASTER``, else 100."""
        if self.priority is not None:
            return self.priority
        return OWNER_PRIORITY if self.state == "MASTER" else DEFAULT_PRIORITY

    @property
    def initial_master(self) -> bool:
        """keepalived: no ``state`` means MASTER for the address owner, else BACKUP."""
        if self.state is not None:
            return self.state == "MASTER"
        return self.base_priority == OWNER_PRIORITY

    @property
    def effective_preempt(self) -> bool:
        """keepalived clears ``nopreempt`` for the owner and for ``state MASTER``."""
        return not self.nopreempt or self.base_priority == OWNER_PRIORITY or self.initial_master

    @property
    def effective_preempt_delay_s(self) -> float:
        """keepalived clears ``preempt_delay`` with ``state MASTER`` or ``nopreempt``."""
        if self.initial_master or not self.effective_preempt:
            return 0.0
        return self.preempt_delay_s


@dataclass
class VrrpSyncGroup:
    name: str
    group: list[str] = field(default_factory=list)
    notify_master: Script | None = None
    notify_backup: Script | None = None
    notify_fault: Script | None = None
    notify_stop: Script | None = None
    notify: Script | None = None


@dataclass
class VrrpScript:
    """``vrrp_script``: the runner (not this package) executes it every ``interval_s``."""

    name: str
    script: str = ""
    interval_s: float = 1.0
    timeout_s: float | None = None  # keepalived: defaults to the interval
    weight: int = 0
    weight_reverse: bool = False
    rise: int = 1
    fall: int = 1
    init_fail: bool = False
    user: str | None = None
    group: str | None = None

    @property
    def as_script(self) -> Script:
        return Script(self.script, self.user, self.group)
