"""What the daemons and hosts of a layout run with, derived from the address plan: the NAT
pair's keepalived.conf (`nat_pair_config`) or a user's own (`UserConfig`), the OpenFlow
director's services
(`lb_config_for_layout`) and the DR firewall's nftables ruleset (`firewall_ruleset`). The
daemons themselves know nothing of layouts. Pure: no Mininet, no root.

The keepalived.conf is for ``lvs-testbed vrrp show-config nat --director d1`` and the layouts,
which start the VRRP daemon on ``d1`` (MASTER, priority 150) and ``d2`` (BACKUP, priority 100)
with this configuration. It is a `testbed.keepalived_conf.model.Config`, rendered with
``testbed.keepalived_conf.render_config``, so the same text runs under real keepalived 2.2.7.

What it makes, per director:

* ``VI_OUTER`` (VRID 51) on the outer NIC holding the outer VIP 10.0.1.100/24, and
  ``VI_INNER`` (VRID 52) on the inner NIC holding the real servers' gateway 192.168.0.254/24;
  in ``nat1`` both instances sit on the one NIC.
* A ``vrrp_sync_group`` ``VG_NAT`` with both, so the pair fails over as one: a backup that
  took only the outer VIP would accept clients whose replies go to the other director.
* With two NICs, each instance also tracks the other NIC (``track_interface``). The sync
  group alone already faults both instances when either NIC goes down; the tracking makes
  each instance's own configuration say so, as keepalived users write it.
* One ``virtual_server`` per service of the plan on the outer VIP, over every real server,
  ``lb_kind NAT``, ``lb_algo`` from the plan's scheduler, ``inhibit_on_failure`` (a failed
  real server is quiesced with weight 0 rather than removed, so its connections drain).
  ``tcp 80`` is checked with ``HTTP_GET`` of ``/`` expecting 200; another TCP service would
  get a ``TCP_CHECK``; ``udp 7`` (echo) with ``UDP_CHECK`` and ``require_reply``, so a real
  server whose echo stops answering (not only one that sends ICMP port unreachable) is
  taken out. Every service the layout offers is checked.

What it is not: a general keepalived.conf generator; the DR layout has one director and no
VRRP pair.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface
from typing import TYPE_CHECKING, Any

from testbed.keepalived_conf import load_config
from testbed.keepalived_conf.ifmap import rename_interfaces
from testbed.keepalived_conf.model import (
    Config,
    GlobalDefs,
    HttpGet,
    RealServer,
    TcpCheck,
    TrackInterface,
    UdpCheck,
    UrlCheck,
    VirtualAddress,
    VirtualServer,
    VrrpInstance,
    VrrpSyncGroup,
)
from testbed.topo.plan import (
    VIP_NAT_INNER,
    LayoutParams,
    NodePlan,
    Plan,
    Service,
    ipvsadm_rules,
    make_plan,
)

if TYPE_CHECKING:
    from testbed.controllers.lb import LbConfig

NAT_LAYOUTS = ("nat", "nat1")
ROLES = {"d1": ("MASTER", 150), "d2": ("BACKUP", 100)}
OUTER_INSTANCE, INNER_INSTANCE = "VI_OUTER", "VI_INNER"
VRIDS = {OUTER_INSTANCE: 51, INNER_INSTANCE: 52}
SYNC_GROUP = "VG_NAT"
# What the generated pair runs with (faster than keepalived's defaults, so a lab sees a
# failed real server within seconds).
PAIR_DELAY_LOOP_S = 5.0
PAIR_CONNECT_TIMEOUT_S = 2.0
PAIR_RETRY = 1
PAIR_DELAY_BEFORE_RETRY_S = 1.0
HTTP_CHECK_PATH = "/"
HTTP_CHECK_STATUS = 200


class GenerateError(ValueError):
    """The layout, director or a parameter has no NAT-pair configuration."""


def nat_pair_config(
    plan: Plan,
    director: str,
    *,
    advert_int_s: float = 1.0,
    version: int = 2,
    track_other_nic: bool = True,
    delay_loop_s: float = PAIR_DELAY_LOOP_S,
) -> Config:
    """keepalived.conf for ``director`` ("d1" or "d2") of a NAT ``plan`` ("nat" or "nat1")."""
    if plan.layout not in NAT_LAYOUTS:
        raise GenerateError(
            f"the {plan.layout!r} layout has no director pair; VRRP configurations exist for "
            f"{', '.join(NAT_LAYOUTS)}"
        )
    if director not in ROLES:
        raise GenerateError(f"unknown director {director!r}: d1 (master) or d2 (backup)")
    if version not in (2, 3):
        raise GenerateError(f"VRRP version must be 2 or 3, not {version}")
    if version == 2 and advert_int_s != int(advert_int_s):
        raise GenerateError(f"VRRPv2 advertises in whole seconds, not {advert_int_s}")
    upper = 255 if version == 2 else 40.95
    if not 0 < advert_int_s <= upper:
        raise GenerateError(f"the advert interval must be in (0, {upper}] s, not {advert_int_s}")
    node = plan.node(director)
    state, priority = ROLES[director]
    (outer_vip, outer_if), (inner_vip, inner_if) = node.vips
    instances = {}
    for name, vip, nic, other in (
        (OUTER_INSTANCE, outer_vip, outer_if, inner_if),
        (INNER_INSTANCE, inner_vip, inner_if, outer_if),
    ):
        tracked = [TrackInterface(other)] if track_other_nic and other != nic else []
        instances[name] = VrrpInstance(
            name=name,
            virtual_router_id=VRIDS[name],
            state=state,
            interface=nic,
            priority=priority,
            advert_int_s=float(advert_int_s),
            virtual_ipaddresses=[_vip(vip, nic)],
            track_interfaces=tracked,
        )
    return Config(
        global_defs=GlobalDefs(router_id=director, vrrp_version=version),
        instances=instances,
        sync_groups={SYNC_GROUP: VrrpSyncGroup(SYNC_GROUP, [OUTER_INSTANCE, INNER_INSTANCE])},
        virtual_servers=[
            _virtual_server(plan, svc, plan.realservers, delay_loop_s) for svc in plan.services
        ],
    )


def _vip(cidr: str, dev: str) -> VirtualAddress:
    iface = IPv4Interface(cidr)
    return VirtualAddress(iface.ip, iface.network.prefixlen, dev=dev)


def _virtual_server(
    plan: Plan, svc: Service, realservers: list[NodePlan], delay_loop_s: float
) -> VirtualServer:
    return VirtualServer(
        address=IPv4Address(plan.vip),
        port=svc.port,
        delay_loop_s=float(delay_loop_s),
        lb_algo=plan.params.scheduler,
        lb_kind="NAT",
        protocol=svc.proto.upper(),
        real_servers=[
            RealServer(
                address=IPv4Address(rs.ip),
                port=svc.port,
                weight=1,
                inhibit_on_failure=True,
                checkers=_checkers(svc),
            )
            for rs in realservers
        ],
    )


def _checkers(svc: Service) -> list[HttpGet | TcpCheck | UdpCheck]:
    timing = {
        "connect_timeout_s": PAIR_CONNECT_TIMEOUT_S,
        "retry": PAIR_RETRY,
        "delay_before_retry_s": PAIR_DELAY_BEFORE_RETRY_S,
    }
    if svc.proto == "udp":
        return [UdpCheck(require_reply=True, **timing)]
    if svc.name == "http":
        url = UrlCheck(HTTP_CHECK_PATH, ((HTTP_CHECK_STATUS, HTTP_CHECK_STATUS),))
        return [HttpGet(urls=[url], **timing)]
    return [TcpCheck(**timing)]


@dataclass
class UserConfig:
    """A director's own keepalived.conf: where it is, keepalived's ``-i`` (None: the
    director's name, so one file with ``@d1``/``@d2`` lines serves both), and how its
    interface names map to the director's (``{"eth0": "d1-eth0"}``)."""

    path: str
    config_id: str | None = None
    iface_map: dict[str, str] = field(default_factory=dict)

    def effective(self, director: str) -> Config:
        """The configuration as the director's daemon will run it."""
        config = load_config(self.path, config_id=self.config_id or director).config
        return rename_interfaces(config, self.iface_map)


def lb_config_for_layout(mode: str = "dr", n_rs: int = 3, **kwargs: Any) -> LbConfig:
    """The OpenFlow director's configuration for a layout, for what ``kwargs`` does not give:
    ``dr``: tcp 80 and udp 7 on 10.0.0.100 over rs1..rsN with -g; ``nat``: the same on
    10.0.1.100 with -m, answering for the inner gateway VIP 192.168.0.254 too."""
    from testbed.controllers.lb import LbConfig

    if mode not in ("dr", "nat"):
        raise ValueError(f"unknown forwarding mode {mode!r}: dr or nat")
    plan = make_plan(mode, LayoutParams(n_rs=n_rs))
    kwargs.setdefault("gateway_ips", (VIP_NAT_INNER,) if mode == "nat" else ())
    kwargs.setdefault("rules", ipvsadm_rules(plan))
    return LbConfig(**kwargs)


def firewall_ruleset(
    table: str, vip: str | None, services: tuple[Service, ...], outside_intf: str | None
) -> str:
    """The firewall's nftables ruleset (pure, so it is unit-tested)."""
    lines = [
        f"table inet {table} {{",
        "  chain forward {",
        "    type filter hook forward priority 0; policy accept;",
        "    ct state established,related accept",
    ]
    if outside_intf:
        lines.append(f'    iifname != "{outside_intf}" accept')
    if vip:
        lines.append(f"    ip daddr {vip} icmp type echo-request accept")
        for svc in services:
            lines.append(f"    ip daddr {vip} {svc.proto} dport {svc.port} accept")
    # Reject rather than drop: a lab's blocked probe should fail at once, not time out.
    lines += ["    reject with icmpx type admin-prohibited", "  }", "}"]
    return "\n".join(lines)


def ipvs_forward_ruleset(table: str, rs_net: str, services: tuple[Service, ...]) -> str:
    """The forward filter of a kernel-IPVS NAT director (pure, so it is unit-tested).

    Kernel IPVS rewrites a NAT real server's reply in the forward hook, so the director must
    route (ip_forward=1); this chain keeps it from routing anything else: from the real
    servers' network only the services' replies (and ICMP errors, which IPVS translates) pass,
    so real servers still cannot reach clients on their own and clients never reach them.
    """
    lines = [
        f"table inet {table} {{",
        "  chain forward {",
        "    type filter hook forward priority 0; policy drop;",
    ]
    for svc in services:
        lines.append(f"    ip saddr {rs_net} {svc.proto} sport {svc.port} accept")
    lines += [
        f"    ip saddr {rs_net} icmp type {{ destination-unreachable, time-exceeded, "
        "parameter-problem } accept",
        "  }",
        "}",
    ]
    return "\n".join(lines)
