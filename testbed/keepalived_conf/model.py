"""keepalived.conf as typed data: the model the parser fills and the renderer writes.

For: the dataclasses of the common subset (``global_defs``, ``vrrp_script``,
``vrrp_sync_group``, ``vrrp_instance``, ``virtual_server`` with ``real_server`` and its
checkers), keepalived's defaults, and the errors and warnings a configuration can raise.
Fields that keepalived inherits from elsewhere (an instance's ``version`` from
``global_defs``, a checker's timings from keepalived's per-checker defaults) are ``None``
when not written, so that rendering writes back only what was given; the ``effective_*``
helpers resolve them.

Not for: reading text (`lexer`, `parser`) or writing it (`render`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import NamedTuple

# keepalived defaults (keepalived/include/vrrp.h, global_data.c, keepalived.conf(5)).
DEFAULT_PRIORITY = 100  # VRRP_PRIO_DFL
OWNER_PRIORITY = 255  # VRRP_PRIO_OWNER: "address owner"
DEFAULT_ADVERT_INT_S = 1.0  # VRRP_ADVER_DFL
DEFAULT_VRRP_VERSION = 2  # global_data.c set_vrrp_defaults
DEFAULT_GARP_MASTER_DELAY_S = 5.0  # VRRP_GARP_DELAY
DEFAULT_GARP_MASTER_REPEAT = 5  # VRRP_GARP_REP
DEFAULT_GARP_MASTER_REFRESH_S = 0.0  # VRRP_GARP_REFRESH: no refresh
DEFAULT_GARP_MASTER_REFRESH_REPEAT = 1  # VRRP_GARP_REFRESH_REP
DEFAULT_PERSISTENCE_TIMEOUT_S = 360  # "persistence_timeout" with no value: 6 minutes
DEFAULT_CONNECT_TIMEOUT_S = 5.0
DEFAULT_RETRY = 1
DEFAULT_DELAY_BEFORE_RETRY_S = 1.0
DEFAULT_HTTP_DELAY_BEFORE_RETRY_S = 3.0  # HTTP_GET and SSL_GET
DEFAULT_STATUS_CODES = ((200, 299),)

LB_ALGOS = frozenset(
    {"rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh", "twos"}
)
LB_KINDS = ("NAT", "DR", "TUN")
PROTOCOLS = ("TCP", "UDP", "SCTP")


@dataclass(frozen=True)
class VirtualAddress:
    """One ``virtual_ipaddress`` line; ``prefix_len=None`` means keepalived's /32."""

    address: IPv4Address
    prefix_len: int | None = None
    dev: str | None = None
    label: str | None = None
    brd: IPv4Address | None = None
    scope: str | None = None


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
    track_interfaces: list[TrackInterface] = field(default_factory=list)
    track_scripts: list[TrackScript] = field(default_factory=list)
    notify_master: str | None = None
    notify_backup: str | None = None
    notify_fault: str | None = None
    notify_stop: str | None = None
    notify: str | None = None
    garp_master_delay_s: float | None = None
    garp_master_repeat: int | None = None
    garp_master_refresh_s: float | None = None
    garp_master_refresh_repeat: int | None = None

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
    notify_master: str | None = None
    notify_backup: str | None = None
    notify_fault: str | None = None
    notify_stop: str | None = None
    notify: str | None = None


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


@dataclass
class TcpCheck:
    connect_port: int | None = None
    connect_timeout_s: float | None = None
    retry: int | None = None
    delay_before_retry_s: float | None = None


@dataclass(frozen=True)
class UrlCheck:
    path: str
    status_codes: tuple[tuple[int, int], ...] = ()  # (low, high) ranges as written
    digest: str | None = None

    def accepts(self, status: int) -> bool:
        """Whether an HTTP status passes; with no status_code, keepalived wants 200-299."""
        return any(lo <= status <= hi for lo, hi in self.status_codes or DEFAULT_STATUS_CODES)


@dataclass
class HttpGet:
    urls: list[UrlCheck] = field(default_factory=list)
    connect_port: int | None = None
    connect_timeout_s: float | None = None
    retry: int | None = None
    delay_before_retry_s: float | None = None


Checker = TcpCheck | HttpGet


class CheckerTiming(NamedTuple):
    connect_timeout_s: float
    retry: int
    delay_before_retry_s: float


def checker_timing(checker: Checker) -> CheckerTiming:
    """A checker's timings with keepalived's defaults filled in."""
    default_delay = (
        DEFAULT_HTTP_DELAY_BEFORE_RETRY_S
        if isinstance(checker, HttpGet)
        else DEFAULT_DELAY_BEFORE_RETRY_S
    )
    return CheckerTiming(
        DEFAULT_CONNECT_TIMEOUT_S
        if checker.connect_timeout_s is None
        else checker.connect_timeout_s,
        DEFAULT_RETRY if checker.retry is None else checker.retry,
        default_delay if checker.delay_before_retry_s is None else checker.delay_before_retry_s,
    )


@dataclass
class RealServer:
    address: IPv4Address
    port: int | None = None
    weight: int = 1
    inhibit_on_failure: bool = False
    checkers: list[Checker] = field(default_factory=list)


@dataclass
class VirtualServer:
    """``virtual_server IP PORT`` (``address``/``port``) or ``virtual_server fwmark N``."""

    address: IPv4Address | None = None
    port: int | None = None
    fwmark: int | None = None
    delay_loop_s: float = 60.0
    lb_algo: str | None = None
    lb_kind: str | None = None  # keepalived's default forwarding is NAT
    persistence_timeout_s: int | None = None
    persistence_granularity: IPv4Address | None = None
    protocol: str = "TCP"
    real_servers: list[RealServer] = field(default_factory=list)


@dataclass
class GlobalDefs:
    router_id: str | None = None
    vrrp_version: int | None = None
    vrrp_garp_master_delay_s: float | None = None
    vrrp_garp_master_repeat: int | None = None
    vrrp_garp_master_refresh_s: float | None = None
    vrrp_garp_master_refresh_repeat: int | None = None


@dataclass
class Config:
    global_defs: GlobalDefs = field(default_factory=GlobalDefs)
    instances: dict[str, VrrpInstance] = field(default_factory=dict)
    sync_groups: dict[str, VrrpSyncGroup] = field(default_factory=dict)
    scripts: dict[str, VrrpScript] = field(default_factory=dict)
    virtual_servers: list[VirtualServer] = field(default_factory=list)

    def effective_version(self, instance: VrrpInstance) -> int:
        if instance.version is not None:
            return instance.version
        if self.global_defs.vrrp_version is not None:
            return self.global_defs.vrrp_version
        return DEFAULT_VRRP_VERSION

    def sync_group_of(self, instance_name: str) -> VrrpSyncGroup | None:
        for group in self.sync_groups.values():
            if instance_name in group.group:
                return group
        return None


class ConfigError(Exception):
    """A configuration keepalived would reject, or that cannot mean what it says."""

    def __init__(self, file: str, line: int, reason: str) -> None:
        super().__init__(f"{file}:{line}: {reason}")
        self.file = file
        self.line = line
        self.reason = reason


@dataclass(frozen=True)
class ConfigWarning:
    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


class ParseResult(NamedTuple):
    config: Config
    warnings: list[ConfigWarning]


def format_number(value: float) -> str:
    """A number as keepalived.conf is written: 5, 0.5 (no trailing zeros)."""
    return str(int(value)) if value == int(value) else f"{value:.6f}".rstrip("0")
