"""Mininet links whose both ends shape their egress with `testbed.net.shaping`.

Like Mininet's TCLink, but the rate accounts for Ethernet framing, delay and loss are refused
with a clear message where netem is missing, and tc errors raise instead of being printed.
"""

from __future__ import annotations

from mininet.link import Intf, Link

from testbed.net.shaping import Shaping, ShapingError, require_netem, tc_commands


class ShapedIntf(Intf):
    """An interface that shapes its egress on `config`."""

    def config(self, shaping: Shaping | None = None, **params):  # noqa: ANN201 - Mininet API
        result = super().config(**params)
        if shaping is not None and not shaping.empty:
            require_netem(shaping)
            for cmd in tc_commands(self.name, shaping):
                out = self.cmd("tc " + cmd + " 2>&1; echo rc=$?")
                if not out.rstrip().endswith("rc=0"):
                    raise ShapingError(f"{self.node.name}: tc {cmd} failed: {out.strip()}")
        self.shaping = shaping
        return result


class ShapedLink(Link):
    """A veth pair shaped the same way at both ends (each end shapes what it sends)."""

    def __init__(
        self,
        node1,
        node2,
        port1=None,
        port2=None,
        intfName1=None,
        intfName2=None,
        addr1=None,
        addr2=None,
        shaping: Shaping | None = None,
        **params,
    ):
        Link.__init__(
            self,
            node1,
            node2,
            port1=port1,
            port2=port2,
            intfName1=intfName1,
            intfName2=intfName2,
            cls1=ShapedIntf,
            cls2=ShapedIntf,
            addr1=addr1,
            addr2=addr2,
            params1={"shaping": shaping},
            params2={"shaping": shaping},
            **params,
        )
