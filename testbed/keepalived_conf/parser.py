"""keepalived.conf text into the typed model: the entry points and the top-level blocks.

The work is split as keepalived splits it: `preprocess` reads files into logical lines
(comments, ``include``, conditional lines, ``$PARAMETERS``, ``~SEQ``/``~LST``), `lexer` makes
words and blocks, `reader` holds the value helpers, and one parser per part of the file
fills the model: `global_parser` (``global_defs``), `vrrp_parser` (``vrrp_*`` and the
``static_*`` blocks), `check_parser` (``virtual_server*`` and ``SSL``).

Warnings are collected (`ParseResult.warnings`), never printed; errors are `ConfigError` with
file, line and reason. ``config_id`` is keepalived's ``-i``: which ``@ID`` lines apply.

Not for: writing configurations (`render`).
"""

from __future__ import annotations

import os

from testbed.keepalived_conf.check_parser import CheckParser
from testbed.keepalived_conf.global_parser import parse_global_defs
from testbed.keepalived_conf.lexer import parse_block, tokenize
from testbed.keepalived_conf.model import ConfigError, ConfigWarning, ParseResult
from testbed.keepalived_conf.preprocess import Preprocessor, read_text
from testbed.keepalived_conf.reader import Reader, lab_reason
from testbed.keepalived_conf.route_parser import rule_priority_counter
from testbed.keepalived_conf.vrrp_parser import VrrpParser

NAMESPACE_KEYWORDS = frozenset({"net_namespace", "net_namespace_ipvs", "namespace_with_ipsets"})


def parse_config(
    text: str, source: str = "<string>", *, config_id: str | None = None
) -> ParseResult:
    """Parses keepalived.conf text; ``include`` is relative to ``source``'s directory."""
    reader = Reader()
    stack = (os.path.realpath(source),) if os.path.exists(source) else ()
    pre = Preprocessor(reader.warnings, config_id)
    try:
        _parse(reader, parse_block(list(tokenize(pre.lines(text, source, stack)))))
    except ConfigError as exc:
        if pre.ids_seen and config_id not in pre.ids_seen:
            raise ConfigError(exc.file, exc.line, exc.reason + _id_hint(pre, config_id)) from None
        raise
    if pre.ids_seen and config_id not in pre.ids_seen:
        first = min(pre.ids_seen.values(), key=lambda line: (line.file != source, line.line))
        reader.warnings.append(
            ConfigWarning(first.file, first.line, "no @ID line applies" + _id_hint(pre, config_id))
        )
    return ParseResult(reader.config, reader.warnings)


def _id_hint(pre: Preprocessor, config_id: str | None) -> str:
    ids = ", ".join(sorted(pre.ids_seen))
    given = f"the config id is {config_id!r}" if config_id else "no config id was given"
    return f" (this file has @ID lines for {ids} and {given}: pass one with --config-id/-i)"


def _parse(reader: Reader, stmts: list) -> None:
    vrrp = VrrpParser(reader)
    vrrp.rule_priority = rule_priority_counter()
    check = CheckParser(reader)
    handlers = {
        "vrrp_instance": vrrp.instance,
        "vrrp_sync_group": vrrp.sync_group,
        "vrrp_script": vrrp.vrrp_script,
        "static_ipaddress": vrrp.static_ipaddress,
        "static_routes": vrrp.static_routes,
        "static_rules": vrrp.static_rules,
        "virtual_server_group": check.group,
        "virtual_server": check.virtual_server,
        "SSL": check.ssl,
    }
    for stmt in stmts:
        kw = stmt.keyword
        if kw == "global_defs":
            parse_global_defs(reader, reader.need_block(stmt))
        elif kw in handlers:
            handlers[kw](stmt)
        elif kw in NAMESPACE_KEYWORDS:
            reader.ignored(stmt, "the testbed runs the daemon inside the director's namespace")
        elif lab_reason(kw):
            reader.ignored(stmt, lab_reason(kw) or "")
        else:
            reader.warn(stmt.head, f"unknown or unsupported block '{kw}'; ignored")
    vrrp.finish()
    check.finish()


def load_config(path: str | os.PathLike[str], *, config_id: str | None = None) -> ParseResult:
    """Parses a keepalived.conf file (UTF-8; anything else is a ConfigError)."""
    return parse_config(read_text(os.fspath(path)), os.fspath(path), config_id=config_id)
