"""keepalived.conf's LVS side as typed data (keepalived's check_data.h).

For: ``virtual_server`` (an address and port, a firewall mark or a ``virtual_server_group``)
with its real servers, sorry server and quorum; the health checkers (TCP_CHECK, HTTP_GET,
SSL_GET, MISC_CHECK, UDP_CHECK, PING_CHECK, DNS_CHECK, SMTP_CHECK); the ``SSL`` block.

keepalived lets a timing be written on the virtual server, the real server or the checker,
the nearer one winning ("the virtual server setting is the default for real servers, and the
real server setting is the default for checkers"); so they are ``None`` here when not written
and `check_timing` resolves them with keepalived's per-checker defaults (check_data.c
validate_check_config).

Not for: reading or writing text (`check_parser`, `render`) or running checks
(`testbed.check`).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import ClassVar, NamedTuple

from testbed.keepalived_conf.common import Script

DEFAULT_PERSISTENCE_TIMEOUT_S = 360  # "persistence_timeout" with no value: 6 minutes
DEFAULT_DELAY_LOOP_S = 60.0  # KEEPALIVED_DEFAULT_DELAY
DEFAULT_CONNECT_TIMEOUT_S = 5.0
DEFAULT_RETRY = 1
DEFAULT_DELAY_BEFORE_RETRY_S = 1.0
DEFAULT_HTTP_DELAY_BEFORE_RETRY_S = 3.0  # HTTP_GET and SSL_GET
DEFAULT_STATUS_CODES = ((200, 299),)
DEFAULT_SMTP_HELO = "smtpchecker.keepalived.org"  # SMTP_DEFAULT_HELO
DEFAULT_DNS_TYPE = "SOA"
DNS_TYPES = ("A", "NS", "CNAME", "SOA", "MX", "TXT", "AAAA")
DEFAULT_UDP_MAX_REPLY_LENGTH = 255
MAX_WEIGHT = 65535  # the director's (and ipvsadm's) real server weight limit
HTTP_PROTOCOLS = ("1.0", "1.0C", "1.1")

LB_ALGOS = frozenset(
    {"rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh", "twos"}
)
LB_KINDS = ("NAT", "DR", "TUN")
PROTOCOLS = ("TCP", "UDP", "SCTP")


# ------------------------------------------------------------------------------ checkers


@dataclass
class CheckBase:
    """What every checker may set (install_checker_common_keywords); None: inherited."""

    KIND: ClassVar[str] = ""
    DEFAULT_RETRY: ClassVar[int] = DEFAULT_RETRY
    # None: the checker's delay_loop (DNS_CHECK)
    DEFAULT_DELAY_BEFORE_RETRY_S: ClassVar[float | None] = DEFAULT_DELAY_BEFORE_RETRY_S
    CONNECTS: ClassVar[bool] = True  # has connect_ip/connect_port/bindto/... (not MISC_CHECK)

    connect_ip: IPv4Address | None = None
    connect_port: int | None = None
    bindto: IPv4Address | None = None
    bind_port: int | None = None
    bind_if: str | None = None
    fwmark: int | None = None
    connect_timeout_s: float | None = None
    retry: int | None = None
    delay_before_retry_s: float | None = None
    warmup_s: float | None = None
    delay_loop_s: float | None = None
    alpha: bool | None = None
    log_all_failures: bool | None = None


@dataclass
class TcpCheck(CheckBase):
    KIND: ClassVar[str] = "TCP_CHECK"


@dataclass(frozen=True)
class UrlCheck:
    path: str
    status_codes: tuple[tuple[int, int], ...] = ()  # (low, high) ranges as written
    digest: str | None = None
    virtualhost: str | None = None
    regex: str | None = None
    regex_no_match: bool = False

    def accepts(self, status: int) -> bool:
        """Whether an HTTP status passes; with no status_code, keepalived wants 200-299."""
        return any(lo <= status <= hi for lo, hi in self.status_codes or DEFAULT_STATUS_CODES)


@dataclass
class HttpGet(CheckBase):
    KIND: ClassVar[str] = "HTTP_GET"
    DEFAULT_DELAY_BEFORE_RETRY_S: ClassVar[float | None] = DEFAULT_HTTP_DELAY_BEFORE_RETRY_S

    urls: list[UrlCheck] = field(default_factory=list)
    virtualhost: str | None = None
    http_protocol: str | None = None  # "1.0" (default), "1.0C", "1.1"
    enable_sni: bool = False
    sni_name: str | None = None
    fast_recovery: bool = False


@dataclass
class SslGet(HttpGet):
    """HTTP_GET over TLS. keepalived does not verify the server's certificate."""

    KIND: ClassVar[str] = "SSL_GET"


