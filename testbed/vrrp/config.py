"""keepalived.conf: the common subset, parsed into typed dataclasses and rendered back.

What it is for: reading the ``keepalived.conf`` a user brings (``global_defs``,
``vrrp_script``, ``vrrp_sync_group``, ``vrrp_instance``, ``virtual_server`` with
``real_server``/``TCP_CHECK``/``HTTP_GET``, ``include``), and writing a :class:`Config` back
as keepalived.conf text (the NAT layout's default configuration, ``--show-config``).
``parse_config(render_config(c)).config == c`` for every config the parser can produce.

What it is not: a full keepalived parser. Unknown keywords are skipped with a
:class:`ConfigWarning` naming file and line (collected, never printed: the caller prints).
Real mistakes (unbalanced braces, missing or non-numeric values, out-of-range VRID or
priority, references to instances or scripts that do not exist) raise :class:`ConfigError`
with file, line and reason. Conditional lines (``@id``), ``$PARAM`` substitution and
``~SEQ``/``~LST`` are not supported and are skipped with a warning; IPv6 addresses and
IPsec AH authentication are refused.

Tokens follow keepalived.conf(5): ``#`` and ``!`` start a comment anywhere outside quotes,
braces may be attached to words or stand alone (also on the next line), and ``"..."`` or
``'...'`` quote strings, with backslash escapes inside quotes.

Fields that keepalived inherits from elsewhere (an instance's ``version`` from
``global_defs``, a checker's timings from keepalived's per-checker defaults) are ``None``
when not written, so that rendering writes back only what was given; the ``effective_*``
helpers resolve them.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Address, ip_address
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

SCHEDULERS = frozenset(
    {"rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh", "twos"}
)
LB_KINDS = ("NAT", "DR", "TUN")
PROTOCOLS = ("TCP", "UDP", "SCTP")


# --------------------------------------------------------------------------- model


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


# ----------------------------------------------------------------- errors, warnings


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


# ----------------------------------------------------------------------- tokenizer

_WORD, _OPEN, _CLOSE, _EOL = "word", "{", "}", "eol"
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'"}


@dataclass(frozen=True)
class _Tok:
    kind: str
    text: str
    file: str
    line: int


def _error(tok: _Tok, reason: str) -> ConfigError:
    return ConfigError(tok.file, tok.line, reason)


def _split_line(text: str, file: str, line: int) -> list[_Tok]:
    """One line into word and brace tokens; quotes join, comments end the line."""
    toks: list[_Tok] = []
    buf: list[str] = []
    started = False
    quote: str | None = None
    i = 0

    def flush() -> None:
        nonlocal started
        if started:
            toks.append(_Tok(_WORD, "".join(buf), file, line))
        buf.clear()
        started = False

    while i < len(text):
        c = text[i]
        if quote:
            if c == quote:
                quote = None
            elif c == "\\" and i + 1 < len(text):
                i += 1
                buf.append(_ESCAPES.get(text[i], text[i]))
            else:
                buf.append(c)
        elif c in "\"'":
            quote = c
            started = True
        elif c in "#!":
            break
        elif c.isspace():
            flush()
        elif c in "{}":
            flush()
            toks.append(_Tok(_OPEN if c == "{" else _CLOSE, c, file, line))
        else:
            buf.append(c)
            started = True
        i += 1
    if quote:
        raise ConfigError(file, line, "unterminated quoted string")
    flush()
    return toks


def _tokenize(
    text: str, file: str, warnings: list[ConfigWarning], stack: tuple[str, ...]
) -> Iterator[_Tok]:
    """Tokens of a whole file, with ``include`` expanded in place (relative to ``file``)."""
    base_dir = os.path.dirname(file) if stack else os.getcwd()
    for line_no, raw in enumerate(text.splitlines(), start=1):
        toks = _split_line(raw, file, line_no)
        if not toks:
            continue
        first = toks[0]
        if first.kind == _WORD and first.text[:1] in ("@", "$", "~"):
            warnings.append(
                ConfigWarning(
                    file,
                    line_no,
                    "conditional lines, $parameters and ~SEQ/~LST are not supported; line ignored",
                )
            )
            continue
        if first.kind == _WORD and first.text == "include":
            if len(toks) < 2 or toks[1].kind != _WORD:
                raise _error(first, "'include' needs a file name")
            yield from _include(toks[1], base_dir, warnings, stack)
            continue
        yield from toks
        yield _Tok(_EOL, "", file, line_no)


def _include(
    tok: _Tok, base_dir: str, warnings: list[ConfigWarning], stack: tuple[str, ...]
) -> Iterator[_Tok]:
    pattern = os.path.join(base_dir, os.path.expanduser(tok.text))
    matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
    if not matches:
        warnings.append(ConfigWarning(tok.file, tok.line, f"include {tok.text}: no file matches"))
    for path in matches:
        real = os.path.realpath(path)
        if real in stack:
            chain = " -> ".join([*stack[stack.index(real) :], real])
            raise _error(tok, f"include loop: {chain}")
        try:
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
        except OSError as exc:
            # keepalived's plain 'include' does not fail on unreadable files either.
            warnings.append(
                ConfigWarning(tok.file, tok.line, f"include {tok.text}: {exc.strerror}")
            )
            continue
        yield from _tokenize(text, path, warnings, (*stack, real))


# ------------------------------------------------------------------ statement tree


@dataclass
class _Stmt:
    words: list[_Tok]
    block: list[_Stmt] | None = None

    @property
    def head(self) -> _Tok:
        return self.words[0]

    @property
    def keyword(self) -> str:
        return self.words[0].text

    @property
    def args(self) -> list[_Tok]:
        return self.words[1:]


def _parse_block(toks: list[_Tok], i: int, opener: _Tok | None) -> tuple[list[_Stmt], int]:
    stmts: list[_Stmt] = []
    words: list[_Tok] = []
    while i < len(toks):
        tok = toks[i]
        if tok.kind == _WORD:
            words.append(tok)
            i += 1
            continue
        if words:
            stmts.append(_Stmt(words))
            words = []
        if tok.kind == _OPEN:
            # Opens the block of the statement before it: "keyword {", or "keyword" with
            # the "{" on a line of its own after it.
            if not stmts or stmts[-1].block is not None:
                raise _error(tok, "'{' without a keyword before it")
            stmts[-1].block, i = _parse_block(toks, i + 1, tok)
            continue
        if tok.kind == _CLOSE:
            if opener is None:
                raise _error(tok, "unbalanced '}': no block is open")
            return stmts, i + 1
        i += 1  # end of line
    if words:
        stmts.append(_Stmt(words))
    if opener is not None:
        raise _error(opener, "unbalanced '{': this block is never closed")
    return stmts, i


# ------------------------------------------------------------------------- parser

_ADDRESS_FLAGS = frozenset(
    {"home", "-nodad", "nodad", "mngtmpaddr", "noprefixroute", "autojoin", "no_track", "use_vmac"}
)
_ADDRESS_VALUED = frozenset({"peer", "preferred_lft", "track_group", "metric"})
_UNSUPPORTED_CHECKERS = frozenset(
    {
        "SSL_GET",
        "MISC_CHECK",
        "SMTP_CHECK",
        "DNS_CHECK",
        "PING_CHECK",
        "UDP_CHECK",
        "FILE_CHECK",
        "BFD_CHECK",
    }
)


class _Parser:
    def __init__(self) -> None:
        self.warnings: list[ConfigWarning] = []
        self.config = Config()
        # Where each instance/keyword was set, for the checks that run after parsing.
        self.pos: dict[tuple[int, str], _Tok] = {}

    # ----- helpers

    def warn(self, tok: _Tok, message: str) -> None:
        self.warnings.append(ConfigWarning(tok.file, tok.line, message))

    def unknown(self, stmt: _Stmt, where: str) -> None:
        self.warn(stmt.head, f"unknown keyword '{stmt.keyword}' in {where}; ignored")

    def no_block(self, stmt: _Stmt) -> None:
        if stmt.block is not None:
            raise _error(stmt.head, f"'{stmt.keyword}' does not take a {{ }} block")

    def need_block(self, stmt: _Stmt) -> list[_Stmt]:
        if stmt.block is None:
            raise _error(stmt.head, f"'{stmt.keyword}' needs a {{ ... }} block")
        return stmt.block

    def value(self, stmt: _Stmt) -> _Tok:
        """The single argument of ``keyword VALUE``."""
        self.no_block(stmt)
        if not stmt.args:
            raise _error(stmt.head, f"'{stmt.keyword}' needs a value")
        if len(stmt.args) > 1:
            self.warn(stmt.args[1], f"'{stmt.keyword}': extra values ignored")
        return stmt.args[0]

    def flag(self, stmt: _Stmt) -> bool:
        self.no_block(stmt)
        if stmt.args:
            self.warn(stmt.args[0], f"'{stmt.keyword}' takes no value; extra values ignored")
        return True

    @staticmethod
    def integer(tok: _Tok, what: str, lo: int, hi: int) -> int:
        if not re.fullmatch(r"[+-]?\d+", tok.text):
            raise _error(tok, f"'{what}' needs a whole number, got '{tok.text}'")
        number = int(tok.text)
        if not lo <= number <= hi:
            raise _error(tok, f"'{what}' must be in {lo}..{hi}, got {number}")
        return number

    @staticmethod
    def decimal(tok: _Tok, what: str, lo: float, hi: float) -> float:
        if not re.fullmatch(r"\d+(\.\d*)?|\.\d+", tok.text):
            raise _error(tok, f"'{what}' needs a number, got '{tok.text}'")
        number = float(tok.text)
        if not lo <= number <= hi:
            raise _error(tok, f"'{what}' must be in {_num(lo)}..{_num(hi)}, got {tok.text}")
        return number

    @staticmethod
    def ipv4(tok: _Tok, what: str) -> IPv4Address:
        try:
            address = ip_address(tok.text)
        except ValueError:
            raise _error(tok, f"'{what}': '{tok.text}' is not an IP address") from None
        if not isinstance(address, IPv4Address):
            raise _error(tok, f"'{what}': IPv6 is not supported by this testbed")
        return address

    def int_value(self, stmt: _Stmt, lo: int, hi: int) -> int:
        return self.integer(self.value(stmt), stmt.keyword, lo, hi)

    def float_value(self, stmt: _Stmt, lo: float, hi: float) -> float:
        return self.decimal(self.value(stmt), stmt.keyword, lo, hi)

    def script(self, stmt: _Stmt) -> str:
        """A notify script: one word, or a quoted string with its arguments.

        Further words are keepalived's run-as user and group, which we do not support.
        """
        self.no_block(stmt)
        if not stmt.args:
            raise _error(stmt.head, f"'{stmt.keyword}' needs a script")
        if len(stmt.args) > 1:
            self.warn(stmt.args[1], f"'{stmt.keyword}': run-as user/group not supported; ignored")
        return stmt.args[0].text

    # ----- top level

    def parse(self, stmts: list[_Stmt]) -> None:
        for stmt in stmts:
            kw = stmt.keyword
            if kw == "global_defs":
                self.global_defs(self.need_block(stmt))
            elif kw in ("vrrp_instance", "vrrp_sync_group", "vrrp_script"):
                name = self.block_name(stmt)
                {
                    "vrrp_instance": self.instance,
                    "vrrp_sync_group": self.sync_group,
                    "vrrp_script": self.vrrp_script,
                }[kw](stmt, name)
            elif kw == "virtual_server":
                self.virtual_server(stmt)
            else:
                self.warn(stmt.head, f"unknown or unsupported block '{kw}'; ignored")
        self.finish()

    def block_name(self, stmt: _Stmt) -> str:
        self.need_block(stmt)
        if len(stmt.args) != 1:
            raise _error(stmt.head, f"'{stmt.keyword}' needs exactly one name")
        return stmt.args[0].text

    def global_defs(self, stmts: list[_Stmt]) -> None:
        g = self.config.global_defs
        for stmt in stmts:
            kw = stmt.keyword
            if kw == "router_id":
                g.router_id = self.value(stmt).text
            elif kw == "vrrp_version":
                g.vrrp_version = self.int_value(stmt, 2, 3)
            elif kw == "vrrp_garp_master_delay":
                g.vrrp_garp_master_delay_s = self.float_value(stmt, 0, 86400)
            elif kw == "vrrp_garp_master_repeat":
                g.vrrp_garp_master_repeat = self.int_value(stmt, 1, 2**31 - 1)
            elif kw == "vrrp_garp_master_refresh":
                g.vrrp_garp_master_refresh_s = self.float_value(stmt, 0, 86400)
            elif kw == "vrrp_garp_master_refresh_repeat":
                g.vrrp_garp_master_refresh_repeat = self.int_value(stmt, 1, 2**31 - 1)
            else:
                self.warn(stmt.head, f"global_defs '{kw}' is not used by this testbed; ignored")

    # ----- vrrp_instance

    def instance(self, stmt: _Stmt, name: str) -> None:
        if name in self.config.instances:
            raise _error(stmt.args[0], f"vrrp_instance {name} is defined twice")
        inst = VrrpInstance(name)
        self.pos[(id(inst), "vrrp_instance")] = stmt.head
        for sub in self.need_block(stmt):
            self.pos[(id(inst), sub.keyword)] = sub.head
            self.instance_keyword(inst, sub)
        if inst.virtual_router_id == 0:
            raise _error(stmt.head, f"vrrp_instance {name} has no virtual_router_id")
        self.config.instances[name] = inst

    def instance_keyword(self, inst: VrrpInstance, stmt: _Stmt) -> None:
        kw = stmt.keyword
        if kw == "state":
            tok = self.value(stmt)
            if tok.text not in ("MASTER", "BACKUP"):
                raise _error(tok, f"'state' must be MASTER or BACKUP, got '{tok.text}'")
            inst.state = tok.text
        elif kw == "interface":
            inst.interface = self.value(stmt).text
        elif kw == "virtual_router_id":
            inst.virtual_router_id = self.int_value(stmt, 1, 255)
        elif kw == "priority":
            inst.priority = self.int_value(stmt, 1, OWNER_PRIORITY)
        elif kw == "advert_int":
            inst.advert_int_s = self.float_value(stmt, 0.01, 255)
        elif kw == "version":
            inst.version = self.int_value(stmt, 2, 3)
        elif kw == "nopreempt":
            inst.nopreempt = self.flag(stmt)
        elif kw == "preempt":
            inst.nopreempt = not self.flag(stmt)
        elif kw == "preempt_delay":
            inst.preempt_delay_s = self.float_value(stmt, 0, 1000)
        elif kw == "authentication":
            inst.authentication = self.authentication(stmt)
        elif kw == "virtual_ipaddress":
            inst.virtual_ipaddresses = [self.virtual_address(s) for s in self.need_block(stmt)]
        elif kw == "unicast_src_ip":
            inst.unicast_src_ip = self.ipv4(self.value(stmt), kw)
        elif kw == "unicast_peer":
            inst.unicast_peers = [self.unicast_peer(s) for s in self.need_block(stmt)]
        elif kw == "track_interface":
            inst.track_interfaces = [self.track_interface(s) for s in self.need_block(stmt)]
        elif kw == "track_script":
            inst.track_scripts = [self.track_script(s) for s in self.need_block(stmt)]
        elif kw in ("notify_master", "notify_backup", "notify_fault", "notify_stop", "notify"):
            setattr(inst, kw, self.script(stmt))
        elif kw == "garp_master_delay":
            inst.garp_master_delay_s = self.float_value(stmt, 0, 86400)
        elif kw == "garp_master_repeat":
            inst.garp_master_repeat = self.int_value(stmt, 1, 2**31 - 1)
        elif kw == "garp_master_refresh":
            inst.garp_master_refresh_s = self.float_value(stmt, 0, 86400)
        elif kw == "garp_master_refresh_repeat":
            inst.garp_master_refresh_repeat = self.int_value(stmt, 1, 2**31 - 1)
        else:
            self.unknown(stmt, f"vrrp_instance {inst.name}")

    def authentication(self, stmt: _Stmt) -> Authentication:
        auth_type = "PASS"
        auth_pass: str | None = None
        for sub in self.need_block(stmt):
            if sub.keyword == "auth_type":
                tok = self.value(sub)
                if tok.text == "AH":
                    raise _error(
                        tok,
                        "auth_type AH (IPsec AH) is not supported; use PASS or no authentication",
                    )
                if tok.text != "PASS":
                    raise _error(tok, f"'auth_type' must be PASS or AH, got '{tok.text}'")
            elif sub.keyword == "auth_pass":
                tok = self.value(sub)
                if len(tok.text.encode()) > 8:
                    self.warn(tok, "auth_pass: only the first 8 characters are used")
                auth_pass = tok.text
            else:
                self.unknown(sub, "authentication")
        if auth_pass is None:
            raise _error(stmt.head, "authentication needs an auth_pass")
        return Authentication(auth_pass, auth_type)

    def virtual_address(self, stmt: _Stmt) -> VirtualAddress:
        self.no_block(stmt)
        addr_text, _, plen_text = stmt.head.text.partition("/")
        address = self.ipv4(
            _Tok(_WORD, addr_text, stmt.head.file, stmt.head.line), "virtual_ipaddress"
        )
        prefix_len = None
        if plen_text:
            prefix_len = self.integer(
                _Tok(_WORD, plen_text, stmt.head.file, stmt.head.line), "prefix length", 0, 32
            )
        options: dict[str, str] = {}
        brd: IPv4Address | None = None
        args = iter(stmt.args)
        for tok in args:
            if tok.text in ("dev", "label", "scope", "brd"):
                value = next(args, None)
                if value is None:
                    raise _error(tok, f"virtual_ipaddress '{tok.text}' needs a value")
                if tok.text == "brd":
                    brd = self.ipv4(value, "brd")
                else:
                    options[tok.text] = value.text
            elif tok.text in _ADDRESS_FLAGS:
                self.warn(tok, f"virtual_ipaddress option '{tok.text}' not supported; ignored")
            elif tok.text in _ADDRESS_VALUED:
                next(args, None)
                self.warn(tok, f"virtual_ipaddress option '{tok.text}' not supported; ignored")
            else:
                raise _error(tok, f"unknown virtual_ipaddress option '{tok.text}'")
        return VirtualAddress(
            address, prefix_len, options.get("dev"), options.get("label"), brd, options.get("scope")
        )

    def unicast_peer(self, stmt: _Stmt) -> IPv4Address:
        self.no_block(stmt)
        if stmt.args:
            self.warn(stmt.args[0], "unicast_peer min_ttl/max_ttl not supported; ignored")
        return self.ipv4(stmt.head, "unicast_peer")

    def weight(self, stmt: _Stmt, lo: int, hi: int) -> tuple[int | None, bool | None]:
        """Parses ``NAME [weight N [reverse|noreverse]]``."""
        self.no_block(stmt)
        args = stmt.args
        if not args:
            return None, None
        if args[0].text != "weight":
            raise _error(args[0], f"expected 'weight' after '{stmt.keyword}', got '{args[0].text}'")
        if len(args) < 2:
            raise _error(args[0], "'weight' needs a value")
        weight = self.integer(args[1], "weight", lo, hi)
        reverse = None
        if len(args) > 2:
            if args[2].text not in ("reverse", "noreverse"):
                raise _error(args[2], f"expected reverse or noreverse, got '{args[2].text}'")
            reverse = args[2].text == "reverse"
        return weight, reverse

    def track_interface(self, stmt: _Stmt) -> TrackInterface:
        weight, reverse = self.weight(stmt, -253, 253)
        return TrackInterface(stmt.keyword, weight or 0, bool(reverse))

    def track_script(self, stmt: _Stmt) -> TrackScript:
        weight, reverse = self.weight(stmt, -253, 253)
        return TrackScript(stmt.keyword, weight, reverse)

    # ----- vrrp_sync_group, vrrp_script

    def sync_group(self, stmt: _Stmt, name: str) -> None:
        if name in self.config.sync_groups:
            raise _error(stmt.args[0], f"vrrp_sync_group {name} is defined twice")
        group = VrrpSyncGroup(name)
        for sub in self.need_block(stmt):
            kw = sub.keyword
            if kw == "group":
                for entry in self.need_block(sub):
                    self.no_block(entry)
                    for tok in entry.words:
                        self.pos[(id(group), tok.text)] = tok
                        group.group.append(tok.text)
            elif kw in ("notify_master", "notify_backup", "notify_fault", "notify_stop", "notify"):
                setattr(group, kw, self.script(sub))
            else:
                self.unknown(sub, f"vrrp_sync_group {name}")
        self.pos[(id(group), "vrrp_sync_group")] = stmt.head
        self.config.sync_groups[name] = group

    def vrrp_script(self, stmt: _Stmt, name: str) -> None:
        if name in self.config.scripts:
            raise _error(stmt.args[0], f"vrrp_script {name} is defined twice")
        script = VrrpScript(name)
        for sub in self.need_block(stmt):
            kw = sub.keyword
            if kw == "script":
                self.no_block(sub)
                if not sub.args:
                    raise _error(sub.head, "'script' needs a command")
                script.script = " ".join(tok.text for tok in sub.args)
            elif kw == "interval":
                script.interval_s = self.float_value(sub, 0.001, 86400)
            elif kw == "timeout":
                script.timeout_s = self.float_value(sub, 0.001, 86400)
            elif kw == "weight":
                self.no_block(sub)
                if not sub.args:
                    raise _error(sub.head, "'weight' needs a value")
                script.weight = self.integer(sub.args[0], "weight", -253, 253)
                if len(sub.args) > 1 and sub.args[1].text not in ("reverse", "noreverse"):
                    raise _error(
                        sub.args[1], f"expected reverse or noreverse, got '{sub.args[1].text}'"
                    )
                script.weight_reverse = len(sub.args) > 1 and sub.args[1].text == "reverse"
            elif kw in ("rise", "fall"):
                setattr(script, kw, self.int_value(sub, 1, 2**31 - 1))
            elif kw == "init_fail":
                script.init_fail = self.flag(sub)
            elif kw == "user":
                self.warn(sub.head, "vrrp_script 'user' not supported; ignored")
            else:
                self.unknown(sub, f"vrrp_script {name}")
        if not script.script:
            raise _error(stmt.head, f"vrrp_script {name} has no 'script'")
        self.config.scripts[name] = script

    # ----- virtual_server

    def virtual_server(self, stmt: _Stmt) -> None:
        block = self.need_block(stmt)
        args = stmt.args
        vs = VirtualServer()
        if args and args[0].text == "fwmark":
            if len(args) < 2:
                raise _error(args[0], "'fwmark' needs a value")
            vs.fwmark = self.integer(args[1], "fwmark", 1, 2**32 - 1)
        elif args and args[0].text == "group":
            self.warn(stmt.head, "virtual_server group is not supported; ignored")
            return
        elif args:
            vs.address = self.ipv4(args[0], "virtual_server")
            if len(args) > 1:
                vs.port = self.integer(args[1], "port", 0, 65535)
        else:
            raise _error(stmt.head, "'virtual_server' needs IP [PORT] or 'fwmark N'")
        for sub in block:
            self.virtual_server_keyword(vs, sub)
        self.config.virtual_servers.append(vs)

    def virtual_server_keyword(self, vs: VirtualServer, stmt: _Stmt) -> None:
        kw = stmt.keyword
        if kw == "delay_loop":
            vs.delay_loop_s = self.float_value(stmt, 0.001, 86400)
        elif kw in ("lb_algo", "lvs_sched"):
            tok = self.value(stmt)
            if tok.text not in SCHEDULERS:
                raise _error(tok, f"unknown scheduler '{tok.text}'")
            vs.lb_algo = tok.text
        elif kw in ("lb_kind", "lvs_method"):
            self.no_block(stmt)
            if not stmt.args:
                raise _error(stmt.head, f"'{kw}' needs a value")
            tok = stmt.args[0]
            if tok.text.upper() not in LB_KINDS:
                raise _error(tok, f"'{kw}' must be NAT, DR or TUN, got '{tok.text}'")
            if len(stmt.args) > 1:
                self.warn(stmt.args[1], f"'{kw}' tunnel options not supported; ignored")
            vs.lb_kind = tok.text.upper()
        elif kw == "persistence_timeout":
            self.no_block(stmt)
            vs.persistence_timeout_s = (
                self.integer(stmt.args[0], kw, 1, 2**31 - 1)
                if stmt.args
                else DEFAULT_PERSISTENCE_TIMEOUT_S
            )
        elif kw == "persistence_granularity":
            vs.persistence_granularity = self.ipv4(self.value(stmt), kw)
        elif kw == "protocol":
            tok = self.value(stmt)
            if tok.text.upper() not in PROTOCOLS:
                raise _error(tok, f"'protocol' must be TCP, UDP or SCTP, got '{tok.text}'")
            vs.protocol = tok.text.upper()
        elif kw == "real_server":
            vs.real_servers.append(self.real_server(stmt))
        else:
            self.unknown(stmt, "virtual_server")

    def real_server(self, stmt: _Stmt) -> RealServer:
        block = self.need_block(stmt)
        if not stmt.args:
            raise _error(stmt.head, "'real_server' needs IP [PORT]")
        rs = RealServer(self.ipv4(stmt.args[0], "real_server"))
        if len(stmt.args) > 1:
            rs.port = self.integer(stmt.args[1], "port", 0, 65535)
        for sub in block:
            kw = sub.keyword
            if kw == "weight":
                rs.weight = self.int_value(sub, 0, 65535)
            elif kw == "inhibit_on_failure":
                rs.inhibit_on_failure = self.flag(sub)
            elif kw == "TCP_CHECK":
                rs.checkers.append(self.checker(sub, TcpCheck()))
            elif kw == "HTTP_GET":
                rs.checkers.append(self.checker(sub, HttpGet()))
            elif kw in _UNSUPPORTED_CHECKERS:
                self.warn(sub.head, f"{kw} is not supported by this testbed; ignored")
            else:
                self.unknown(sub, "real_server")
        return rs

    def checker(self, stmt: _Stmt, check: Checker) -> Checker:
        for sub in self.need_block(stmt):
            kw = sub.keyword
            if kw == "connect_timeout":
                check.connect_timeout_s = self.float_value(sub, 0.001, 86400)
            elif kw == "connect_port":
                check.connect_port = self.int_value(sub, 1, 65535)
            elif kw in ("retry", "nb_get_retry"):
                check.retry = self.int_value(sub, 0, 2**31 - 1)
            elif kw == "delay_before_retry":
                check.delay_before_retry_s = self.float_value(sub, 0, 86400)
            elif kw == "url" and isinstance(check, HttpGet):
                check.urls.append(self.url(sub))
            else:
                self.unknown(sub, stmt.keyword)
        return check

    def url(self, stmt: _Stmt) -> UrlCheck:
        path: str | None = None
        digest: str | None = None
        codes: list[tuple[int, int]] = []
        for sub in self.need_block(stmt):
            if sub.keyword == "path":
                path = self.value(sub).text
            elif sub.keyword == "digest":
                digest = self.value(sub).text
            elif sub.keyword == "status_code":
                self.no_block(sub)
                if not sub.args:
                    raise _error(sub.head, "'status_code' needs a value")
                for tok in sub.args:
                    lo_text, _, hi_text = tok.text.partition("-")
                    lo = self.integer(
                        _Tok(_WORD, lo_text, tok.file, tok.line), "status_code", 100, 599
                    )
                    hi = (
                        self.integer(
                            _Tok(_WORD, hi_text, tok.file, tok.line), "status_code", lo, 599
                        )
                        if hi_text
                        else lo
                    )
                    codes.append((lo, hi))
            else:
                self.unknown(sub, "url")
        if path is None:
            raise _error(stmt.head, "'url' needs a 'path'")
        return UrlCheck(path, tuple(codes), digest)

    # ----- checks across the whole file

    def finish(self) -> None:
        cfg = self.config
        member_of: dict[str, str] = {}
        for group in cfg.sync_groups.values():
            for name in group.group:
                tok = self.pos[(id(group), name)]
                if name not in cfg.instances:
                    raise _error(tok, f"vrrp_sync_group {group.name}: no vrrp_instance {name}")
                if name in member_of:
                    raise _error(
                        tok, f"vrrp_instance {name} is already in sync group {member_of[name]}"
                    )
                member_of[name] = group.name
        seen_vrids: dict[tuple[str | None, int], str] = {}
        for inst in cfg.instances.values():
            self.check_instance(inst, inst.name in member_of)
            if not inst.unicast_peers:
                key = (inst.interface, inst.virtual_router_id)
                if key in seen_vrids:
                    raise _error(
                        self.pos[(id(inst), "virtual_router_id")],
                        f"virtual_router_id {inst.virtual_router_id} is already used on "
                        f"{inst.interface} by vrrp_instance {seen_vrids[key]}",
                    )
                seen_vrids[key] = inst.name

    def check_instance(self, inst: VrrpInstance, in_sync_group: bool) -> None:
        """keepalived's vrrp_complete_instance() checks that concern this subset."""
        cfg = self.config
        here = self.pos[(id(inst), "vrrp_instance")]

        def at(keyword: str) -> _Tok:
            return self.pos.get((id(inst), keyword), here)

        version = cfg.effective_version(inst)
        for tracked in inst.track_scripts:
            if tracked.name not in cfg.scripts:
                raise _error(at("track_script"), f"track_script: no vrrp_script {tracked.name}")
            weight = (
                tracked.weight if tracked.weight is not None else cfg.scripts[tracked.name].weight
            )
            if weight and in_sync_group:
                self.warn(
                    at("track_script"),
                    f"track_script {tracked.name}: weights are ignored in a sync group",
                )
        if in_sync_group and any(t.weight for t in inst.track_interfaces):
            self.warn(at("track_interface"), "track_interface weights are ignored in a sync group")
        if not inst.virtual_ipaddresses:
            if version == 3:
                raise _error(here, f"vrrp_instance {inst.name}: VRRPv3 needs a virtual_ipaddress")
            self.warn(here, f"vrrp_instance {inst.name} has no virtual_ipaddress")
        if version == 2 and inst.advert_int_s != int(inst.advert_int_s):
            self.warn(
                at("advert_int"), "VRRPv2 advert_int must be whole seconds; it will be rounded"
            )
        if version == 3 and inst.advert_int_s > 40.95:
            raise _error(at("advert_int"), "VRRPv3 advert_int must be at most 40.95 s")
        if version == 3 and inst.authentication is not None:
            self.warn(at("authentication"), "VRRPv3 has no authentication; ignored")
        if inst.nopreempt and inst.effective_preempt:
            reason = "priority 255" if inst.base_priority == OWNER_PRIORITY else "state MASTER"
            self.warn(at("nopreempt"), f"nopreempt does not work with {reason}; ignored")
        if inst.preempt_delay_s and not inst.effective_preempt_delay_s:
            self.warn(
                at("preempt_delay"),
                "preempt_delay does not work with state MASTER or nopreempt; ignored",
            )
        if inst.base_priority == OWNER_PRIORITY and inst.state == "BACKUP":
            self.warn(
                at("state"), "priority 255 (address owner) with state BACKUP starts as a backup"
            )


