"""The typed model back into keepalived.conf text.

``parse_config(render_config(c)).config == c`` for every config the parser can produce (the
renderer writes what the parser normalised: a route's ip(8) spelling, a rule's assigned
preference, SMTP host blocks as checkers of their own); the NAT layout's generated
configuration and ``--show-config`` are written here.
"""

from __future__ import annotations

import re

from testbed.keepalived_conf.model import (
    NOTIFY_KEYWORDS,
    CheckBase,
    Config,
    DnsCheck,
    GlobalDefs,
    GroupEntry,
    HttpGet,
    LvsSyncDaemon,
    MiscCheck,
    RealServer,
    Route,
    Rule,
    Script,
    SmtpCheck,
    SorryServer,
    UdpCheck,
    UrlCheck,
    VirtualAddress,
    VirtualServer,
    VrrpInstance,
    VrrpScript,
    VrrpSyncGroup,
    format_number,
)

_BARE = re.compile(r"[^\s\"'#!{}\\$@~]+")


def _q(text: str) -> str:
    """A word as keepalived.conf text, quoted when it would not survive as one bare word."""
    if _BARE.fullmatch(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


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
            self.line(keyword, format_number(value))
        elif isinstance(value, str):
            self.line(keyword, _q(value))
        else:
            self.line(keyword, str(value))

    def boolean(self, keyword: str, value: bool | None) -> None:
        """A ``keyword [<BOOL>]`` that may be given as false."""
        if value is not None:
            self.line(keyword, "true" if value else "false")

    def script(self, keyword: str, script: Script | None) -> None:
        if script is not None:
            words = [_q(script.command)]
            if script.user is not None:
                words.append(_q(script.user))
                if script.group is not None:
                    words.append(_q(script.group))
            self.line(keyword, *words)

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
    if config.global_defs != GlobalDefs():
        _render_global_defs(w, config.global_defs)
    for keyword, items in (
        ("static_ipaddress", [_vip_words(a) for a in config.static_addresses]),
        ("static_routes", [_route_words(r) for r in config.static_routes]),
        ("static_rules", [_rule_words(r) for r in config.static_rules]),
    ):
        if items:
            with w.block(keyword):
                for words in items:
                    w.line(*words)
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
    if config.ssl is not None:
        with w.block("SSL"):
            for keyword in ("password", "ca", "certificate", "key"):
                w.opt(keyword, getattr(config.ssl, keyword))
        w.line()
    for vsg in config.virtual_server_groups.values():
        with w.block("virtual_server_group", _q(vsg.name)):
            for entry in vsg.entries:
                w.line(*_group_entry_words(entry))
        w.line()
    for vs in config.virtual_servers:
        _render_virtual_server(w, vs)
    while w.lines and not w.lines[-1]:
        w.lines.pop()
    return "\n".join(w.lines) + "\n"


def _render_global_defs(w: _Writer, g: GlobalDefs) -> None:
    with w.block("global_defs"):
        w.opt("router_id", g.router_id)
        w.opt("vrrp_version", g.vrrp_version)
        w.opt("vrrp_garp_master_delay", g.vrrp_garp_master_delay_s)
        w.opt("vrrp_garp_master_repeat", g.vrrp_garp_master_repeat)
        w.opt("vrrp_garp_master_refresh", g.vrrp_garp_master_refresh_s)
        w.opt("vrrp_garp_master_refresh_repeat", g.vrrp_garp_master_refresh_repeat)
        if g.script_user is not None:
            w.line(
                "script_user", _q(g.script_user), *([_q(g.script_group)] if g.script_group else [])
            )
        w.opt("enable_script_security", g.enable_script_security)
        w.opt("vrrp_check_unicast_src", g.vrrp_check_unicast_src)
        w.opt("default_interface", g.default_interface)
        if g.lvs_sync_daemon is not None:
            w.line("lvs_sync_daemon", *_sync_words(g.lvs_sync_daemon))
        if g.lvs_timeouts is not None:
            words = []
            for keyword, value in (
                ("tcp", g.lvs_timeouts.tcp_s),
                ("tcpfin", g.lvs_timeouts.tcpfin_s),
                ("udp", g.lvs_timeouts.udp_s),
            ):
                if value is not None:
                    words += [keyword, str(value)]
            w.line("lvs_timeouts", *words)
        w.opt("lvs_flush", g.lvs_flush)
    w.line()


def _sync_words(s: LvsSyncDaemon) -> list[str]:
    words = [_q(s.interface)]
    if s.instance is not None:
        words += ["inst", _q(s.instance)]
    for keyword, value in (
        ("id", s.sync_id),
        ("maxlen", s.maxlen),
        ("port", s.port),
        ("ttl", s.ttl),
        ("group", s.group),
    ):
        if value is not None:
            words += [keyword, str(value)]
    return words


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
        if script.user is not None:
            w.line("user", _q(script.user), *([_q(script.group)] if script.group else []))
    w.line()


def _render_notifies(w: _Writer, obj: VrrpInstance | VrrpSyncGroup) -> None:
    for keyword in NOTIFY_KEYWORDS:
        w.script(keyword, getattr(obj, keyword))


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
        w.opt("check_unicast_src", inst.check_unicast_src)
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
        for keyword, items in (
            ("virtual_routes", [_route_words(r) for r in inst.virtual_routes]),
            ("virtual_rules", [_rule_words(r) for r in inst.virtual_rules]),
        ):
            if items:
                with w.block(keyword):
                    for words in items:
                        w.line(*words)
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


def _route_words(route: Route) -> list[str]:
    words = [_q(word) for word in route.argv]
    if route.append:
        words.append("append")
    if route.no_track:
        words.append("no_track")
    return words


def _rule_words(rule: Rule) -> list[str]:
    return [_q(word) for word in rule.argv] + (["no_track"] if rule.no_track else [])


def _group_entry_words(entry: GroupEntry) -> list[str]:
    if entry.fwmark is not None:
        return ["fwmark", str(entry.fwmark)]
    where = str(entry.first) if entry.first == entry.last else f"{entry.first}-{entry.last}"
    return [where, *([str(entry.port)] if entry.port is not None else [])]


def _render_timing(w: _Writer, obj: object, *, connect: bool = True) -> None:
    if connect:
        w.opt("connect_timeout", getattr(obj, "connect_timeout_s", None))
    w.opt("retry", getattr(obj, "retry", None))
    w.opt("delay_before_retry", getattr(obj, "delay_before_retry_s", None))
    w.opt("warmup", getattr(obj, "warmup_s", None))


def _render_virtual_server(w: _Writer, vs: VirtualServer) -> None:
    if vs.group is not None:
        head = ["group", _q(vs.group)]
    elif vs.fwmark is not None:
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
        w.opt("virtualhost", vs.virtualhost)
        w.opt("alpha", vs.alpha)
        w.opt("omega", vs.omega)
        if vs.quorum != 1:
            w.opt("quorum", vs.quorum)
        if vs.hysteresis:
            w.opt("hysteresis", vs.hysteresis)
        w.script("quorum_up", vs.quorum_up)
        w.script("quorum_down", vs.quorum_down)
        w.opt("inhibit_on_failure", vs.inhibit_on_failure)
        if vs.weight != 1:
            w.opt("weight", vs.weight)
        _render_timing(w, vs)
        if vs.sorry_server is not None:
            _render_sorry(w, vs.sorry_server)
        for rs in vs.real_servers:
            w.line()
            _render_real_server(w, rs)
    w.line()


def _render_sorry(w: _Writer, sorry: SorryServer) -> None:
    w.line(
        "sorry_server",
        str(sorry.address),
        *([str(sorry.port)] if sorry.port is not None else []),
    )
    w.opt("sorry_server_inhibit", sorry.inhibit)
    w.opt("sorry_server_lvs_method", sorry.lb_kind)


def _render_real_server(w: _Writer, rs: RealServer) -> None:
    with w.block("real_server", str(rs.address), *([str(rs.port)] if rs.port is not None else [])):
        w.opt("weight", rs.weight)
        w.opt("lvs_method", rs.lb_kind)
        w.boolean("inhibit_on_failure", rs.inhibit_on_failure)
        w.script("notify_up", rs.notify_up)
        w.script("notify_down", rs.notify_down)
        w.opt("uthreshold", rs.uthreshold)
        w.opt("lthreshold", rs.lthreshold)
        w.opt("virtualhost", rs.virtualhost)
        w.boolean("alpha", rs.alpha)
        _render_timing(w, rs)
        w.opt("delay_loop", rs.delay_loop_s)
        for check in rs.checkers:
            _render_checker(w, check)


def _render_checker(w: _Writer, check: CheckBase) -> None:
    with w.block(check.KIND):
        if isinstance(check, HttpGet):
            for url in check.urls:
                _render_url(w, url)
            w.opt("virtualhost", check.virtualhost)
            w.opt("http_protocol", check.http_protocol)
            if check.sni_name is not None:
                w.opt("sni_name", check.sni_name)
            else:
                w.opt("enable_sni", check.enable_sni)
            w.opt("fast_recovery", check.fast_recovery)
        elif isinstance(check, MiscCheck):
            if check.script is not None:
                w.opt("misc_path", check.script.command)
                if check.script.user is not None:
                    w.line(
                        "user",
                        _q(check.script.user),
                        *([_q(check.script.group)] if check.script.group else []),
                    )
            if check.timeout_s is not None:
                w.opt("misc_timeout", int(check.timeout_s))
            w.opt("misc_dynamic", check.dynamic)
        elif isinstance(check, UdpCheck):
            if check.payload is not None:
                w.line("payload", check.payload.hex())
            if check.require_reply:
                w.line("require_reply", *([_hex_with_mask(check)] if check.reply_data else []))
            if check.min_reply_length:
                w.opt("min_reply_length", check.min_reply_length)
            if check.max_reply_length != UdpCheck.max_reply_length:
                w.opt("max_reply_length", check.max_reply_length)
        elif isinstance(check, DnsCheck):
            w.opt("type", check.type)
            w.opt("name", check.name)
        elif isinstance(check, SmtpCheck):
            w.opt("helo_name", check.helo_name)
        if check.CONNECTS:
            for keyword in ("connect_ip", "connect_port", "bindto", "bind_port", "bind_if"):
                w.opt(keyword, getattr(check, keyword))
            w.opt("fwmark", check.fwmark)
        _render_timing(w, check, connect=check.CONNECTS)
        w.opt("delay_loop", check.delay_loop_s)
        w.boolean("alpha", check.alpha)
        w.boolean("log_all_failures", check.log_all_failures)


def _render_url(w: _Writer, url: UrlCheck) -> None:
    with w.block("url"):
        w.opt("path", url.path)
        w.opt("digest", url.digest)
        if url.status_codes:
            w.line(
                "status_code",
                *(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in url.status_codes),
            )
        w.opt("virtualhost", url.virtualhost)
        w.opt("regex", url.regex)
        w.opt("regex_no_match", url.regex_no_match)


def _hex_with_mask(check: UdpCheck) -> str:
    data = check.reply_data or b""
    mask = check.reply_mask or bytes(len(data))
    digits = []
    for byte, ignore in zip(data, mask, strict=True):
        for shift in (4, 0):
            digits.append("X" if (ignore >> shift) & 0xF else f"{(byte >> shift) & 0xF:x}")
    return "".join(digits)
