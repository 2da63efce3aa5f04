"""An OpenFlow 1.3 learning switch: the os-ken app for OVS switches that have no other brain.

For: layouts built with ``switch="ovs"`` whose switches run in ``failMode="secure"`` and so
forward nothing until a controller programs them. Learning is per switch and per port
(`LearningTable`), so a layout with several switches is switched correctly; a frame to an
unknown or group address is flooded; a known destination gets a flow matching
in_port + eth_src + eth_dst, so every new source is seen (and learnt) once on each switch.
Flows idle out; when a MAC shows up on another port (a host moved, or a VRRP virtual MAC
failed over) the flows towards it are deleted at once, so nothing waits for a timeout.
On (re)connection the app deletes the flows it owns on that switch (by cookie, see flows.py)
and forgets what it learnt there, so a restarted controller starts clean and re-learns from
packet-ins. `LearningSwitch` is also what the OpenFlow director (lb.py) uses for traffic that
is not for a VIP.

Not for: loops (no spanning tree: the layouts have none), VLANs, or anything above L2.
"""

from __future__ import annotations

import struct
from typing import Any

from os_ken.base import app_manager
from os_ken.controller import ofp_event
from os_ken.controller.handler import CONFIG_DISPATCHER, MAIN_DISPATCHER, set_ev_cls
from os_ken.lib.packet import ethernet
from os_ken.ofproto import ofproto_v1_3

from .flows import FULL_MASK, L2_OWNER, add_flow, cookie, delete_flows, packet_out, reset_switch

IDLE_TIMEOUT_S = 60
HARD_TIMEOUT_S = 0
"""No hard timeout: moves are handled by deleting the flows towards the moved MAC (see
`LearningSwitch.learn`), so a hard timeout would only add packet-ins (and a hiccup in a
measurement) every few minutes on every busy flow."""
PRIORITY_L2 = 10


def is_unicast(mac: str) -> bool:
    """False for broadcast and multicast MACs (the group bit of the first octet)."""
    return not int(mac[:2], 16) & 1


def parse_ethernet(data: bytes) -> ethernet.ethernet | None:
    """The Ethernet header of a frame, or None if the frame is too short to have one."""
    try:
        eth, _, _ = ethernet.ethernet.parser(data)
    except struct.error:
        return None
    return eth


class LearningTable:
    """Which port each MAC was last seen on, per switch: (datapath id, MAC) -> port."""

    def __init__(self) -> None:
        self._ports: dict[int, dict[str, int]] = {}

    def learn(self, dpid: int, mac: str, port: int) -> int | None:
        """Record ``mac`` behind ``port`` of switch ``dpid``; return the port it was behind
        before if it moved, else None."""
        ports = self._ports.setdefault(dpid, {})
        old = ports.get(mac)
        ports[mac] = port
        return old if old is not None and old != port else None

    def port(self, dpid: int, mac: str) -> int | None:
        return self._ports.get(dpid, {}).get(mac)

    def forget(self, dpid: int) -> None:
        """Forget everything learnt on switch ``dpid`` (it reconnected: it may be another
        switch process, cabled anew)."""
        self._ports.pop(dpid, None)


class LearningSwitch:
    """The switching decisions, sent to the datapath a packet-in came from.

    ``owner`` is the cookie owner its flows carry (flows.L2_OWNER for the learning switch
    app, flows.LB_OWNER inside the director); its flows have flow id 0.
    """

    def __init__(
        self,
        owner: int,
        idle_timeout_s: int = IDLE_TIMEOUT_S,
        hard_timeout_s: int = HARD_TIMEOUT_S,
        priority: int = PRIORITY_L2,
    ) -> None:
        self.owner = owner
        self.idle_timeout_s = idle_timeout_s
        self.hard_timeout_s = hard_timeout_s
        self.priority = priority
        self.table = LearningTable()

    def switch_connected(self, datapath: Any) -> None:
        reset_switch(datapath, self.owner)
        self.table.forget(datapath.id)

    def packet_in(self, msg: Any) -> None:
        """Learn the source, then forward (or flood) the frame."""
        eth = parse_ethernet(msg.data)
        if eth is None:
            return
        self.learn(msg.datapath, msg.match["in_port"], eth.src)
        self.forward(msg, eth.src, eth.dst)

    def learn(self, datapath: Any, in_port: int, mac: str) -> None:
        """Learn ``mac`` behind ``in_port``. If it moved, delete this app's switching flows
        towards it on this switch: they still point at the old port."""
        if not is_unicast(mac):
            return
        if self.table.learn(datapath.id, mac, in_port) is not None:
            delete_flows(
                datapath,
                cookie(self.owner),
                FULL_MASK,
                datapath.ofproto_parser.OFPMatch(eth_dst=mac),
            )

    def forward(self, msg: Any, eth_src: str, eth_dst: str) -> None:
        """Send a frame on to ``eth_dst``'s port with a flow for the ones that follow, or
        flood it if that port is not known (or the address is a group address)."""
        datapath = msg.datapath
        in_port = msg.match["in_port"]
        out_port = self.table.port(datapath.id, eth_dst) if is_unicast(eth_dst) else None
        if out_port is None:
            self.flood(msg)
            return
        if out_port == in_port:
            return  # the destination is on the segment the frame came from: nothing to do
        parser = datapath.ofproto_parser
        actions = [parser.OFPActionOutput(out_port)]
        add_flow(
            datapath,
            self.priority,
            parser.OFPMatch(in_port=in_port, eth_src=eth_src, eth_dst=eth_dst),
            actions,
            cookie=cookie(self.owner),
            idle_timeout_s=self.idle_timeout_s,
            hard_timeout_s=self.hard_timeout_s,
        )
        packet_out(datapath, in_port, actions, msg.data, msg.buffer_id)

    @staticmethod
    def flood(msg: Any) -> None:
        """Send the packet-in's frame out of every port but the one it came in on."""
        datapath = msg.datapath
        ofp, parser = datapath.ofproto, datapath.ofproto_parser
        packet_out(
            datapath,
            msg.match["in_port"],
            [parser.OFPActionOutput(ofp.OFPP_FLOOD)],
            msg.data,
            msg.buffer_id,
        )


class L2LearningSwitch(app_manager.OSKenApp):
    """The os-ken app: thin handlers over `LearningSwitch`."""

    OFP_VERSIONS = [ofproto_v1_3.OFP_VERSION]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.switch = LearningSwitch(L2_OWNER)

    @set_ev_cls(ofp_event.EventOFPSwitchFeatures, CONFIG_DISPATCHER)
    def _switch_features(self, ev: Any) -> None:
        self.logger.info("switch %016x connected", ev.msg.datapath.id)
        self.switch.switch_connected(ev.msg.datapath)

    @set_ev_cls(ofp_event.EventOFPPacketIn, MAIN_DISPATCHER)
    def _packet_in(self, ev: Any) -> None:
        self.switch.packet_in(ev.msg)
