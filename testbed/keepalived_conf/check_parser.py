"""LVS keywords into `check_model` (keepalived's check/check_parser.c and the checkers'
parsers): ``virtual_server_group``, ``virtual_server`` with ``real_server``, ``sorry_server``
and quorum, the checkers, and the ``SSL`` block; then keepalived's validate_check_config()
corrections, each with its warning (a quorum above the pool's total weight is lowered, a
hysteresis not below the quorum is lowered, DR/TUN real servers take the service's port, a
virtual server without real servers is dropped).

Refused (`ConfigError`): IPv6, a group that names no ``virtual_server_group``, groups that
stand for more than `MAX_GROUP_SERVICES` services. Skipped with a warning: FILE_CHECK and
BFD_CHECK (no track files or BFD here), scheduler flags and ``ops`` the director does not
implement, ``ha_suspend``, SMTP alerts and SNMP names.

Not for: global_defs (`global_parser`) or VRRP (`vrrp_parser`).
"""

from __future__ import annotations

import dataclasses
import re
from ipaddress import IPv4Address, IPv4Network, ip_network

from testbed.keepalived_conf.lexer import Stmt, Tok, error_at
from testbed.keepalived_conf.model import (
    CHECKER_KINDS,
    DEFAULT_PERSISTENCE_TIMEOUT_S,
    DNS_TYPES,
    HTTP_PROTOCOLS,
    LB_ALGOS,
    LB_KINDS,
    MAX_WEIGHT,
    PROTOCOLS,
    CheckBase,
    DnsCheck,
    GroupEntry,
    HttpGet,
    MiscCheck,
    RealServer,
    Script,
    SmtpCheck,
    SorryServer,
    SslContext,
    UdpCheck,
    UrlCheck,
    VirtualServer,
    VirtualServerGroup,
    describe,
)
from testbed.keepalived_conf.reader import MAX_I31, MAX_U32, Reader

MAX_GROUP_SERVICES = 1024
UNSUPPORTED_CHECKERS = {
    "FILE_CHECK": "track files are not supported",
    "BFD_CHECK": "BFD is not supported",
}
SCHEDULER_FLAGS = frozenset(
    {"hashed", "ops", "flag-1", "flag-2", "flag-3", "sh-port", "sh-fallback", "mh-port"}
    | {"mh-fallback"}
)
_HEX = re.compile(r"[0-9A-Fa-fXx]+")


def parse_hex(tok: Tok, words: list[Tok], wildcard: bool) -> tuple[bytes, bytes | None]:
    """keepalived's read_hex_str: blank-separated groups of hex digits, read in pairs from the
    left (an odd last digit is a byte of its own: ``Ab12f 3`` is AB 12 0F 03). With
    ``wildcard``, ``X`` digits match anything: the second value is the mask of such bits."""
    data, mask = bytearray(), bytearray()
    for word in words:
        text = word.text
        if not _HEX.fullmatch(text) or (not wildcard and re.search("[Xx]", text)):
            raise error_at(word, f"'{tok.text}': '{text}' is not a hex string")
        for i in range(0, len(text), 2):
            pair = text[i : i + 2]
            byte = ignore = 0
            for digit in pair:
                byte <<= 4
                ignore <<= 4
                if digit in "Xx":
                    ignore |= 0xF
                else:
                    byte |= int(digit, 16)
            data.append(byte)
            mask.append(ignore)
    if not data:
        raise error_at(tok, f"'{tok.text}' needs a hex string")
    return bytes(data), (bytes(mask) if any(mask) else None)


