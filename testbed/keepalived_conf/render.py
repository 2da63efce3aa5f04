"""The typed model back into keepalived.conf text.

``parse_config(render_config(c)).config == c`` for every config the parser can produce; the
NAT layout's generated configuration and ``--show-config`` are written here.
"""

from __future__ import annotations

import re

from testbed.keepalived_conf.model import (
    Checker,
    Config,
    GlobalDefs,
    HttpGet,
    VirtualAddress,
    VirtualServer,
    VrrpInstance,
    VrrpScript,
    VrrpSyncGroup,
    format_number,
)

_BARE = re.compile(r"[^\s\"'#!{}\\]+")


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
