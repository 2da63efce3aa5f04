"""keepalived.conf: parsed into typed dataclasses and rendered back.

What it is for: reading the ``keepalived.conf`` a user brings and writing a `Config` back as
keepalived.conf text. Split as keepalived's own parser is: the model (`common`, `vrrp_model`,
`check_model`, gathered in `model`), `preprocess` (files into logical lines: comments,
``include``, ``@ID`` lines, ``$PARAMETERS``, ``~SEQ``/``~LST``), `lexer` (words and blocks),
`reader` (the value helpers), the keyword parsers (`global_parser`, `vrrp_parser`,
`route_parser`, `check_parser`) joined in `parser`, and `render` (the model into text). Used
by the VRRP daemon (`testbed.vrrp`), the health checkers (`testbed.check`) and the OpenFlow
director. docs/keepalived.md lists every keyword and what the testbed does with it.

What it is not: IPv6, IPsec AH, VMACs, BFD, track files, SNMP or mail (see the docs).
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
