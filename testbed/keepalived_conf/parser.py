"""keepalived.conf statements into the typed model (`testbed.keepalived_conf.model`).

Unknown keywords are skipped with a `ConfigWarning` naming file and line (collected, never
printed: the caller prints). Real mistakes (unbalanced braces, missing or non-numeric values,
out-of-range VRID or priority, references to instances or scripts that do not exist) raise
`ConfigError` with file, line and reason. Conditional lines (``@id``), ``$PARAM``
substitution and ``~SEQ``/``~LST`` are not supported and are skipped with a warning; IPv6
addresses and IPsec AH authentication are refused.

Not for: tokens (`lexer`) or writing configurations (`render`).
"""

from __future__ import annotations

import os
import re
from ipaddress import IPv4Address, ip_address

from testbed.keepalived_conf.lexer import WORD, Stmt, Tok, error_at, parse_block, tokenize
from testbed.keepalived_conf.model import (
    DEFAULT_PERSISTENCE_TIMEOUT_S,
    LB_ALGOS,
    LB_KINDS,
    OWNER_PRIORITY,
    PROTOCOLS,
    Authentication,
    Checker,
    Config,
    ConfigWarning,
    HttpGet,
    ParseResult,
    RealServer,
    TcpCheck,
    TrackInterface,
    TrackScript,
    UrlCheck,
    VirtualAddress,
    VirtualServer,
    VrrpInstance,
    VrrpScript,
    VrrpSyncGroup,
    format_number,
)

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
        self.pos: dict[tuple[int, str], Tok] = {}

    # ----- helpers

    def warn(self, tok: Tok, message: str) -> None:
        self.warnings.append(ConfigWarning(tok.file, tok.line, message))

    def unknown(self, stmt: Stmt, where: str) -> None:
        self.warn(stmt.head, f"unknown keyword '{stmt.keyword}' in {where}; ignored")

    def no_block(self, stmt: Stmt) -> None:
        if stmt.block is not None:
            raise error_at(stmt.head, f"'{stmt.keyword}' does not take a {{ }} block")

    def need_block(self, stmt: Stmt) -> list[Stmt]:
        if stmt.block is None:
            raise error_at(stmt.head, f"'{stmt.keyword}' needs a {{ ... }} block")
        return stmt.block

    def value(self, stmt: Stmt) -> Tok:
        """The single argument of ``keyword VALUE``."""
        self.no_block(stmt)
        if not stmt.args:
            raise error_at(stmt.head, f"'{stmt.keyword}' needs a value")
        if len(stmt.args) > 1:
            self.warn(stmt.args[1], f"'{stmt.keyword}': extra values ignored")
        return stmt.args[0]

    def flag(self, stmt: Stmt) -> bool:
        self.no_block(stmt)
        if stmt.args:
            self.warn(stmt.args[0], f"'{stmt.keyword}' takes no value; extra values ignored")
        return True

    @staticmethod
    def integer(tok: Tok, what: str, lo: int, hi: int) -> int:
        if not re.fullmatch(r"[+-]?\d+", tok.text):
            raise error_at(tok, f"'{what}' needs a whole number, got '{tok.text}'")
        number = int(tok.text)
        if not lo <= number <= hi:
            raise error_at(tok, f"'{what}' must be in {lo}..{hi}, got {number}")
        return number

    @staticmethod
    def decimal(tok: Tok, what: str, lo: float, hi: float) -> float:
        if not re.fullmatch(r"\d+(\.\d*)?|\.\d+", tok.text):
            raise error_at(tok, f"'{what}' needs a number, got '{tok.text}'")
        number = float(tok.text)
        if not lo <= number <= hi:
            raise error_at(
                tok, f"'{what}' must be in {format_number(lo)}..{format_number(hi)}, got {tok.text}"
            )
        return number

    @staticmethod
    def ipv4(tok: Tok, what: str) -> IPv4Address:
        try:
            address = ip_address(tok.text)
        except ValueError:
            raise error_at(tok, f"'{what}': '{tok.text}' is not an IP address") from None
        if not isinstance(address, IPv4Address):
            raise error_at(tok, f"'{what}': IPv6 is not supported by this testbed")
        return address

    def int_value(self, stmt: Stmt, lo: int, hi: int) -> int:
        return self.integer(self.value(stmt), stmt.keyword, lo, hi)

    def float_value(self, stmt: Stmt, lo: float, hi: float) -> float:
        return self.decimal(self.value(stmt), stmt.keyword, lo, hi)

    def script(self, stmt: Stmt) -> str:
        """A notify script: one word, or a quoted string with its arguments.

        Further words are keepalived's run-as user and group, which we do not support.
        """
        self.no_block(stmt)
        if not stmt.args:
            raise error_at(stmt.head, f"'{stmt.keyword}' needs a script")
        if len(stmt.args) > 1:
            self.warn(stmt.args[1], f"'{stmt.keyword}': run-as user/group not supported; ignored")
        return stmt.args[0].text

    # ----- top level

    def parse(self, stmts: list[Stmt]) -> None:
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

    def block_name(self, stmt: Stmt) -> str:
        self.need_block(stmt)
        if len(stmt.args) != 1:
            raise error_at(stmt.head, f"'{stmt.keyword}' needs exactly one name")
        return stmt.args[0].text

    def global_defs(self, stmts: list[Stmt]) -> None:
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

    def instance(self, stmt: Stmt, name: str) -> None:
        if name in self.config.instances:
            raise error_at(stmt.args[0], f"vrrp_instance {name} is defined twice")
        inst = VrrpInstance(name)
        self.pos[(id(inst), "vrrp_instance")] = stmt.head
        for sub in self.need_block(stmt):
            self.pos[(id(inst), sub.keyword)] = sub.head
            self.instance_keyword(inst, sub)
        if inst.virtual_router_id == 0:
            raise error_at(stmt.head, f"vrrp_instance {name} has no virtual_router_id")
        self.config.instances[name] = inst

    def instance_keyword(self, inst: VrrpInstance, stmt: Stmt) -> None:
        kw = stmt.keyword
        if kw == "state":
            tok = self.value(stmt)
            if tok.text not in ("MASTER", "BACKUP"):
                raise error_at(tok, f"'state' must be MASTER or BACKUP, got '{tok.text}'")
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

    def authentication(self, stmt: Stmt) -> Authentication:
        auth_type = "PASS"
        auth_pass: str | None = None
        for sub in self.need_block(stmt):
            if sub.keyword == "auth_type":
                tok = self.value(sub)
                if tok.text == "AH":
                    raise error_at(
                        tok,
                        "auth_type AH (IPsec AH) is not supported; use PASS or no authentication",
                    )
                if tok.text != "PASS":
                    raise error_at(tok, f"'auth_type' must be PASS or AH, got '{tok.text}'")
            elif sub.keyword == "auth_pass":
                tok = self.value(sub)
                if len(tok.text.encode()) > 8:
                    self.warn(tok, "auth_pass: only the first 8 characters are used")
                auth_pass = tok.text
            else:
                self.unknown(sub, "authentication")
        if auth_pass is None:
            raise error_at(stmt.head, "authentication needs an auth_pass")
        return Authentication(auth_pass, auth_type)

    def virtual_address(self, stmt: Stmt) -> VirtualAddress:
        self.no_block(stmt)
        addr_text, _, plen_text = stmt.head.text.partition("/")
        address = self.ipv4(
            Tok(WORD, addr_text, stmt.head.file, stmt.head.line), "virtual_ipaddress"
        )
        prefix_len = None
        if plen_text:
            prefix_len = self.integer(
                Tok(WORD, plen_text, stmt.head.file, stmt.head.line), "prefix length", 0, 32
            )
        options: dict[str, str] = {}
        brd: IPv4Address | None = None
        args = iter(stmt.args)
        for tok in args:
            if tok.text in ("dev", "label", "scope", "brd"):
                value = next(args, None)
                if value is None:
                    raise error_at(tok, f"virtual_ipaddress '{tok.text}' needs a value")
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
                raise error_at(tok, f"unknown virtual_ipaddress option '{tok.text}'")
        return VirtualAddress(
            address, prefix_len, options.get("dev"), options.get("label"), brd, options.get("scope")
        )

    def unicast_peer(self, stmt: Stmt) -> IPv4Address:
        self.no_block(stmt)
        if stmt.args:
            self.warn(stmt.args[0], "unicast_peer min_ttl/max_ttl not supported; ignored")
        return self.ipv4(stmt.head, "unicast_peer")

    def weight(self, stmt: Stmt, lo: int, hi: int) -> tuple[int | None, bool | None]:
        """Parses ``NAME [weight N [reverse|noreverse]]``."""
        self.no_block(stmt)
        args = stmt.args
        if not args:
            return None, None
        if args[0].text != "weight":
            raise error_at(
                args[0], f"expected 'weight' after '{stmt.keyword}', got '{args[0].text}'"
            )
        if len(args) < 2:
            raise error_at(args[0], "'weight' needs a value")
        weight = self.integer(args[1], "weight", lo, hi)
        reverse = None
        if len(args) > 2:
            if args[2].text not in ("reverse", "noreverse"):
                raise error_at(args[2], f"expected reverse or noreverse, got '{args[2].text}'")
            reverse = args[2].text == "reverse"
        return weight, reverse

    def track_interface(self, stmt: Stmt) -> TrackInterface:
        weight, reverse = self.weight(stmt, -253, 253)
        return TrackInterface(stmt.keyword, weight or 0, bool(reverse))

    def track_script(self, stmt: Stmt) -> TrackScript:
        weight, reverse = self.weight(stmt, -253, 253)
        return TrackScript(stmt.keyword, weight, reverse)

    # ----- vrrp_sync_group, vrrp_script

    def sync_group(self, stmt: Stmt, name: str) -> None:
        if name in self.config.sync_groups:
            raise error_at(stmt.args[0], f"vrrp_sync_group {name} is defined twice")
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

    def vrrp_script(self, stmt: Stmt, name: str) -> None:
        if name in self.config.scripts:
            raise error_at(stmt.args[0], f"vrrp_script {name} is defined twice")
        script = VrrpScript(name)
        for sub in self.need_block(stmt):
            kw = sub.keyword
            if kw == "script":
                self.no_block(sub)
                if not sub.args:
                    raise error_at(sub.head, "'script' needs a command")
                script.script = " ".join(tok.text for tok in sub.args)
            elif kw == "interval":
                script.interval_s = self.float_value(sub, 0.001, 86400)
            elif kw == "timeout":
                script.timeout_s = self.float_value(sub, 0.001, 86400)
            elif kw == "weight":
                self.no_block(sub)
                if not sub.args:
                    raise error_at(sub.head, "'weight' needs a value")
                script.weight = self.integer(sub.args[0], "weight", -253, 253)
                if len(sub.args) > 1 and sub.args[1].text not in ("reverse", "noreverse"):
                    raise error_at(
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
            raise error_at(stmt.head, f"vrrp_script {name} has no 'script'")
        self.config.scripts[name] = script

    # ----- virtual_server

    def virtual_server(self, stmt: Stmt) -> None:
        block = self.need_block(stmt)
        args = stmt.args
        vs = VirtualServer()
        if args and args[0].text == "fwmark":
            if len(args) < 2:
                raise error_at(args[0], "'fwmark' needs a value")
            vs.fwmark = self.integer(args[1], "fwmark", 1, 2**32 - 1)
        elif args and args[0].text == "group":
            self.warn(stmt.head, "virtual_server group is not supported; ignored")
            return
        elif args:
            vs.address = self.ipv4(args[0], "virtual_server")
            if len(args) > 1:
                vs.port = self.integer(args[1], "port", 0, 65535)
        else:
            raise error_at(stmt.head, "'virtual_server' needs IP [PORT] or 'fwmark N'")
        for sub in block:
            self.virtual_server_keyword(vs, sub)
        self.config.virtual_servers.append(vs)

    def virtual_server_keyword(self, vs: VirtualServer, stmt: Stmt) -> None:
        kw = stmt.keyword
        if kw == "delay_loop":
            vs.delay_loop_s = self.float_value(stmt, 0.001, 86400)
        elif kw in ("lb_algo", "lvs_sched"):
            tok = self.value(stmt)
            if tok.text not in LB_ALGOS:
                raise error_at(tok, f"unknown scheduler '{tok.text}'")
            vs.lb_algo = tok.text
        elif kw in ("lb_kind", "lvs_method"):
            self.no_block(stmt)
            if not stmt.args:
                raise error_at(stmt.head, f"'{kw}' needs a value")
            tok = stmt.args[0]
            if tok.text.upper() not in LB_KINDS:
                raise error_at(tok, f"'{kw}' must be NAT, DR or TUN, got '{tok.text}'")
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
                raise error_at(tok, f"'protocol' must be TCP, UDP or SCTP, got '{tok.text}'")
            vs.protocol = tok.text.upper()
        elif kw == "real_server":
            vs.real_servers.append(self.real_server(stmt))
        else:
            self.unknown(stmt, "virtual_server")

    def real_server(self, stmt: Stmt) -> RealServer:
        block = self.need_block(stmt)
        if not stmt.args:
            raise error_at(stmt.head, "'real_server' needs IP [PORT]")
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

    def checker(self, stmt: Stmt, check: Checker) -> Checker:
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

    def url(self, stmt: Stmt) -> UrlCheck:
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
                    raise error_at(sub.head, "'status_code' needs a value")
                for tok in sub.args:
                    lo_text, _, hi_text = tok.text.partition("-")
                    lo = self.integer(
                        Tok(WORD, lo_text, tok.file, tok.line), "status_code", 100, 599
                    )
                    hi = (
                        self.integer(Tok(WORD, hi_text, tok.file, tok.line), "status_code", lo, 599)
                        if hi_text
                        else lo
                    )
                    codes.append((lo, hi))
            else:
                self.unknown(sub, "url")
        if path is None:
            raise error_at(stmt.head, "'url' needs a 'path'")
        return UrlCheck(path, tuple(codes), digest)

    # ----- checks across the whole file

    def finish(self) -> None:
        cfg = self.config
        member_of: dict[str, str] = {}
        for group in cfg.sync_groups.values():
            for name in group.group:
                tok = self.pos[(id(group), name)]
                if name not in cfg.instances:
                    raise error_at(tok, f"vrrp_sync_group {group.name}: no vrrp_instance {name}")
                if name in member_of:
                    raise error_at(
                        tok, f"vrrp_instance {name} is already in sync group {member_of[name]}"
                    )
                member_of[name] = group.name
        seen_vrids: dict[tuple[str | None, int], str] = {}
        for inst in cfg.instances.values():
            self.check_instance(inst, inst.name in member_of)
            if not inst.unicast_peers:
                key = (inst.interface, inst.virtual_router_id)
                if key in seen_vrids:
                    raise error_at(
                        self.pos[(id(inst), "virtual_router_id")],
                        f"virtual_router_id {inst.virtual_router_id} is already used on "
                        f"{inst.interface} by vrrp_instance {seen_vrids[key]}",
                    )
                seen_vrids[key] = inst.name

    def check_instance(self, inst: VrrpInstance, in_sync_group: bool) -> None:
        """keepalived's vrrp_complete_instance() checks that concern this subset."""
        cfg = self.config
        here = self.pos[(id(inst), "vrrp_instance")]

        def at(keyword: str) -> Tok:
            return self.pos.get((id(inst), keyword), here)

        version = cfg.effective_version(inst)
        for tracked in inst.track_scripts:
            if tracked.name not in cfg.scripts:
                raise error_at(at("track_script"), f"track_script: no vrrp_script {tracked.name}")
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
                raise error_at(here, f"vrrp_instance {inst.name}: VRRPv3 needs a virtual_ipaddress")
            self.warn(here, f"vrrp_instance {inst.name} has no virtual_ipaddress")
        if version == 2 and inst.advert_int_s != int(inst.advert_int_s):
            self.warn(
                at("advert_int"), "VRRPv2 advert_int must be whole seconds; it will be rounded"
            )
        if version == 3 and inst.advert_int_s > 40.95:
            raise error_at(at("advert_int"), "VRRPv3 advert_int must be at most 40.95 s")
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
    toks = list(tokenize(text, source, parser.warnings, stack))
    stmts, _ = parse_block(toks, 0, None)
    parser.parse(stmts)
    return ParseResult(parser.config, parser.warnings)


def load_config(path: str | os.PathLike[str]) -> ParseResult:
    with open(path, encoding="utf-8") as handle:
        return parse_config(handle.read(), os.fspath(path))
