"""The OpenFlow 1.3 messages the controller apps send, and the cookies that mark their flows.

For: installing a flow (`add_flow`, the one place a flow mod is built), deleting the flows an
app owns (`delete_flows`), the table-miss flow, packet-out, and the cookie layout. Protocol
constants and classes always come from the datapath (``datapath.ofproto``,
``datapath.ofproto_parser``), so any object that has them and ``send_msg`` will do (the
tests' fake datapath).

Not for: deciding what to install (l2_learning.py, lb.py).

Cookies. The upper 32 bits name the app that owns a flow (`L2_OWNER`, `LB_OWNER`), the lower
32 bits are the app's own flow id (0 for table-miss and learning-switch flows). A restarted
app deletes every flow whose upper bits are its own and nothing else, so two apps, or a
human with ``ovs-ofctl``, can share a switch.
"""

from __future__ import annotations

from typing import Any

OWNER_MASK = 0xFFFFFFFF_00000000
FLOW_ID_MASK = 0x00000000_FFFFFFFF
FULL_MASK = 0xFFFFFFFF_FFFFFFFF
"""A cookie mask that selects one flow id of one owner."""
L2_OWNER = 0x4C564C32 << 32  # "LVL2"
LB_OWNER = 0x4C564C42 << 32  # "LVLB"

PRIORITY_TABLE_MISS = 0
MAX_TIMEOUT_S = 0xFFFF
"""idle_timeout and hard_timeout are 16-bit seconds in OpenFlow."""


def cookie(owner: int, flow_id: int = 0) -> int:
    """The cookie of flow ``flow_id`` (0..2^32-1) of ``owner``."""
    return owner | (flow_id & FLOW_ID_MASK)


def add_flow(
    datapath: Any,
    priority: int,
    match: Any,
    actions: list,
    *,
    cookie: int,
    idle_timeout_s: int = 0,
    hard_timeout_s: int = 0,
    notify_removal: bool = False,
    table_id: int = 0,
) -> None:
    """Install (or replace) a flow applying ``actions``. Timeouts are capped at 65535 s;
    ``notify_removal`` asks the switch for a flow-removed message (OFPFF_SEND_FLOW_REM)."""
    ofp, parser = datapath.ofproto, datapath.ofproto_parser
    instructions = [parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, actions)]
    datapath.send_msg(
        parser.OFPFlowMod(
            datapath=datapath,
            cookie=cookie,
            table_id=table_id,
            command=ofp.OFPFC_ADD,
            idle_timeout=min(idle_timeout_s, MAX_TIMEOUT_S),
            hard_timeout=min(hard_timeout_s, MAX_TIMEOUT_S),
            priority=priority,
            flags=ofp.OFPFF_SEND_FLOW_REM if notify_removal else 0,
            match=match,
            instructions=instructions,
        )
    )


def delete_flows(datapath: Any, cookie: int, cookie_mask: int, match: Any = None) -> None:
    """Delete, in every table, the flows whose cookie matches under ``cookie_mask`` (and
    ``match``, non-strictly, when given)."""
    ofp, parser = datapath.ofproto, datapath.ofproto_parser
    datapath.send_msg(
        parser.OFPFlowMod(
            datapath=datapath,
            cookie=cookie,
            cookie_mask=cookie_mask,
            table_id=ofp.OFPTT_ALL,
            command=ofp.OFPFC_DELETE,
            # 0 would mean "only flows that output to port 0": ANY is "whatever they output to"
            out_port=ofp.OFPP_ANY,
            out_group=ofp.OFPG_ANY,
            match=match if match is not None else parser.OFPMatch(),
        )
    )


def barrier(datapath: Any) -> None:
    """Make the switch finish what came before before it starts on what comes after."""
    datapath.send_msg(datapath.ofproto_parser.OFPBarrierRequest(datapath))


def reset_switch(datapath: Any, owner: int) -> None:
    """What an app does when a switch connects: delete the flows it owns (left by an earlier
    run of the app, or from before the switch reconnected), then install the table-miss flow
    sending whole packets (no buffering) to the controller."""
    ofp, parser = datapath.ofproto, datapath.ofproto_parser
    delete_flows(datapath, owner, OWNER_MASK)
    barrier(datapath)
    add_flow(
        datapath,
        PRIORITY_TABLE_MISS,
        parser.OFPMatch(),
        [parser.OFPActionOutput(ofp.OFPP_CONTROLLER, ofp.OFPCML_NO_BUFFER)],
        cookie=cookie(owner),
    )


def packet_out(
    datapath: Any,
    in_port: int,
    actions: list,
    data: bytes | None = None,
    buffer_id: int | None = None,
) -> None:
    """Send a packet through ``actions``: the packet-in's buffered packet when ``buffer_id``
    names one, else ``data``. ``in_port`` is OFPP_CONTROLLER for packets the app made."""
    ofp, parser = datapath.ofproto, datapath.ofproto_parser
    if buffer_id is None or buffer_id == ofp.OFP_NO_BUFFER:
        buffer_id, payload = ofp.OFP_NO_BUFFER, data
    else:
        payload = None
    datapath.send_msg(
        parser.OFPPacketOut(
            datapath=datapath, buffer_id=buffer_id, in_port=in_port, actions=actions, data=payload
        )
    )