@dataclass
class MiscCheck(CheckBase):
    """A script: exit 0 is up, 1 is down; with ``misc_dynamic``, 2..255 is up with weight
    exit status - 2 (keepalived.conf(5))."""

    KIND: ClassVar[str] = "MISC_CHECK"
    DEFAULT_RETRY: ClassVar[int] = 0
    CONNECTS: ClassVar[bool] = False

    script: Script | None = None
    timeout_s: float | None = None  # misc_timeout; None: the virtual server's delay_loop
    dynamic: bool = False


@dataclass
class UdpCheck(CheckBase):
    """A datagram to the real server: an ICMP error is a failure; with ``require_reply`` an
    answer (of the given length and content) must come within connect_timeout."""

    KIND: ClassVar[str] = "UDP_CHECK"

    payload: bytes | None = None  # None: a random payload, as keepalived sends
    require_reply: bool = False
    reply_data: bytes | None = None
    reply_mask: bytes | None = None  # bits to ignore (X in the hex string)
    min_reply_length: int = 0
    max_reply_length: int = DEFAULT_UDP_MAX_REPLY_LENGTH

    def reply_ok(self, data: bytes) -> bool:
        """keepalived's check_udp_reply: length within bounds, content matches up to the
        shorter of the two with masked bits ignored."""
        if not self.min_reply_length <= len(data) <= self.max_reply_length:
            return False
        if self.reply_data is None:
            return True
        mask = self.reply_mask or bytes(len(self.reply_data))
        return all(
            (got ^ want) & ~ignore & 0xFF == 0
            for got, want, ignore in zip(data, self.reply_data, mask, strict=False)
        )


@dataclass
class PingCheck(CheckBase):
    KIND: ClassVar[str] = "PING_CHECK"


@dataclass
class DnsCheck(CheckBase):
    """A DNS query (``type`` for ``name``) over UDP; an answer with rcode 0 passes."""

    KIND: ClassVar[str] = "DNS_CHECK"
    DEFAULT_RETRY: ClassVar[int] = 3
    DEFAULT_DELAY_BEFORE_RETRY_S: ClassVar[float | None] = None

    type: str = DEFAULT_DNS_TYPE
    name: str = "."


@dataclass
class SmtpCheck(CheckBase):
    """The greeting (220), ``HELO helo_name`` (250) and ``QUIT`` (221)."""

    KIND: ClassVar[str] = "SMTP_CHECK"

    helo_name: str = DEFAULT_SMTP_HELO


Checker = TcpCheck | HttpGet | MiscCheck | UdpCheck | PingCheck | DnsCheck | SmtpCheck
CHECKER_KINDS: dict[str, type[CheckBase]] = {
    cls.KIND: cls for cls in (TcpCheck, HttpGet, SslGet, MiscCheck, UdpCheck, PingCheck)
}
CHECKER_KINDS.update({DnsCheck.KIND: DnsCheck, SmtpCheck.KIND: SmtpCheck})


# --------------------------------------------------------------------- servers and groups


@dataclass
class RealServer:
    address: IPv4Address
    port: int | None = None
    weight: int = 1
    lb_kind: str | None = None  # lvs_method per real server; None: the virtual server's
    inhibit_on_failure: bool | None = None  # None: the virtual server's
    notify_up: Script | None = None
    notify_down: Script | None = None
    uthreshold: int | None = None
    lthreshold: int | None = None
    virtualhost: str | None = None
    alpha: bool | None = None
    connect_timeout_s: float | None = None
    retry: int | None = None
    delay_before_retry_s: float | None = None
    warmup_s: float | None = None
    delay_loop_s: float | None = None
    checkers: list[Checker] = field(default_factory=list)


@dataclass
class SorryServer:
    """``sorry_server IP [PORT]``: in the pool while the virtual server has no quorum."""

    address: IPv4Address
    port: int | None = None
    inhibit: bool = False  # sorry_server_inhibit: kept with weight 0 when not needed
    lb_kind: str | None = None  # sorry_server_lvs_method
    weight: int = 1


