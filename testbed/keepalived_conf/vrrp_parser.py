"""VRRP keywords into `vrrp_model` (keepalived's vrrp/vrrp_parser.c): ``vrrp_instance``,
``vrrp_sync_group``, ``vrrp_script``, ``static_ipaddress``, ``static_routes`` and
``static_rules``, and the checks keepalived's vrrp_complete_instance() makes across them.

Refused (`ConfigError`): IPv6 addresses and ``auth_type AH`` (IPsec AH), which this testbed
does not speak. The old ``lvs_sync_daemon_interface`` of an instance becomes global_defs'
``lvs_sync_daemon`` naming that instance, with keepalived's deprecation warning.

Not for: global_defs (`global_parser`) or the LVS side (`check_parser`).
"""

from __future__ import annotations

from ipaddress import IPv4Address

from testbed.keepalived_conf.lexer import Stmt, Tok, error_at
from testbed.keepalived_conf.model import (
    NOTIFY_KEYWORDS,
    OWNER_PRIORITY,
    Authentication,
    LvsSyncDaemon,
    TrackInterface,
    TrackScript,
    VirtualAddress,
    VrrpInstance,
    VrrpScript,
    VrrpSyncGroup,
)
from testbed.keepalived_conf.reader import MAX_I31, Reader
from testbed.keepalived_conf.route_parser import parse_route, parse_rule

_ADDRESS_FLAGS = frozenset(
    {"home", "-nodad", "nodad", "mngtmpaddr", "noprefixroute", "autojoin", "no_track", "use_vmac"}
)
_ADDRESS_VALUED = frozenset({"peer", "preferred_lft", "track_group", "metric"})