class CheckParser:
    """The LVS blocks of one parse (`Reader` holds the config and the warnings)."""

    def __init__(self, r: Reader) -> None:
        self.r = r

    # ----- virtual_server_group

    def group(self, stmt: Stmt) -> None:
        r = self.r
        name = r.block_name(stmt)
        if name in r.config.virtual_server_groups:
            raise error_at(stmt.args[0], f"virtual_server_group {name} is defined twice")
        group = VirtualServerGroup(name)
        for line in r.need_block(stmt):
            r.no_block(line)
            group.entries.append(self.group_entry(line))
        if not group.entries:
            r.warn(stmt.head, f"virtual server group {name} has no entries; ignored")
            return
        count = sum(max(1, len(e.addresses())) for e in group.entries)
        if count > MAX_GROUP_SERVICES:
            raise error_at(
                stmt.head,
                f"virtual_server_group {name} stands for {count} services; this testbed takes "
                f"at most {MAX_GROUP_SERVICES}",
            )
        r.config.virtual_server_groups[name] = group

    def group_entry(self, line: Stmt) -> GroupEntry:
        r = self.r
        if line.keyword == "fwmark":
            if not line.args:
                raise error_at(line.head, "'fwmark' needs a value")
            if len(line.args) > 1 and line.args[1].text == "inet6":
                raise error_at(line.args[1], "IPv6 is not supported by this testbed")
            return GroupEntry(fwmark=r.integer(line.args[0], "fwmark", 1, MAX_U32))
        first, last = self.address_range(line.head)
        port = r.integer(line.args[0], "port", 0, 65535) if line.args else None
        return GroupEntry(first, last, port)

    def address_range(self, tok: Tok) -> tuple[IPv4Address, IPv4Address]:
        """``A.B.C.D``, ``A.B.C.D-E``, ``A.B.C.D-E.F.G.H`` or ``A.B.C.D/NN``."""
        r = self.r
        text = tok.text
        if "/" in text:
            try:
                network = ip_network(text, strict=False)
            except ValueError:
                raise error_at(tok, f"'{text}' is not an address range") from None
            if not isinstance(network, IPv4Network):
                raise error_at(tok, "IPv6 is not supported by this testbed")
            return network.network_address, network.broadcast_address
        first_text, dash, last_text = text.partition("-")
        first = r.ipv4_text(tok, first_text, "virtual_server_group")
        if not dash:
            return first, first
        if "." in last_text:
            last = r.ipv4_text(tok, last_text, "virtual_server_group")
        else:
            octet = r.integer(r.sub_token(tok, last_text), "range end", 0, 255)
            last = IPv4Address((int(first) & ~0xFF) | octet)
        if last < first:
            raise error_at(tok, f"address range {text} ends before it starts")
        return first, last

    # ----- virtual_server

    def virtual_server(self, stmt: Stmt) -> None:
        r = self.r
        block = r.need_block(stmt)
        args = stmt.args
        vs = VirtualServer()
        r.pos[(id(vs), "virtual_server")] = stmt.head
        if args and args[0].text == "fwmark":
            if len(args) < 2:
                raise error_at(args[0], "'fwmark' needs a value")
            vs.fwmark = r.integer(args[1], "fwmark", 1, MAX_U32)
        elif args and args[0].text == "group":
            if len(args) < 2:
                raise error_at(args[0], "'group' needs a virtual_server_group name")
            vs.group = args[1].text
        elif args:
            vs.address = r.ipv4(args[0], "virtual_server")
            if len(args) > 1:
                vs.port = r.integer(args[1], "port", 0, 65535)
        else:
            raise error_at(stmt.head, "'virtual_server' needs IP [PORT], 'fwmark N' or 'group G'")
        given_weights: list[RealServer] = []
        for sub in block:
            self.virtual_server_keyword(vs, sub, given_weights)
        for rs in vs.real_servers:  # the virtual server's weight is its real servers' default
            if rs not in given_weights:
                rs.weight = vs.weight
        r.config.virtual_servers.append(vs)

    def virtual_server_keyword(
        self, vs: VirtualServer, stmt: Stmt, given_weights: list[RealServer]
    ) -> None:
        r = self.r
        kw = stmt.keyword
        if kw == "delay_loop":
            vs.delay_loop_s = r.float_value(stmt, 0.001, 86400)
        elif kw in ("lb_algo", "lvs_sched"):
            tok = r.value(stmt)
            if tok.text not in LB_ALGOS:
                raise error_at(tok, f"unknown scheduler '{tok.text}'")
            vs.lb_algo = tok.text
        elif kw in ("lb_kind", "lvs_method"):
            vs.lb_kind = self.lb_kind(stmt)
        elif kw == "persistence_timeout":
            r.no_block(stmt)
            vs.persistence_timeout_s = (
                r.integer(stmt.args[0], kw, 1, MAX_I31)
                if stmt.args
                else DEFAULT_PERSISTENCE_TIMEOUT_S
            )
        elif kw == "persistence_granularity":
            vs.persistence_granularity = r.ipv4(r.value(stmt), kw)
        elif kw == "protocol":
            tok = r.value(stmt)
            if tok.text.upper() not in PROTOCOLS:
                raise error_at(tok, f"'protocol' must be TCP, UDP or SCTP, got '{tok.text}'")
            vs.protocol = tok.text.upper()
            r.pos[(id(vs), "protocol")] = stmt.head
        elif kw == "ip_family":
            if r.string(stmt) != "inet":
                raise error_at(stmt.head, "ip_family: only inet (IPv4) is supported")
        elif kw == "real_server":
            rs = self.real_server(stmt, given_weights)
            vs.real_servers.append(rs)
        elif kw == "sorry_server":
            vs.sorry_server = self.sorry_server(stmt, vs.sorry_server)
        elif kw == "sorry_server_inhibit":
            r.flag(stmt)
            if vs.sorry_server is None:
                r.warn(stmt.head, "sorry_server_inhibit before or without sorry_server; ignored")
            else:
                vs.sorry_server.inhibit = True
        elif kw == "sorry_server_lvs_method":
            if vs.sorry_server is None:
                r.warn(stmt.head, "sorry_server_lvs_method without sorry_server; ignored")
            else:
                vs.sorry_server.lb_kind = self.lb_kind(stmt)
        elif kw == "alpha":
            vs.alpha = r.flag(stmt)
        elif kw == "omega":
            vs.omega = r.flag(stmt)
        elif kw == "quorum":
            vs.quorum = r.int_value(stmt, 1, MAX_U32)
        elif kw == "hysteresis":
            vs.hysteresis = r.int_value(stmt, 0, MAX_U32)
        elif kw in ("quorum_up", "quorum_down"):
            setattr(vs, kw, r.script(stmt))
        elif kw == "virtualhost":
            vs.virtualhost = r.string(stmt)
        elif kw == "inhibit_on_failure":
            vs.inhibit_on_failure = r.flag(stmt)
        elif kw == "weight":
            vs.weight = r.int_value(stmt, 1, MAX_WEIGHT)
        elif kw in ("connect_timeout", "retry", "delay_before_retry", "warmup"):
            self.timing(vs, stmt)
        elif kw in SCHEDULER_FLAGS or kw == "persistence_engine":
            r.warn(stmt.head, f"'{kw}' is not implemented by the testbed's director; ignored")
        elif kw == "ha_suspend":
            r.warn(stmt.head, "ha_suspend is not supported (checks always run); ignored")
        else:
            r.unknown(stmt, "virtual_server")

    def lb_kind(self, stmt: Stmt) -> str:
        self.r.no_block(stmt)
        if not stmt.args:
            raise error_at(stmt.head, f"'{stmt.keyword}' needs a value")
        tok = stmt.args[0]
        if tok.text.upper() not in LB_KINDS:
            raise error_at(tok, f"'{stmt.keyword}' must be NAT, DR or TUN, got '{tok.text}'")
        if len(stmt.args) > 1:
            self.r.warn(stmt.args[1], f"'{stmt.keyword}' tunnel options not supported; ignored")
        return tok.text.upper()

    def timing(self, obj: object, stmt: Stmt) -> None:
        """connect_timeout, retry, delay_before_retry, warmup, delay_loop on any level."""
        r = self.r
        kw = stmt.keyword
        if kw == "connect_timeout":
            obj.connect_timeout_s = r.float_value(stmt, 0.001, 86400)  # type: ignore[attr-defined]
        elif kw in ("retry", "nb_get_retry"):
            obj.retry = r.int_value(stmt, 0, MAX_I31)  # type: ignore[attr-defined]
        elif kw == "delay_before_retry":
            obj.delay_before_retry_s = r.float_value(stmt, 0, 86400)  # type: ignore[attr-defined]
        elif kw == "warmup":
            obj.warmup_s = r.float_value(stmt, 0, 86400)  # type: ignore[attr-defined]
        elif kw == "delay_loop":
            obj.delay_loop_s = r.float_value(stmt, 0.001, 86400)  # type: ignore[attr-defined]

    def sorry_server(self, stmt: Stmt, previous: SorryServer | None) -> SorryServer:
        r = self.r
        r.no_block(stmt)
        if not stmt.args:
            raise error_at(stmt.head, "'sorry_server' needs IP [PORT]")
        if previous is not None:
            r.warn(stmt.head, "a second sorry_server replaces the first")
        port = r.integer(stmt.args[1], "port", 0, 65535) if len(stmt.args) > 1 else None
        return SorryServer(r.ipv4(stmt.args[0], "sorry_server"), port)

    # ----- real_server

    def real_server(self, stmt: Stmt, given_weights: list[RealServer]) -> RealServer:
        r = self.r
        block = r.need_block(stmt)
        if not stmt.args:
            raise error_at(stmt.head, "'real_server' needs IP [PORT]")
        rs = RealServer(r.ipv4(stmt.args[0], "real_server"))
        r.pos[(id(rs), "real_server")] = stmt.head
        if len(stmt.args) > 1:
            rs.port = r.integer(stmt.args[1], "port", 0, 65535)
        for sub in block:
            kw = sub.keyword
            if kw == "weight":
                rs.weight = r.int_value(sub, 0, MAX_WEIGHT)
                given_weights.append(rs)
            elif kw in ("lvs_method", "lb_kind"):
                rs.lb_kind = self.lb_kind(sub)
            elif kw == "inhibit_on_failure":
                rs.inhibit_on_failure = r.boolean(sub)
            elif kw in ("notify_up", "notify_down"):
                setattr(rs, kw, r.script(sub))
            elif kw in ("uthreshold", "lthreshold"):
                setattr(rs, kw, r.int_value(sub, 0, MAX_U32))
            elif kw == "alpha":
                rs.alpha = r.boolean(sub)
            elif kw == "virtualhost":
                rs.virtualhost = r.string(sub)
            elif kw in ("connect_timeout", "retry", "delay_before_retry", "warmup", "delay_loop"):
                self.timing(rs, sub)
            elif kw in CHECKER_KINDS:
                rs.checkers += self.checker(sub)
            elif kw in UNSUPPORTED_CHECKERS:
                r.warn(
                    sub.head,
                    f"{kw} ignored ({UNSUPPORTED_CHECKERS[kw]}); the real server is not "
                    "checked by it",
                )
            else:
                r.unknown(sub, "real_server")
        return rs

    # ----- checkers

    def checker(self, stmt: Stmt) -> list:
        """One checker block; a list because SMTP_CHECK's (deprecated) ``host`` blocks each
        become a checker of their own, as in keepalived, and a MISC_CHECK without a script
        becomes none."""
        r = self.r
        check = CHECKER_KINDS[stmt.keyword]()
        r.pos[(id(check), stmt.keyword)] = stmt.head
        hosts: list[CheckBase] = []
        for sub in r.need_block(stmt):
            if not self.common_keyword(check, sub) and not self.own_keyword(check, sub, hosts):
                r.unknown(sub, stmt.keyword)
        if isinstance(check, MiscCheck) and check.script is None:
            r.warn(stmt.head, "no misc_path given for MISC_CHECK; checker skipped")
            return []
        if isinstance(check, SmtpCheck) and hosts:
            r.warn(stmt.head, "SMTP_CHECK host blocks are deprecated; each is a checker of its own")
            # Each host is the SMTP_CHECK with the host's connection (check_smtp.c); with no
            # connection of its own, the SMTP_CHECK takes the first host's.
            checks = [] if not _has_connection(check) else [check]
            for host in hosts:
                checks.append(_with_connection(check, host))
            return checks
        return [check]

    def common_keyword(self, check: CheckBase, stmt: Stmt) -> bool:
        r = self.r
        kw = stmt.keyword
        connection = {"connect_ip", "connect_port", "bindto", "bind_port", "bind_if", "fwmark"}
        if kw in connection and check.CONNECTS:
            if kw in ("connect_ip", "bindto"):
                setattr(check, kw, r.ipv4(r.value(stmt), kw))
            elif kw == "bind_if":
                check.bind_if = r.string(stmt)
            elif kw == "fwmark":
                check.fwmark = r.int_value(stmt, 0, MAX_U32)
            else:
                setattr(check, kw, r.int_value(stmt, 1, 65535))
        elif (
            (kw == "connect_timeout" and check.CONNECTS)
            or kw in ("retry", "delay_before_retry", "warmup", "delay_loop")
            or (kw == "nb_get_retry" and isinstance(check, HttpGet))
        ):
            self.timing(check, stmt)
        elif kw in ("alpha", "log_all_failures"):
            setattr(check, kw, r.boolean(stmt))
        else:
            return False
        return True

    def own_keyword(self, check: CheckBase, stmt: Stmt, hosts: list[CheckBase]) -> bool:
        if isinstance(check, HttpGet):
            return self.http_keyword(check, stmt)
        if isinstance(check, MiscCheck):
            return self.misc_keyword(check, stmt)
        if isinstance(check, UdpCheck):
            return self.udp_keyword(check, stmt)
        if isinstance(check, DnsCheck):
            return self.dns_keyword(check, stmt)
        if isinstance(check, SmtpCheck):
            return self.smtp_keyword(check, stmt, hosts)
        return False

    def http_keyword(self, check: HttpGet, stmt: Stmt) -> bool:
        r = self.r
        kw = stmt.keyword
        if kw == "url":
            check.urls.append(self.url(stmt))
        elif kw == "virtualhost":
            check.virtualhost = r.string(stmt)
        elif kw == "http_protocol":
            tok = r.value(stmt)
            if tok.text not in HTTP_PROTOCOLS:
                raise error_at(tok, f"http_protocol must be 1.0, 1.0C or 1.1, got '{tok.text}'")
            check.http_protocol = tok.text
        elif kw == "enable_sni":
            check.enable_sni = r.boolean(stmt)
        elif kw == "sni_name":
            check.sni_name = r.string(stmt)
            check.enable_sni = True
        elif kw == "fast_recovery":
            check.fast_recovery = r.boolean(stmt)
        elif kw == "tls_compliant":
            r.warn(stmt.head, "tls_compliant: Python's TLS always closes cleanly; ignored")
        else:
            return False
        return True

    def url(self, stmt: Stmt) -> UrlCheck:
        r = self.r
        fields: dict = {}
        codes: list[tuple[int, int]] = []
        for sub in r.need_block(stmt):
            kw = sub.keyword
            if kw in ("path", "digest", "virtualhost", "regex"):
                fields[kw] = r.string(sub)
            elif kw == "regex_no_match":
                fields[kw] = r.flag(sub)
            elif kw == "status_code":
                r.no_block(sub)
                if not sub.args:
                    raise error_at(sub.head, "'status_code' needs a value")
                for tok in sub.args:
                    lo_text, _, hi_text = tok.text.partition("-")
                    lo = r.integer(r.sub_token(tok, lo_text), "status_code", 100, 599)
                    hi = (
                        r.integer(r.sub_token(tok, hi_text), "status_code", lo, 599)
                        if hi_text
                        else lo
                    )
                    codes.append((lo, hi))
            elif kw.startswith("regex_"):
                r.warn(sub.head, f"'{kw}' is not supported (Python regular expressions); ignored")
            else:
                r.unknown(sub, "url")
        if "path" not in fields:
            raise error_at(stmt.head, "'url' needs a 'path'")
        if "regex" in fields:
            try:
                re.compile(fields["regex"])
            except re.error as exc:
                raise error_at(stmt.head, f"url regex: {exc}") from None
        return UrlCheck(status_codes=tuple(codes), **fields)

    def misc_keyword(self, check: MiscCheck, stmt: Stmt) -> bool:
        r = self.r
        kw = stmt.keyword
        if kw == "misc_path":
            r.no_block(stmt)
            if not stmt.args:
                raise error_at(stmt.head, "'misc_path' needs a script")
            command = " ".join(tok.text for tok in stmt.args)
            user = check.script.user if check.script else None
            group = check.script.group if check.script else None
            check.script = Script(command, user, group)
        elif kw == "misc_timeout":
            check.timeout_s = float(r.int_value(stmt, 1, 86400))
        elif kw == "misc_dynamic":
            check.dynamic = r.flag(stmt)
        elif kw == "user":
            user, group = r.user_group(stmt)
            check.script = Script(check.script.command if check.script else "", user, group)
        else:
            return False
        return True

    def udp_keyword(self, check: UdpCheck, stmt: Stmt) -> bool:
        r = self.r
        kw = stmt.keyword
        if kw == "payload":
            r.no_block(stmt)
            check.payload, _ = parse_hex(stmt.head, stmt.args, wildcard=False)
        elif kw == "require_reply":
            r.no_block(stmt)
            check.require_reply = True
            if stmt.args:
                check.reply_data, check.reply_mask = parse_hex(stmt.head, stmt.args, True)
        elif kw in ("min_reply_length", "max_reply_length"):
            setattr(check, kw, r.int_value(stmt, 0, 65535))
            if check.min_reply_length > check.max_reply_length:
                r.warn(stmt.head, "min_reply_length > max_reply_length: the check always fails")
        else:
            return False
        return True

    def dns_keyword(self, check: DnsCheck, stmt: Stmt) -> bool:
        r = self.r
        if stmt.keyword == "type":
            tok = r.value(stmt)
            if tok.text.upper() not in DNS_TYPES:
                raise error_at(tok, f"DNS_CHECK type must be one of {', '.join(DNS_TYPES)}")
            check.type = tok.text.upper()
        elif stmt.keyword == "name":
            tok = r.value(stmt)
            if ".." in tok.text or (tok.text.startswith(".") and tok.text != "."):
                raise error_at(tok, f"DNS_CHECK name '{tok.text}' has an empty label")
            check.name = tok.text
        else:
            return False
        return True

    def smtp_keyword(self, check: SmtpCheck, stmt: Stmt, hosts: list[CheckBase]) -> bool:
        r = self.r
        if stmt.keyword == "helo_name":
            check.helo_name = r.string(stmt)
        elif stmt.keyword == "host":
            host = SmtpCheck()
            for sub in r.need_block(stmt):
                if not self.common_keyword(host, sub):
                    r.unknown(sub, "SMTP_CHECK host")
            hosts.append(host)
        else:
            return False
        return True

    # ----- the SSL block

    def ssl(self, stmt: Stmt) -> None:
        r = self.r
        if r.config.ssl is not None:
            r.warn(stmt.head, "SSL context already given; replaced")
        ssl = SslContext()
        for sub in r.need_block(stmt):
            if sub.keyword in ("password", "ca", "certificate", "key"):
                setattr(ssl, sub.keyword, r.string(sub))
            else:
                r.unknown(sub, "SSL")
        r.config.ssl = ssl

    # ----- checks across the whole file (validate_check_config)

    def finish(self) -> None:
        r = self.r
        cfg = r.config
        kept = []
        for vs in cfg.virtual_servers:
            here = r.pos[(id(vs), "virtual_server")]
            if vs.group is not None and vs.group not in cfg.virtual_server_groups:
                raise error_at(here, f"virtual_server group {vs.group}: no virtual_server_group")
            name = describe(vs)
            if not vs.real_servers:
                r.warn(here, f"virtual server {name} has no real servers; ignored")
                continue
            self.fix_ports(vs, here)
            total = sum(rs.weight for rs in vs.real_servers)
            if vs.quorum > total:
                r.warn(
                    here,
                    f"quorum {vs.quorum} for {name} exceeds the real servers' total weight "
                    f"{total}; lowered to {total}",
                )
                vs.quorum = total
            if vs.hysteresis and vs.hysteresis >= vs.quorum:
                lowered = max(0, vs.quorum - 1)
                r.warn(
                    here,
                    f"hysteresis {vs.hysteresis} >= quorum {vs.quorum} for {name}; "
                    f"lowered to {lowered}",
                )
                vs.hysteresis = lowered
            if vs.fwmark is not None and (id(vs), "protocol") in r.pos:
                r.warn(r.pos[(id(vs), "protocol")], f"{name}: protocol is ignored for a fwmark")
            kept.append(vs)
        cfg.virtual_servers = kept

    def fix_ports(self, vs: VirtualServer, here: Tok) -> None:
        """keepalived: DR/TUN real servers take the service's port (a fwmark service: none)."""
        for server in [*vs.real_servers, *([vs.sorry_server] if vs.sorry_server else [])]:
            kind = server.lb_kind or vs.lb_kind or "NAT"
            what = "sorry server" if isinstance(server, SorryServer) else "real server"
            if kind == "NAT" or vs.group is not None or server.port is None:
                continue
            if vs.fwmark is not None:
                self.r.warn(here, f"fwmark {describe(vs)}: {what} port ignored (not NAT)")
                server.port = None
            elif server.port != vs.port:
                self.r.warn(
                    here,
                    f"{describe(vs)}: {what} {server.address} port {server.port} differs and "
                    f"is reset to {vs.port} ({kind} cannot change ports)",
                )
                server.port = vs.port


def _has_connection(check: CheckBase) -> bool:
    return any(getattr(check, a) is not None for a in _CONNECTION) or (
        check.connect_timeout_s is not None
    )


_CONNECTION = ("connect_ip", "connect_port", "bindto", "bind_port", "bind_if", "fwmark")


def _with_connection(check: SmtpCheck, host: CheckBase) -> SmtpCheck:
    """``check`` with ``host``'s connection (and timeout, when the host gives one)."""
    changes = {attr: getattr(host, attr) for attr in _CONNECTION}
    if host.connect_timeout_s is not None:
        changes["connect_timeout_s"] = host.connect_timeout_s
    return dataclasses.replace(check, **changes)