@dataclass(frozen=True)
class GroupEntry:
    """One line of a ``virtual_server_group``: an address range with a port, or a mark."""

    first: IPv4Address | None = None
    last: IPv4Address | None = None
    port: int | None = None
    fwmark: int | None = None

    def addresses(self) -> list[IPv4Address]:
        if self.first is None or self.last is None:
            return []
        return [ipaddress.IPv4Address(a) for a in range(int(self.first), int(self.last) + 1)]


@dataclass
class VirtualServerGroup:
    name: str
    entries: list[GroupEntry] = field(default_factory=list)


@dataclass
class VirtualServer:
    """``virtual_server IP PORT``, ``virtual_server fwmark N`` or ``virtual_server group G``."""

    address: IPv4Address | None = None
    port: int | None = None
    fwmark: int | None = None
    group: str | None = None
    delay_loop_s: float = DEFAULT_DELAY_LOOP_S
    lb_algo: str | None = None
    lb_kind: str | None = None  # keepalived's default forwarding is NAT
    persistence_timeout_s: int | None = None
    persistence_granularity: IPv4Address | None = None
    protocol: str = "TCP"
    virtualhost: str | None = None
    alpha: bool = False
    omega: bool = False
    quorum: int = 1
    hysteresis: int = 0
    quorum_up: Script | None = None
    quorum_down: Script | None = None
    sorry_server: SorryServer | None = None
    inhibit_on_failure: bool = False
    weight: int = 1  # the real servers' default weight
    connect_timeout_s: float | None = None
    retry: int | None = None
    delay_before_retry_s: float | None = None
    warmup_s: float | None = None
    real_servers: list[RealServer] = field(default_factory=list)


@dataclass
class SslContext:
    """The ``SSL`` block: a client certificate for SSL_GET (keepalived makes one up if
    none is given; it never verifies the server's certificate)."""

    password: str | None = None
    ca: str | None = None
    certificate: str | None = None
    key: str | None = None


# ----------------------------------------------------------------- inherited settings


class CheckTiming(NamedTuple):
    connect_timeout_s: float
    retry: int
    delay_before_retry_s: float
    delay_loop_s: float
    warmup_s: float
    alpha: bool


def _first(*values):
    return next((v for v in values if v is not None), None)


def check_timing(vs: VirtualServer, rs: RealServer, checker: Checker) -> CheckTiming:
    """A checker's settings, from itself, else its real server, else its virtual server,
    else keepalived's default for the checker's kind (check_data.c)."""
    delay_loop_s = _first(checker.delay_loop_s, rs.delay_loop_s, vs.delay_loop_s)
    default_dbr = checker.DEFAULT_DELAY_BEFORE_RETRY_S
    return CheckTiming(
        connect_timeout_s=_first(
            checker.connect_timeout_s,
            rs.connect_timeout_s,
            vs.connect_timeout_s,
            DEFAULT_CONNECT_TIMEOUT_S,
        ),
        retry=_first(checker.retry, rs.retry, vs.retry, checker.DEFAULT_RETRY),
        delay_before_retry_s=_first(
            checker.delay_before_retry_s,
            rs.delay_before_retry_s,
            vs.delay_before_retry_s,
            default_dbr,
            delay_loop_s,
        ),
        delay_loop_s=delay_loop_s,
        # keepalived's warmup defaults to the checker's delay_loop: the first check comes
        # at a random moment within it, so checks of many servers do not run together.
        warmup_s=_first(checker.warmup_s, rs.warmup_s, vs.warmup_s, delay_loop_s),
        alpha=bool(_first(checker.alpha, rs.alpha, vs.alpha)),
    )


def describe(vs: VirtualServer) -> str:
    """A virtual service as keepalived's log writes it: ``[10.0.1.100]:tcp:80``, ``FWM 5``."""
    if vs.group is not None:
        return f"group {vs.group}"
    if vs.fwmark is not None:
        return f"FWM {vs.fwmark}"
    port = "" if vs.port is None else f":{vs.port}"
    return f"[{vs.address}]:{vs.protocol.lower()}{port}"


def rs_inhibit(vs: VirtualServer, rs: RealServer) -> bool:
    return vs.inhibit_on_failure if rs.inhibit_on_failure is None else rs.inhibit_on_failure


def rs_port(vs: VirtualServer, rs: RealServer) -> int | None:
    """The real server's port; keepalived gives a portless real server the service's."""
    return rs.port if rs.port is not None else vs.port
