"""The machinery every keepalived.conf keyword parser shares (keepalived's lib/parser.c
helpers): single values, numbers in range, booleans, IPv4 addresses, scripts with their
run-as user, blocks, and the warnings list.

Unknown keywords are skipped with a `ConfigWarning` naming file and line (collected, never
printed: the caller prints). Keywords that configure what a lab has no use for (SMTP alerts,
SNMP, DBus) are skipped with a warning that says so (`ignored`). Real mistakes (missing or
non-numeric values, out-of-range numbers, IPv6) raise `ConfigError` with file, line and
reason.

Not for: which keywords exist (`global_parser`, `vrrp_parser`, `check_parser`).
"""

from __future__ import annotations

import re
from ipaddress import IPv4Address, IPv4Network, ip_address, ip_network

from testbed.keepalived_conf.common import ConfigWarning, Script, format_number
from testbed.keepalived_conf.lexer import WORD, Stmt, Tok, error_at
from testbed.keepalived_conf.model import Config

TRUE_WORDS = ("on", "true", "yes")
FALSE_WORDS = ("off", "false", "no")
MAX_U32 = 2**32 - 1
MAX_I31 = 2**31 - 1

# Why a keyword is accepted and not acted on; docs/keepalived.md lists the same.
LAB_NO_USE = {
    "smtp": "SMTP alerts: a lab sends no mail",
    "snmp": "SNMP: the lab runs no SNMP agent",
    "dbus": "DBus: the lab runs no DBus",
}


def lab_reason(keyword: str) -> str | None:
    """Why this testbed ignores ``keyword`` on purpose, or None."""
    word = keyword.lower()
    if word.startswith(("smtp", "notification_email")) or word in (
        "no_email_faults",
        "email_faults",
    ):
        return LAB_NO_USE["smtp"]
    if "snmp" in word or word == "enable_traps":
        return LAB_NO_USE["snmp"]
    if "dbus" in word:
        return LAB_NO_USE["dbus"]
    return None


class Reader:
    """One parse: the Config being filled, its warnings, and the value helpers."""

    def __init__(self) -> None:
        self.warnings: list[ConfigWarning] = []
        self.config = Config()
        # Where each object/keyword was set, for the checks that run after parsing.
        self.pos: dict[tuple[int, str], Tok] = {}

    # ----- warnings

    def warn(self, tok: Tok, message: str) -> None:
        self.warnings.append(ConfigWarning(tok.file, tok.line, message))

    def unknown(self, stmt: Stmt, where: str) -> None:
        reason = lab_reason(stmt.keyword)
        if reason:
            self.ignored(stmt, reason)
        else:
            self.warn(stmt.head, f"unknown keyword '{stmt.keyword}' in {where}; ignored")

    def ignored(self, stmt: Stmt, why: str) -> None:
        self.warn(stmt.head, f"'{stmt.keyword}' ignored ({why})")

    # ----- blocks and values

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

    def boolean(self, stmt: Stmt) -> bool:
        """``keyword [<BOOL>]``: no value is true (keepalived's check_true_false)."""
        self.no_block(stmt)
        if not stmt.args:
            return True
        word = stmt.args[0].text.lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
        raise error_at(
            stmt.args[0], f"'{stmt.keyword}' takes on|off|true|false|yes|no, got '{word}'"
        )

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
        return Reader.ipv4_text(tok, tok.text, what)

    @staticmethod
    def ipv4_text(tok: Tok, text: str, what: str) -> IPv4Address:
        try:
            address = ip_address(text)
        except ValueError:
            raise error_at(tok, f"'{what}': '{text}' is not an IP address") from None
        if not isinstance(address, IPv4Address):
            raise error_at(tok, f"'{what}': IPv6 is not supported by this testbed")
        return address

    @staticmethod
    def ipv4_network(tok: Tok, what: str) -> IPv4Network | None:
        """An IPv4 prefix (host bits allowed, as ip(8) takes them); None if not valid.

        IPv6 raises: the testbed refuses IPv6 everywhere.
        """
        text = "0.0.0.0/0" if tok.text == "default" else tok.text
        try:
            network = ip_network(text, strict=False)
        except ValueError:
            return None
        if not isinstance(network, IPv4Network):
            raise error_at(tok, f"'{what}': IPv6 is not supported by this testbed")
        return network

    def int_value(self, stmt: Stmt, lo: int, hi: int) -> int:
        return self.integer(self.value(stmt), stmt.keyword, lo, hi)

    def float_value(self, stmt: Stmt, lo: float, hi: float) -> float:
        return self.decimal(self.value(stmt), stmt.keyword, lo, hi)

    def string(self, stmt: Stmt) -> str:
        return self.value(stmt).text

    def script(self, stmt: Stmt) -> Script:
        """A script: one word, or a quoted string with its arguments, then keepalived's
        optional run-as ``USER [GROUP]``."""
        self.no_block(stmt)
        if not stmt.args:
            raise error_at(stmt.head, f"'{stmt.keyword}' needs a script")
        if len(stmt.args) > 3:
            self.warn(stmt.args[3], f"'{stmt.keyword}': words after USER GROUP ignored")
        user = stmt.args[1].text if len(stmt.args) > 1 else None
        group = stmt.args[2].text if len(stmt.args) > 2 else None
        return Script(stmt.args[0].text, user, group)

    def user_group(self, stmt: Stmt) -> tuple[str, str | None]:
        """``user USERNAME [GROUPNAME]``."""
        self.no_block(stmt)
        if not stmt.args:
            raise error_at(stmt.head, f"'{stmt.keyword}' needs a user name")
        return stmt.args[0].text, (stmt.args[1].text if len(stmt.args) > 1 else None)

    def block_name(self, stmt: Stmt) -> str:
        self.need_block(stmt)
        if len(stmt.args) != 1:
            raise error_at(stmt.head, f"'{stmt.keyword}' needs exactly one name")
        return stmt.args[0].text

    @staticmethod
    def sub_token(tok: Tok, text: str) -> Tok:
        """A token for part of ``tok`` (a prefix length, a range end), at its place."""
        return Tok(WORD, text, tok.file, tok.line)
