"""keepalived.conf: the common subset, parsed into typed dataclasses and rendered back.

What it is for: reading the ``keepalived.conf`` a user brings and writing a `Config` back as
keepalived.conf text. Split as keepalived's own parser is: `model` (the data and keepalived's
defaults), `lexer` (tokens, ``include``, the statement tree), `parser` (keywords into the
model), `render` (the model into text). Used by the VRRP daemon (`testbed.vrrp`), the health
checkers (`testbed.check`) and the OpenFlow director.

What it is not: a full keepalived parser; see `parser` for what is warned about or refused.
"""

from testbed.keepalived_conf.model import ConfigError, ConfigWarning, ParseResult
from testbed.keepalived_conf.parser import load_config, parse_config
from testbed.keepalived_conf.render import render_config

__all__ = [
    "ConfigError",
    "ConfigWarning",
    "ParseResult",
    "load_config",
    "parse_config",
    "render_config",
]
