"""A learning switch, as an os-ken app file: load it by path, or copy it to write your own.

Run it for a layout on Open vSwitch whose switches wait for a controller::

    sudo lvs-testbed controller run controllers/l2_learning.py --port 6653

(``lvs-testbed up dr --switch ovs --controller l2_learning`` starts the same app by itself.)
To write your own app, copy this file (``cp controllers/l2_learning.py controllers/mine.py``),
rename the class, and add handlers: each ``@set_ev_cls`` method gets one kind of OpenFlow
event. os-ken takes the first app class *defined* in the file, so define exactly one.

The logic (learning per switch and port, flows that idle out, moves handled at once) is
`testbed.controllers.l2_learning.LearningSwitch`, unit-tested with a fake datapath; the
handlers here only pass events to it. docs/openflow.md says more.
"""

from typing import Any

from os_ken.controller import ofp_event
from os_ken.controller.handler import MAIN_DISPATCHER, set_ev_cls

from testbed.controllers.l2_learning import L2LearningSwitch


class L2Learning(L2LearningSwitch):
    """The package's learning switch (switch features and packet-in handlers inherited).

    A handler of your own goes here; this one only counts the packets the switches sent up,
    to show the shape (a handler inherited under another name keeps working beside it)."""

    packet_ins = 0

    @set_ev_cls(ofp_event.EventOFPPacketIn, MAIN_DISPATCHER)
    def count_packet_in(self, ev: Any) -> None:
        self.packet_ins += 1
        if self.packet_ins % 1000 == 0:
            self.logger.info("%d packet-ins so far", self.packet_ins)
