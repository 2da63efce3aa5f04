"""``global_defs`` keywords into `model.GlobalDefs` (keepalived's core/global_parser.c).

Acted on: ``router_id``, ``vrrp_version``, the ``vrrp_garp_*`` timings, ``script_user``,
``enable_script_security``, ``vrrp_check_unicast_src``, ``default_interface``,
``lvs_sync_daemon``, ``lvs_timeouts`` and ``lvs_flush``. SMTP, SNMP and DBus settings are
skipped with a warning saying why; anything else with a warning that it is not used here.

Not for: the other blocks (`vrrp_parser`, `check_parser`).
"""

from __future__ import annotations

from testbed.keepalived_conf.lexer import Stmt, error_at
from testbed.keepalived_conf.model import LvsSyncDaemon, LvsTimeouts
from testbed.keepalived_conf.reader import MAX_I31, Reader, lab_reason

_SYNC_OPTIONS = {"id": (0, 255), "maxlen": (1, 65507), "port": (1, 65535), "ttl": (1, 255)}


def parse_global_defs(r: Reader, stmts: list[Stmt]) -> None:
    g = r.config.global_defs
    for stmt in stmts:
        kw = stmt.keyword
        if kw == "router_id":
            g.router_id = r.string(stmt)
        elif kw == "vrrp_version":
            g.vrrp_version = r.int_value(stmt, 2, 3)
        elif kw == "vrrp_garp_master_delay":
            g.vrrp_garp_master_delay_s = r.float_value(stmt, 0, 86400)
        elif kw == "vrrp_garp_master_repeat":
            g.vrrp_garp_master_repeat = r.int_value(stmt, 1, MAX_I31)
        elif kw == "vrrp_garp_master_refresh":
            g.vrrp_garp_master_refresh_s = r.float_value(stmt, 0, 86400)
        elif kw == "vrrp_garp_master_refresh_repeat":
            g.vrrp_garp_master_refresh_repeat = r.int_value(stmt, 1, MAX_I31)
        elif kw == "script_user":
            g.script_user, g.script_group = r.user_group(stmt)
        elif kw == "enable_script_security":
            g.enable_script_security = r.flag(stmt)
        elif kw == "vrrp_check_unicast_src":
            g.vrrp_check_unicast_src = r.flag(stmt)
        elif kw == "default_interface":
            g.default_interface = r.string(stmt)
        elif kw == "lvs_sync_daemon":
            g.lvs_sync_daemon = lvs_sync_daemon(r, stmt)
            r.pos[(id(g), "lvs_sync_daemon")] = stmt.head
        elif kw == "lvs_timeouts":
            g.lvs_timeouts = lvs_timeouts(r, stmt)
        elif kw == "lvs_flush":
            g.lvs_flush = r.flag(stmt)
        elif lab_reason(kw):
            r.ignored(stmt, lab_reason(kw) or "")
        else:
            r.warn(stmt.head, f"global_defs '{kw}' is not used by this testbed; ignored")


def lvs_sync_daemon(r: Reader, stmt: Stmt) -> LvsSyncDaemon:
    """``lvs_sync_daemon IF [[inst] INSTANCE] [id N] [maxlen N] [port N] [ttl N] [group IP]``."""
    r.no_block(stmt)
    if not stmt.args:
        raise error_at(stmt.head, "'lvs_sync_daemon' needs an interface")
    interface = stmt.args[0].text
    instance: str | None = None
    values: dict[str, int] = {}
    group = None
    args = iter(stmt.args[1:])
    for tok in args:
        if tok.text in _SYNC_OPTIONS or tok.text in ("inst", "group"):
            value = next(args, None)
            if value is None:
                raise error_at(tok, f"lvs_sync_daemon '{tok.text}' needs a value")
            if tok.text == "inst":
                instance = value.text
            elif tok.text == "group":
                group = r.ipv4(value, "lvs_sync_daemon group")
            else:
                lo, hi = _SYNC_OPTIONS[tok.text]
                values[tok.text] = r.integer(value, f"lvs_sync_daemon {tok.text}", lo, hi)
        elif instance is None:
            instance = tok.text  # "inst can be omitted for backward compatibility"
        else:
            raise error_at(tok, f"unknown lvs_sync_daemon option '{tok.text}'")
    return LvsSyncDaemon(
        interface,
        instance,
        values.get("id"),
        values.get("maxlen"),
        values.get("port"),
        values.get("ttl"),
        group,
    )


def lvs_timeouts(r: Reader, stmt: Stmt) -> LvsTimeouts:
    r.no_block(stmt)
    values: dict[str, int] = {}
    args = iter(stmt.args)
    for tok in args:
        if tok.text not in ("tcp", "tcpfin", "udp"):
            raise error_at(tok, f"lvs_timeouts takes tcp, tcpfin and udp, not '{tok.text}'")
        value = next(args, None)
        if value is None:
            raise error_at(tok, f"lvs_timeouts '{tok.text}' needs seconds")
        values[tok.text] = r.integer(value, f"lvs_timeouts {tok.text}", 1, 86400 * 31)
    if not values:
        raise error_at(stmt.head, "lvs_timeouts needs at least one of tcp, tcpfin, udp")
    return LvsTimeouts(values.get("tcp"), values.get("tcpfin"), values.get("udp"))
