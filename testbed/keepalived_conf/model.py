"""keepalived.conf as typed data: the model the parser fills and the renderer writes.

For: `Config`, the whole file (``global_defs``, the VRRP side from `vrrp_model`, the LVS side
from `check_model`), and the one place to import the model from: every name of `common`,
`vrrp_model` and `check_model` is available here too. Fields keepalived inherits from
elsewhere (an instance's ``version`` from ``global_defs``, a checker's timings from its real
and virtual server) are ``None`` when not written, so that rendering writes back only what
was given; `Config.effective_version` and `check_model.check_timing` resolve them.

Not for: reading text (`lexer`, `preprocess`, the parsers) or writing it (`render`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import NamedTuple

from testbed.keepalived_conf.check_model import (
    CHECKER_KINDS,
    DEFAULT_CONNECT_TIMEOUT_S,
    DEFAULT_DELAY_BEFORE_RETRY_S,
    DEFAULT_DELAY_LOOP_S,
    DEFAULT_HTTP_DELAY_BEFORE_RETRY_S,
    DEFAULT_PERSISTENCE_TIMEOUT_S,
    DEFAULT_RETRY,
    DEFAULT_STATUS_CODES,
    DNS_TYPES,
    HTTP_PROTOCOLS,
    LB_ALGOS,
    LB_KINDS,
    MAX_WEIGHT,
    PROTOCOLS,
    CheckBase,
    Checker,
    CheckTiming,
    DnsCheck,
    GroupEntry,
    HttpGet,
    MiscCheck,
    PingCheck,
    RealServer,
    SmtpCheck,
    SorryServer,
    SslContext,
    SslGet,
    TcpCheck,
    UdpCheck,
    UrlCheck,
    VirtualServer,
    VirtualServerGroup,
    check_timing,
    describe,
    rs_inhibit,
    rs_port,
)
from testbed.keepalived_conf.common import ConfigError, ConfigWarning, Script, format_number
from testbed.keepalived_conf.vrrp_model import (
    DEFAULT_ADVERT_INT_S,
    DEFAULT_GARP_MASTER_DELAY_S,
    DEFAULT_GARP_MASTER_REFRESH_REPEAT,
    DEFAULT_GARP_MASTER_REFRESH_S,
    DEFAULT_GARP_MASTER_REPEAT,
    DEFAULT_PRIORITY,
    DEFAULT_VRRP_VERSION,
    NOTIFY_KEYWORDS,
    OWNER_PRIORITY,
    Authentication,
    Route,
    Rule,
    TrackInterface,
    TrackScript,
    VirtualAddress,
    VrrpInstance,
    VrrpScript,
    VrrpSyncGroup,
)


@dataclass(frozen=True)
class LvsSyncDaemon:
    """``lvs_sync_daemon IF [[inst] INSTANCE] [id N] [maxlen N] [port N] [ttl N] [group IP]``
    in ``global_defs``, or the old ``lvs_sync_daemon_interface IF`` in a vrrp_instance
    (which keepalived turns into this, naming that instance)."""

    interface: str
    instance: str | None = None
    sync_id: int | None = None  # None: the instance's VRID, else 0
    maxlen: int | None = None
    port: int | None = None
    ttl: int | None = None
    group: IPv4Address | None = None


@dataclass
class GlobalDefs:
    router_id: str | None = None
    vrrp_version: int | None = None
    vrrp_garp_master_delay_s: float | None = None
    vrrp_garp_master_repeat: int | None = None
    vrrp_garp_master_refresh_s: float | None = None
    vrrp_garp_master_refresh_repeat: int | None = None
    script_user: str | None = None
    script_group: str | None = None
    enable_script_security: bool = False
    lvs_sync_daemon: LvsSyncDaemon | None = None
    default_interface: str | None = None  # static addresses/routes without a dev
    vrrp_check_unicast_src: bool = False  # every instance's check_unicast_src
    lvs_timeouts: LvsTimeouts | None = None
    lvs_flush: bool = False  # flush the director's services before setting ours up


@dataclass(frozen=True)
class LvsTimeouts:
    """``lvs_timeouts [tcp S] [tcpfin S] [udp S]``: ``ipvsadm --set`` (None: unchanged)."""

    tcp_s: int | None = None
    tcpfin_s: int | None = None
    udp_s: int | None = None


@dataclass
class Config:
    global_defs: GlobalDefs = field(default_factory=GlobalDefs)
    instances: dict[str, VrrpInstance] = field(default_factory=dict)
    sync_groups: dict[str, VrrpSyncGroup] = field(default_factory=dict)
    scripts: dict[str, VrrpScript] = field(default_factory=dict)
    virtual_server_groups: dict[str, VirtualServerGroup] = field(default_factory=dict)
    virtual_servers: list[VirtualServer] = field(default_factory=list)
    ssl: SslContext | None = None
    static_addresses: list[VirtualAddress] = field(default_factory=list)
    static_routes: list[Route] = field(default_factory=list)
    static_rules: list[Rule] = field(default_factory=list)

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

    def sync_id(self) -> int | None:
        """The connection sync ID ``lvs_sync_daemon`` asks for (None: no sync daemon)."""
        syncd = self.global_defs.lvs_sync_daemon
        if syncd is None:
            return None
        if syncd.sync_id is not None:
            return syncd.sync_id
        inst = self.instances.get(syncd.instance or "")
        return inst.virtual_router_id if inst is not None else 0


class ParseResult(NamedTuple):
    config: Config
    warnings: list[ConfigWarning]


__all__ = [
    "CHECKER_KINDS",
    "DEFAULT_ADVERT_INT_S",
    "DEFAULT_CONNECT_TIMEOUT_S",
    "DEFAULT_DELAY_BEFORE_RETRY_S",
    "DEFAULT_DELAY_LOOP_S",
    "DEFAULT_GARP_MASTER_DELAY_S",
    "DEFAULT_GARP_MASTER_REFRESH_REPEAT",
    "DEFAULT_GARP_MASTER_REFRESH_S",
    "DEFAULT_GARP_MASTER_REPEAT",
    "DEFAULT_HTTP_DELAY_BEFORE_RETRY_S",
    "DEFAULT_PERSISTENCE_TIMEOUT_S",
    "DEFAULT_PRIORITY",
    "DEFAULT_RETRY",
    "DEFAULT_STATUS_CODES",
    "DEFAULT_VRRP_VERSION",
    "DNS_TYPES",
    "HTTP_PROTOCOLS",
    "LB_ALGOS",
    "LB_KINDS",
    "MAX_WEIGHT",
    "NOTIFY_KEYWORDS",
    "OWNER_PRIORITY",
    "PROTOCOLS",
    "Authentication",
    "CheckBase",
    "CheckTiming",
    "Checker",
    "Config",
    "ConfigError",
    "ConfigWarning",
    "DnsCheck",
    "GlobalDefs",
    "GroupEntry",
    "HttpGet",
    "LvsSyncDaemon",
    "LvsTimeouts",
    "MiscCheck",
    "ParseResult",
    "PingCheck",
    "RealServer",
    "Route",
    "Rule",
    "Script",
    "SmtpCheck",
    "SorryServer",
    "SslContext",
    "SslGet",
    "TcpCheck",
    "TrackInterface",
    "TrackScript",
    "UdpCheck",
    "UrlCheck",
    "VirtualAddress",
    "VirtualServer",
    "VirtualServerGroup",
    "VrrpInstance",
    "VrrpScript",
    "VrrpSyncGroup",
    "check_timing",
    "describe",
    "format_number",
    "rs_inhibit",
    "rs_port",
]