def parse_config(text: str, source: str = "<string>") -> ParseResult:
    """Parses keepalived.conf text; ``include`` is relative to ``source``'s directory."""
    parser = _Parser()
    stack = (os.path.realpath(source),) if os.path.exists(source) else ()
    toks = list(_tokenize(text, source, parser.warnings, stack))
    stmts, _ = _parse_block(toks, 0, None)
    parser.parse(stmts)
    return ParseResult(parser.config, parser.warnings)


def load_config(path: str | os.PathLike[str]) -> ParseResult:
    with open(path, encoding="utf-8") as handle:
        return parse_config(handle.read(), os.fspath(path))


# ----------------------------------------------------------------------- renderer

_BARE = re.compile(r"[^\s\"'#!{}\\]+")


def _q(text: str) -> str:
    """A word as keepalived.conf text, quoted when it would not survive as one bare word."""
    if _BARE.fullmatch(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _num(value: float) -> str:
    return str(int(value)) if value == int(value) else f"{value:.6f}".rstrip("0")


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.depth = 0

    def line(self, *words: str) -> None:
        self.lines.append("    " * self.depth + " ".join(words) if words else "")

    def opt(self, keyword: str, value: object) -> None:
        if value is None:
            return
        if isinstance(value, bool):
            if value:
                self.line(keyword)
        elif isinstance(value, float):
            self.line(keyword, _num(value))
        elif isinstance(value, str):
            self.line(keyword, _q(value))
        else:
            self.line(keyword, str(value))

    def block(self, *words: str) -> _Writer:
        self.line(*words, "{")
        self.depth += 1
        return self

    def __enter__(self) -> _Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.depth -= 1
        self.line("}")


def render_config(config: Config) -> str:
    """keepalived.conf text for ``config``; parsing it gives back an equal Config."""
    w = _Writer()
    g = config.global_defs
    if g != GlobalDefs():
        with w.block("global_defs"):
            w.opt("router_id", g.router_id)
            w.opt("vrrp_version", g.vrrp_version)
            w.opt("vrrp_garp_master_delay", g.vrrp_garp_master_delay_s)
            w.opt("vrrp_garp_master_repeat", g.vrrp_garp_master_repeat)
            w.opt("vrrp_garp_master_refresh", g.vrrp_garp_master_refresh_s)
            w.opt("vrrp_garp_master_refresh_repeat", g.vrrp_garp_master_refresh_repeat)
        w.line()
    for script in config.scripts.values():
        _render_script(w, script)
    for group in config.sync_groups.values():
        with w.block("vrrp_sync_group", _q(group.name)):
            with w.block("group"):
                for name in group.group:
                    w.line(_q(name))
            _render_notifies(w, group)
        w.line()
    for inst in config.instances.values():
        _render_instance(w, inst)
    for vs in config.virtual_servers:
        _render_virtual_server(w, vs)
    while w.lines and not w.lines[-1]:
        w.lines.pop()
    return "\n".join(w.lines) + "\n"


def _render_script(w: _Writer, script: VrrpScript) -> None:
    with w.block("vrrp_script", _q(script.name)):
        w.opt("script", script.script)
        w.opt("interval", float(script.interval_s))
        w.opt("timeout", script.timeout_s)
        if script.weight or script.weight_reverse:
            w.line("weight", str(script.weight), *(["reverse"] if script.weight_reverse else []))
        w.opt("rise", script.rise)
        w.opt("fall", script.fall)
        w.opt("init_fail", script.init_fail)
    w.line()


def _render_notifies(w: _Writer, obj: VrrpInstance | VrrpSyncGroup) -> None:
    for keyword in ("notify_master", "notify_backup", "notify_fault", "notify_stop", "notify"):
        w.opt(keyword, getattr(obj, keyword))


def _render_weighted(w: _Writer, name: str, weight: int | None, reverse: bool | None) -> None:
    words = [_q(name)]
    if weight is not None:
        words += ["weight", str(weight)]
        if reverse is not None:
            words.append("reverse" if reverse else "noreverse")
    w.line(*words)


def _render_instance(w: _Writer, inst: VrrpInstance) -> None:
    with w.block("vrrp_instance", _q(inst.name)):
        w.opt("state", inst.state)
        w.opt("interface", inst.interface)
        w.opt("virtual_router_id", inst.virtual_router_id)
        w.opt("priority", inst.priority)
        w.opt("advert_int", float(inst.advert_int_s))
        w.opt("version", inst.version)
        w.opt("nopreempt", inst.nopreempt)
        if inst.preempt_delay_s:
            w.opt("preempt_delay", float(inst.preempt_delay_s))
        if inst.authentication is not None:
            with w.block("authentication"):
                w.opt("auth_type", inst.authentication.auth_type)
                w.opt("auth_pass", inst.authentication.auth_pass)
        w.opt("unicast_src_ip", inst.unicast_src_ip)
        if inst.unicast_peers:
            with w.block("unicast_peer"):
                for peer in inst.unicast_peers:
                    w.line(str(peer))
        if inst.virtual_ipaddresses:
            with w.block("virtual_ipaddress"):
                for vip in inst.virtual_ipaddresses:
                    w.line(*_vip_words(vip))
        if inst.track_interfaces:
            with w.block("track_interface"):
                for ti in inst.track_interfaces:
                    if ti.weight or ti.reverse:
                        _render_weighted(w, ti.name, ti.weight, ti.reverse or None)
                    else:
                        w.line(_q(ti.name))
        if inst.track_scripts:
            with w.block("track_script"):
                for ts in inst.track_scripts:
                    _render_weighted(w, ts.name, ts.weight, ts.reverse)
        _render_notifies(w, inst)
        w.opt("garp_master_delay", inst.garp_master_delay_s)
        w.opt("garp_master_repeat", inst.garp_master_repeat)
        w.opt("garp_master_refresh", inst.garp_master_refresh_s)
        w.opt("garp_master_refresh_repeat", inst.garp_master_refresh_repeat)
    w.line()


def _vip_words(vip: VirtualAddress) -> list[str]:
    words = [str(vip.address) + (f"/{vip.prefix_len}" if vip.prefix_len is not None else "")]
    for keyword, value in (
        ("brd", vip.brd),
        ("dev", vip.dev),
        ("scope", vip.scope),
        ("label", vip.label),
    ):
        if value is not None:
            words += [keyword, _q(str(value))]
    return words


def _render_virtual_server(w: _Writer, vs: VirtualServer) -> None:
    if vs.fwmark is not None:
        head = ["fwmark", str(vs.fwmark)]
    else:
        head = [str(vs.address), *([str(vs.port)] if vs.port is not None else [])]
    with w.block("virtual_server", *head):
        w.opt("delay_loop", float(vs.delay_loop_s))
        w.opt("lb_algo", vs.lb_algo)
        w.opt("lb_kind", vs.lb_kind)
        w.opt("persistence_timeout", vs.persistence_timeout_s)
        w.opt("persistence_granularity", vs.persistence_granularity)
        w.opt("protocol", vs.protocol)
        for rs in vs.real_servers:
            w.line()
            with w.block(
                "real_server", str(rs.address), *([str(rs.port)] if rs.port is not None else [])
            ):
                w.opt("weight", rs.weight)
                w.opt("inhibit_on_failure", rs.inhibit_on_failure)
                for check in rs.checkers:
                    _render_checker(w, check)
    w.line()


def _render_checker(w: _Writer, check: Checker) -> None:
    with w.block("HTTP_GET" if isinstance(check, HttpGet) else "TCP_CHECK"):
        if isinstance(check, HttpGet):
            for url in check.urls:
                with w.block("url"):
                    w.opt("path", url.path)
                    w.opt("digest", url.digest)
                    if url.status_codes:
                        w.line(
                            "status_code",
                            *(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in url.status_codes),
                        )
        w.opt("connect_port", check.connect_port)
        w.opt("connect_timeout", check.connect_timeout_s)
        w.opt("retry", check.retry)
        w.opt("delay_before_retry", check.delay_before_retry_s)