class VrrpParser:
    """The VRRP blocks of one parse (`Reader` holds the config and the warnings)."""

    def __init__(self, r: Reader) -> None:
        self.r = r
        self.rule_priority = [0]  # set by the caller: shared by static and virtual rules

    # ----- vrrp_instance

    def instance(self, stmt: Stmt) -> None:
        r = self.r
        name = r.block_name(stmt)
        if name in r.config.instances:
            raise error_at(stmt.args[0], f"vrrp_instance {name} is defined twice")
        inst = VrrpInstance(name)
        r.pos[(id(inst), "vrrp_instance")] = stmt.head
        for sub in r.need_block(stmt):
            r.pos[(id(inst), sub.keyword)] = sub.head
            self.instance_keyword(inst, sub)
        if inst.virtual_router_id == 0:
            raise error_at(stmt.head, f"vrrp_instance {name} has no virtual_router_id")
        r.config.instances[name] = inst

    def instance_keyword(self, inst: VrrpInstance, stmt: Stmt) -> None:
        r = self.r
        kw = stmt.keyword
        if kw == "state":
            tok = r.value(stmt)
            if tok.text not in ("MASTER", "BACKUP"):
                raise error_at(tok, f"'state' must be MASTER or BACKUP, got '{tok.text}'")
            inst.state = tok.text
        elif kw == "interface":
            inst.interface = r.string(stmt)
        elif kw == "virtual_router_id":
            inst.virtual_router_id = r.int_value(stmt, 1, 255)
        elif kw == "priority":
            inst.priority = r.int_value(stmt, 1, OWNER_PRIORITY)
        elif kw == "advert_int":
            inst.advert_int_s = r.float_value(stmt, 0.01, 255)
        elif kw == "version":
            inst.version = r.int_value(stmt, 2, 3)
        elif kw == "nopreempt":
            inst.nopreempt = r.flag(stmt)
        elif kw == "preempt":
            inst.nopreempt = not r.flag(stmt)
        elif kw == "preempt_delay":
            inst.preempt_delay_s = r.float_value(stmt, 0, 1000)
        elif kw == "authentication":
            inst.authentication = self.authentication(stmt)
        elif kw == "virtual_ipaddress":
            inst.virtual_ipaddresses = [self.address(s, kw) for s in r.need_block(stmt)]
        elif kw == "unicast_src_ip":
            inst.unicast_src_ip = r.ipv4(r.value(stmt), kw)
        elif kw == "unicast_peer":
            inst.unicast_peers = [self.unicast_peer(s) for s in r.need_block(stmt)]
        elif kw == "check_unicast_src":
            inst.check_unicast_src = r.flag(stmt)
        elif kw == "track_interface":
            inst.track_interfaces = [self.track_interface(s) for s in r.need_block(stmt)]
        elif kw == "track_script":
            inst.track_scripts = [self.track_script(s) for s in r.need_block(stmt)]
        elif kw in NOTIFY_KEYWORDS:
            setattr(inst, kw, r.script(stmt))
        elif kw == "garp_master_delay":
            inst.garp_master_delay_s = r.float_value(stmt, 0, 86400)
        elif kw == "garp_master_repeat":
            inst.garp_master_repeat = r.int_value(stmt, 1, MAX_I31)
        elif kw == "garp_master_refresh":
            inst.garp_master_refresh_s = r.float_value(stmt, 0, 86400)
        elif kw == "garp_master_refresh_repeat":
            inst.garp_master_refresh_repeat = r.int_value(stmt, 1, MAX_I31)
        elif kw == "virtual_routes":
            inst.virtual_routes = self.routes(stmt)
        elif kw == "virtual_rules":
            inst.virtual_rules = self.rules(stmt)
        elif kw == "lvs_sync_daemon_interface":
            self.old_lvs_sync_daemon(inst, stmt)
        elif kw in ("use_vmac", "vmac_xmit_base"):
            r.ignored(stmt, "VMACs are not supported: the VIPs go on the interface itself")
        else:
            r.unknown(stmt, f"vrrp_instance {inst.name}")

    def old_lvs_sync_daemon(self, inst: VrrpInstance, stmt: Stmt) -> None:
        g = self.r.config.global_defs
        interface = self.r.string(stmt)
        if g.lvs_sync_daemon is not None:
            self.r.warn(
                stmt.head,
                f"lvs_sync_daemon is already given ({g.lvs_sync_daemon.interface}); ignored",
            )
            return
        self.r.warn(
            stmt.head,
            f"({inst.name}) lvs_sync_daemon_interface in a vrrp_instance is deprecated; "
            f"taken as global_defs 'lvs_sync_daemon {interface} {inst.name}'",
        )
        g.lvs_sync_daemon = LvsSyncDaemon(interface, inst.name)
        self.r.pos[(id(g), "lvs_sync_daemon")] = stmt.head

    def authentication(self, stmt: Stmt) -> Authentication:
        r = self.r
        auth_pass: str | None = None
        for sub in r.need_block(stmt):
            if sub.keyword == "auth_type":
                tok = r.value(sub)
                if tok.text == "AH":
                    raise error_at(
                        tok,
                        "auth_type AH (IPsec AH) is not supported; use PASS or no authentication",
                    )
                if tok.text != "PASS":
                    raise error_at(tok, f"'auth_type' must be PASS or AH, got '{tok.text}'")
            elif sub.keyword == "auth_pass":
                tok = r.value(sub)
                if len(tok.text.encode()) > 8:
                    r.warn(tok, "auth_pass: only the first 8 characters are used")
                auth_pass = tok.text
            else:
                r.unknown(sub, "authentication")
        if auth_pass is None:
            raise error_at(stmt.head, "authentication needs an auth_pass")
        return Authentication(auth_pass)

    def address(self, stmt: Stmt, what: str) -> VirtualAddress:
        """One line of virtual_ipaddress or static_ipaddress (ip addr's syntax)."""
        r = self.r
        r.no_block(stmt)
        addr_text, _, plen_text = stmt.head.text.partition("/")
        address = r.ipv4_text(stmt.head, addr_text, what)
        prefix_len = None
        if plen_text:
            prefix_len = r.integer(r.sub_token(stmt.head, plen_text), "prefix length", 0, 32)
        options: dict[str, str] = {}
        brd: IPv4Address | None = None
        args = iter(stmt.args)
        for tok in args:
            if tok.text in ("dev", "label", "scope", "brd"):
                value = next(args, None)
                if value is None:
                    raise error_at(tok, f"{what} '{tok.text}' needs a value")
                if tok.text == "brd":
                    brd = r.ipv4(value, "brd")
                else:
                    options[tok.text] = value.text
            elif tok.text in _ADDRESS_FLAGS:
                r.warn(tok, f"{what} option '{tok.text}' not supported; ignored")
            elif tok.text in _ADDRESS_VALUED:
                next(args, None)
                r.warn(tok, f"{what} option '{tok.text}' not supported; ignored")
            else:
                raise error_at(tok, f"unknown {what} option '{tok.text}'")
        return VirtualAddress(
            address, prefix_len, options.get("dev"), options.get("label"), brd, options.get("scope")
        )

    def unicast_peer(self, stmt: Stmt) -> IPv4Address:
        self.r.no_block(stmt)
        if stmt.args:
            self.r.warn(stmt.args[0], "unicast_peer min_ttl/max_ttl not supported; ignored")
        return self.r.ipv4(stmt.head, "unicast_peer")

    def weight(self, stmt: Stmt, lo: int, hi: int) -> tuple[int | None, bool | None]:
        """Parses ``NAME [weight N [reverse|noreverse]]``."""
        self.r.no_block(stmt)
        args = stmt.args
        if not args:
            return None, None
        if args[0].text != "weight":
            raise error_at(
                args[0], f"expected 'weight' after '{stmt.keyword}', got '{args[0].text}'"
            )
        if len(args) < 2:
            raise error_at(args[0], "'weight' needs a value")
        weight = self.r.integer(args[1], "weight", lo, hi)
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

    def routes(self, stmt: Stmt) -> list:
        return [rt for s in self.r.need_block(stmt) if (rt := parse_route(self.r, s))]

    def rules(self, stmt: Stmt) -> list:
        return [
            rl for s in self.r.need_block(stmt) if (rl := parse_rule(self.r, s, self.rule_priority))
        ]

    # ----- vrrp_sync_group, vrrp_script

    def sync_group(self, stmt: Stmt) -> None:
        r = self.r
        name = r.block_name(stmt)
        if name in r.config.sync_groups:
            raise error_at(stmt.args[0], f"vrrp_sync_group {name} is defined twice")
        group = VrrpSyncGroup(name)
        for sub in r.need_block(stmt):
            kw = sub.keyword
            if kw == "group":
                for entry in r.need_block(sub):
                    r.no_block(entry)
                    for tok in entry.words:
                        r.pos[(id(group), tok.text)] = tok
                        group.group.append(tok.text)
            elif kw in NOTIFY_KEYWORDS:
                setattr(group, kw, r.script(sub))
            else:
                r.unknown(sub, f"vrrp_sync_group {name}")
        r.pos[(id(group), "vrrp_sync_group")] = stmt.head
        r.config.sync_groups[name] = group

    def vrrp_script(self, stmt: Stmt) -> None:
        r = self.r
        name = r.block_name(stmt)
        if name in r.config.scripts:
            raise error_at(stmt.args[0], f"vrrp_script {name} is defined twice")
        script = VrrpScript(name)
        for sub in r.need_block(stmt):
            kw = sub.keyword
            if kw == "script":
                r.no_block(sub)
                if not sub.args:
                    raise error_at(sub.head, "'script' needs a command")
                script.script = " ".join(tok.text for tok in sub.args)
            elif kw == "interval":
                script.interval_s = r.float_value(sub, 0.001, 86400)
            elif kw == "timeout":
                script.timeout_s = r.float_value(sub, 0.001, 86400)
            elif kw == "weight":
                r.no_block(sub)
                if not sub.args:
                    raise error_at(sub.head, "'weight' needs a value")
                script.weight = r.integer(sub.args[0], "weight", -253, 253)
                if len(sub.args) > 1 and sub.args[1].text not in ("reverse", "noreverse"):
                    raise error_at(
                        sub.args[1], f"expected reverse or noreverse, got '{sub.args[1].text}'"
                    )
                script.weight_reverse = len(sub.args) > 1 and sub.args[1].text == "reverse"
            elif kw in ("rise", "fall"):
                setattr(script, kw, r.int_value(sub, 1, MAX_I31))
            elif kw == "init_fail":
                script.init_fail = r.flag(sub)
            elif kw == "user":
                script.user, script.group = r.user_group(sub)
            else:
                r.unknown(sub, f"vrrp_script {name}")
        if not script.script:
            # keepalived: "No script set for vrrp_script X - removing" and every
            # track_script naming it is then ignored; here the file is refused, since an
            # instance would silently lose the tracking it was written with.
            raise error_at(stmt.head, f"vrrp_script {name} has no 'script'")
        r.config.scripts[name] = script

    # ----- static blocks

    def static_ipaddress(self, stmt: Stmt) -> None:
        self.r.config.static_addresses += [
            self.address(s, "static_ipaddress") for s in self.r.need_block(stmt)
        ]

    def static_routes(self, stmt: Stmt) -> None:
        self.r.config.static_routes += self.routes(stmt)

    def static_rules(self, stmt: Stmt) -> None:
        self.r.config.static_rules += self.rules(stmt)

    # ----- checks across the whole file

    def finish(self) -> None:
        r = self.r
        cfg = r.config
        member_of: dict[str, str] = {}
        for group in cfg.sync_groups.values():
            for name in group.group:
                tok = r.pos[(id(group), name)]
                if name not in cfg.instances:
                    raise error_at(tok, f"vrrp_sync_group {group.name}: no vrrp_instance {name}")
                if name in member_of:
                    raise error_at(
                        tok, f"vrrp_instance {name} is already in sync group {member_of[name]}"
                    )
                member_of[name] = group.name
        seen_vrids: dict[tuple[str | None, int], str] = {}
        for inst in cfg.instances.values():
            if cfg.global_defs.vrrp_check_unicast_src:
                inst.check_unicast_src = True
            self.check_instance(inst, inst.name in member_of)
            if not inst.unicast_peers:
                key = (inst.interface, inst.virtual_router_id)
                if key in seen_vrids:
                    raise error_at(
                        r.pos[(id(inst), "virtual_router_id")],
                        f"virtual_router_id {inst.virtual_router_id} is already used on "
                        f"{inst.interface} by vrrp_instance {seen_vrids[key]}",
                    )
                seen_vrids[key] = inst.name
        syncd = cfg.global_defs.lvs_sync_daemon
        if syncd is not None and syncd.instance and syncd.instance not in cfg.instances:
            raise error_at(
                r.pos[(id(cfg.global_defs), "lvs_sync_daemon")],
                f"lvs_sync_daemon: no vrrp_instance {syncd.instance}",
            )

    def check_instance(self, inst: VrrpInstance, in_sync_group: bool) -> None:
        """keepalived's vrrp_complete_instance() checks that concern this subset."""
        r = self.r
        cfg = r.config
        here = r.pos[(id(inst), "vrrp_instance")]

        def at(keyword: str) -> Tok:
            return r.pos.get((id(inst), keyword), here)

        version = cfg.effective_version(inst)
        for tracked in inst.track_scripts:
            if tracked.name not in cfg.scripts:
                raise error_at(at("track_script"), f"track_script: no vrrp_script {tracked.name}")
            weight = (
                tracked.weight if tracked.weight is not None else cfg.scripts[tracked.name].weight
            )
            if weight and in_sync_group:
                r.warn(
                    at("track_script"),
                    f"track_script {tracked.name}: weights are ignored in a sync group",
                )
        if in_sync_group and any(t.weight for t in inst.track_interfaces):
            r.warn(at("track_interface"), "track_interface weights are ignored in a sync group")
        if not inst.virtual_ipaddresses:
            if version == 3:
                raise error_at(here, f"vrrp_instance {inst.name}: VRRPv3 needs a virtual_ipaddress")
            r.warn(here, f"vrrp_instance {inst.name} has no virtual_ipaddress")
        if version == 2 and inst.advert_int_s != int(inst.advert_int_s):
            r.warn(at("advert_int"), "VRRPv2 advert_int must be whole seconds; it will be rounded")
        if version == 3 and inst.advert_int_s > 40.95:
            raise error_at(at("advert_int"), "VRRPv3 advert_int must be at most 40.95 s")
        if version == 3 and inst.authentication is not None:
            r.warn(at("authentication"), "VRRPv3 has no authentication; ignored")
        if inst.nopreempt and inst.effective_preempt:
            reason = "priority 255" if inst.base_priority == OWNER_PRIORITY else "state MASTER"
            r.warn(at("nopreempt"), f"nopreempt does not work with {reason}; ignored")
        if inst.preempt_delay_s and not inst.effective_preempt_delay_s:
            r.warn(
                at("preempt_delay"),
                "preempt_delay does not work with state MASTER or nopreempt; ignored",
            )
        if inst.base_priority == OWNER_PRIORITY and inst.state == "BACKUP":
            r.warn(at("state"), "priority 255 (address owner) with state BACKUP starts as a backup")
        if inst.check_unicast_src and not inst.unicast_peers:
            r.warn(at("check_unicast_src"), "check_unicast_src without unicast_peer does nothing")
