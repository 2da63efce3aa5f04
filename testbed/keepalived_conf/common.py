"""What every part of the keepalived.conf model shares: errors, warnings, scripts, numbers.

For: `ConfigError` (a file keepalived would reject, with file and line), `ConfigWarning` (a
line that is accepted but not acted on, or acted on differently), `Script` (a notify, track,
quorum or MISC_CHECK command with the user it runs as) and `format_number`.

Not for: the VRRP or LVS data (`vrrp_model`, `check_model`) or the whole `Config` (`model`).
"""

from __future__ import annotations

from dataclasses import dataclass


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


@dataclass(frozen=True)
class Script:
    """A script keepalived runs: the command as written and, when given, who runs it.

    ``user``/``group`` are the words after the script (``notify_master "/x.sh arg" nobody``)
    or a block's ``user`` keyword; None means the default script user (``script_user`` in
    ``global_defs``, else ``keepalived_script`` when it exists, else root).
    """

    command: str
    user: str | None = None
    group: str | None = None


def format_number(value: float) -> str:
    """A number as keepalived.conf is written: 5, 0.5 (no trailing zeros)."""
    return str(int(value)) if value == int(value) else f"{value:.6f}".rstrip("0")
