"""The address plan of every layout, as plain data.

Docs, labs, tests and the Mininet Topo classes all read names and addresses from here, so
they agree (the table is the one in docs/layouts.md). Pure: no Mininet, no root;
`testbed.topo.layouts` turns a `Plan` into a Mininet graph.

Layouts:
- ``dr``: the seed's first layout. Clients - firewall - LAN with one director and the real
  servers. The VIP is on the director and on each real server's ``lo`` (ARP-silenced); real
  servers answer through the firewall, never through the director.
- ``nat``: the seed's second layout. Clients on an outer segment; a master and a backup
  director with an outer and an inner NIC each; real servers on a private inner segment whose
  gateway is the floating inner VIP.
- ``nat1``: ``nat`` with one NIC per director (both subnets on one segment), to test the
  seed's NIC hypothesis.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from dataclasses import dataclass, field
from typing import Any

from testbed.director.defense import DEFAULT_CONN_MAX, MAX_CONN_MAX, memory_needed_bytes
from testbed.director.schedulers import SCHEDULERS

VIP_DR = "10.0.0.100"
VIP_NAT_OUTER = "10.0.1.100"
VIP_NAT_INNER = "192.168.0.254"
FW_OUTER = "10.0.1.1"
FW_INNER = "10.0.0.1"
CLIENT_BASE = "10.0.1.10"  # client i (1-based) is CLIENT_BASE + i
RS_BASE_DR = "10.0.0.10"
RS_BASE_NAT = "192.168.0.10"
MAX_NODES_PER_ROLE = 200  # addresses .11 .. .210 stay inside the /24s

DEFAULT_DIRECTOR_MEM_MIB = 1024
MIN_DIRECTOR_MEM_MIB = 64

LAYOUTS = ("dr", "nat", "nat1")
SWITCH_KINDS = ("bridge", "ovs")
DIRECTOR_KINDS = ("python", "ipvs", "openflow", "none")
IO_MODES = ("ring", "frame")
HA_KINDS = ("vrrp", "keepalived", "none")
CONTROLLER_APPS = ("none", "l2_learning")


@dataclass(frozen=True)
class Service:
    """A virtual service the layout offers on its VIP (as ``ipvsadm -A`` would define it)."""

    proto: str  # "tcp" or "udp"
    port: int
    name: str


DEFAULT_SERVICES = (Service("tcp", 80, "http"), Service("udp", 7, "echo"))


class PlanError(ValueError):
    """A layout parameter is unknown or out of range; the message says which and why."""


def knob(
    default: Any,
    help: str,
    *,
    flag: str | None = None,
    short: str | None = None,
    choices: tuple[str, ...] | None = None,
) -> Any:
    """A `LayoutParams` field: its default and its help, the command-line flag that sets it
    (``--`` and the name with dashes unless ``flag``), an optional one-letter alias and, for a
    name from a list, its ``choices``. `lvs-testbed up` builds its options from these."""
    return field(
        default=default, metadata={"help": help, "flag": flag, "short": short, "choices": choices}
    )


@dataclass(frozen=True)
class LayoutParams:
    """What a user may change about a layout. Every field is a topology parameter, declared
    once here with its default, help and flag (`knob`); ``lvs-testbed up``'s options, the
    ``mn --custom`` keywords and the experiments' layout knobs (`layout_field`) come from it.

    Bandwidths are in Mbit/s per link; ``None`` leaves a link unshaped. ``bw_outer_mbit`` and
    ``bw_inner_mbit`` override ``bw_mbit`` on the client side and on the server side.
    ``director_cpu`` is a fraction of ONE core (0.25 = a quarter of one core), unlike
    Mininet's ``cpu=``, which is a fraction of all cores.
    """

    n_rs: int = knob(3, "Number of real servers.", flag="--rs")
    n_clients: int = knob(2, "Number of clients.", flag="--clients")
    bw_mbit: float | None = knob(None, "Shape every link to this rate, Mbit/s.")
    bw_outer_mbit: float | None = knob(
        None, "Rate of client-side links, Mbit/s (overrides --bw-mbit)."
    )
    bw_inner_mbit: float | None = knob(
        None, "Rate of server-side links, Mbit/s (overrides --bw-mbit)."
    )
    ethernet_overhead: bool = knob(
        True,
        "Count preamble, FCS and gap (24 B, 84 B minimum) against the rate, as a real wire does.",
    )
    delay_ms: float | None = knob(None, "Delay per link, ms (needs netem: a full kernel).")
    loss_pct: float | None = knob(None, "Loss per link, percent (needs netem: a full kernel).")
    queue_pkts: int | None = knob(None, "Queue length of shaped links, packets.")
    director_cpu: float | None = knob(
        None,
        "CPU quota of each director as a fraction of ONE core (0.25 = "
        "a quarter of one core; not Mininet's all-cores cpu=).",
    )
    cpu_period_us: int | None = knob(
        None,
        "CFS period for the quota, us (default 10000, longer only if "
        "the quota would fall under 1 ms).",
    )
    switch: str = knob(
        "bridge",
        "bridge (Linux bridge, fast) or ovs (Open vSwitch, userspace datapath).",
        choices=SWITCH_KINDS,
    )
    director: str = knob(
        "python",
        "Which director forwards the VIP's traffic: python (the userspace "
        "IPVS), ipvs (the kernel's IPVS with the real ipvsadm; needs a kernel with ip_vs), "
        "openflow (an os-ken app in the switches) or none (start it yourself "
        "with `d1 lvs-testbed director run`).",
        choices=DIRECTOR_KINDS,
    )
    scheduler: str = knob(
        "rr", "Scheduler of the default services.", short="-s", choices=tuple(sorted(SCHEDULERS))
    )
    io_mode: str = knob(
        "ring",
        "Director packet I/O: ring (batched, PACKET_MMAP) or frame (one system call per frame).",
        flag="--io",
        choices=IO_MODES,
    )
    batch: int = knob(64, "Director: frames per wake-up, at most (1..4096).")
    wait_us: int = knob(
        0, "Director: wait for more frames after a wake-up, us (the interrupt coalescing knob)."
    )
    table_bits: int = knob(12, "Director: connection table of 2^bits buckets (8..20).")
    controller: str = knob(
        "none",
        "With --switch ovs: l2_learning runs the os-ken learning switch "
        "(--director openflow always runs the OpenFlow director app).",
        choices=CONTROLLER_APPS,
    )
    ha: str = knob(
        "vrrp",
        "NAT layouts: vrrp (our keepalived-compatible daemon, with health checks), "
        "keepalived (Debian's keepalived: VRRP only beside the Python director; VRRP, "
        "health checks and lvs_sync_daemon with --director ipvs) or none (static VIPs on d1).",
        choices=HA_KINDS,
    )
    advert_int_s: float = knob(1.0, "VRRP advertisement interval, s (whole seconds for VRRPv2).")
    vrrp_version: int = knob(2, "VRRP version: 2 (RFC 3768) or 3 (RFC 5798).")
    conn_sync: bool = knob(True, "Sync connections from master to backup (as IPVS's sync daemon).")
    conn_max: int = knob(
        DEFAULT_CONN_MAX,
        "Director: connection table limit, entries (IPVS's defences act near it; docs/safety.md).",
    )
    director_mem_mib: int = knob(
        DEFAULT_DIRECTOR_MEM_MIB,
        "Memory limit of each director host (cgroup), MiB; 0 for none. Must hold a full table.",
    )

    def __post_init__(self) -> None:
        for name in ("n_rs", "n_clients"):
            value = getattr(self, name)
            if not isinstance(value, int) or not 1 <= value <= MAX_NODES_PER_ROLE:
                raise PlanError(
                    f"{name} must be an integer from 1 to {MAX_NODES_PER_ROLE}, got {value!r}"
                )
        for name in ("bw_mbit", "bw_outer_mbit", "bw_inner_mbit", "director_cpu"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise PlanError(f"{name} must be positive, got {value!r}")
        if self.delay_ms is not None and self.delay_ms < 0:
            raise PlanError(f"delay_ms must not be negative, got {self.delay_ms!r}")
        if self.loss_pct is not None and not 0 <= self.loss_pct <= 100:
            raise PlanError(f"loss_pct must be a percentage from 0 to 100, got {self.loss_pct!r}")
        if self.queue_pkts is not None and self.queue_pkts < 1:
            raise PlanError(f"queue_pkts must be at least 1, got {self.queue_pkts!r}")
        if self.cpu_period_us is not None and not 1000 <= self.cpu_period_us <= 1_000_000:
            raise PlanError(
                f"cpu_period_us must be from 1000 to 1000000, got {self.cpu_period_us!r}"
            )
        if self.switch not in SWITCH_KINDS:
            raise PlanError(f"switch must be one of {', '.join(SWITCH_KINDS)}, got {self.switch!r}")
        if self.director not in DIRECTOR_KINDS:
            raise PlanError(
                f"director must be one of {', '.join(DIRECTOR_KINDS)}, got {self.director!r}"
            )
        if self.scheduler not in SCHEDULERS:
            raise PlanError(
                f"scheduler must be one of {', '.join(sorted(SCHEDULERS))}, got {self.scheduler!r}"
            )
        if self.io_mode not in IO_MODES:
            raise PlanError(f"io_mode must be one of {', '.join(IO_MODES)}, got {self.io_mode!r}")
        if not 1 <= self.batch <= 4096:
            raise PlanError(f"batch must be from 1 to 4096 frames, got {self.batch!r}")
        if not 0 <= self.wait_us <= 1_000_000:
            raise PlanError(f"wait_us must be from 0 to 1000000, got {self.wait_us!r}")
        if not 8 <= self.table_bits <= 20:
            raise PlanError(f"table_bits must be from 8 to 20, got {self.table_bits!r}")
        if self.controller not in CONTROLLER_APPS:
            raise PlanError(
                f"controller must be one of {', '.join(CONTROLLER_APPS)}, got {self.controller!r}"
            )
        if self.controller != "none" and self.switch != "ovs":
            raise PlanError("a controller needs switch=ovs (OpenFlow switches)")
        if self.ha not in HA_KINDS:
            raise PlanError(f"ha must be one of {', '.join(HA_KINDS)}, got {self.ha!r}")
        if self.vrrp_version not in (2, 3):
            raise PlanError(f"vrrp_version must be 2 or 3, got {self.vrrp_version!r}")
        if not 0 < self.advert_int_s <= 255 or (
            self.vrrp_version == 2 and self.advert_int_s != int(self.advert_int_s)
        ):
            raise PlanError(
                f"advert_int_s must be whole seconds (1..255) for VRRPv2 and up to 40.95 s "
                f"for v3, got {self.advert_int_s!r}"
            )
        if self.director == "openflow" and self.switch != "ovs":
            raise PlanError("director=openflow needs switch=ovs (an OpenFlow switch)")
        if not 1 <= self.conn_max <= MAX_CONN_MAX:
            raise PlanError(
                f"conn_max must be from 1 to {MAX_CONN_MAX} entries, got {self.conn_max!r}"
            )
        if self.director_mem_mib and self.director_mem_mib < MIN_DIRECTOR_MEM_MIB:
            raise PlanError(
                f"director_mem_mib must be 0 (no limit) or at least {MIN_DIRECTOR_MEM_MIB}, "
                f"got {self.director_mem_mib!r}"
            )
        need_mib = -(-memory_needed_bytes(self.conn_max) // (1 << 20))
        if self.director_mem_mib and self.director_mem_mib < need_mib:
            raise PlanError(
                f"a director with a full table of {self.conn_max} entries needs about "
                f"{need_mib} MiB, more than its limit of {self.director_mem_mib} MiB: raise "
                f"--director-mem-mib to {need_mib} or lower --conn-max"
            )
        if self.director == "ipvs" and self.director_cpu is not None:
            raise PlanError(
                "director_cpu cannot limit kernel IPVS: it works in the kernel's softirq, "
                "outside any cgroup (use --director python for CPU quota experiments)"
            )
        if self.director == "ipvs" and self.table_bits != 12:
            raise PlanError(
                "table_bits is the Python director's; kernel IPVS sizes its table when the "
                "module loads (modprobe ip_vs conn_tab_bits=B, before anything uses it)"
            )

    @classmethod
    def from_kwargs(cls, layout: str, **kwargs: object) -> LayoutParams:
        """Build params from keyword arguments, rejecting unknown names with the known list."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise PlanError(
                f"unknown topology parameter {unknown[0]!r} for layout {layout!r}; "
                f"known: {', '.join(sorted(known))}"
            )
        return cls(**kwargs)  # type: ignore[arg-type]

    @classmethod
    def knobs(cls) -> list[dataclasses.Field]:
        """Every field, with its `knob` metadata (help, flag, choices)."""
        return list(dataclasses.fields(cls))

    def segment_bw_mbit(self, segment: str) -> float | None:
        """The shaped rate of links on ``segment`` ("outer" or "inner")."""
        override = self.bw_outer_mbit if segment == "outer" else self.bw_inner_mbit
        return override if override is not None else self.bw_mbit


@dataclass(frozen=True)
class Intf:
    """One interface of a host: its name, addresses (CIDR) and the switch it plugs into."""

    name: str
    addrs: tuple[str, ...]
    switch: str
    segment: str  # "outer" (client side) or "inner" (server side)


@dataclass(frozen=True)
class NodePlan:
    """A host: its role, interfaces, default gateway and VIPs."""

    name: str
    role: str  # "client", "firewall", "director", "realserver"
    intfs: tuple[Intf, ...]
    gateway: str | None = None
    lo_vips: tuple[str, ...] = ()  # DR real servers: the VIP on lo, ARP-silenced
    vips: tuple[tuple[str, str], ...] = ()  # (addr/prefix, interface) held while master

    @property
    def ip(self) -> str:
        """The first address of the first interface, without prefix."""
        return self.intfs[0].addrs[0].split("/")[0]


@dataclass(frozen=True)
class Reach:
    """An expected reachability fact: can ``src`` ping ``dst_ip``, and why (not)."""

    src: str
    dst: str
    dst_ip: str
    expect: bool
    why: str


@dataclass(frozen=True)
class Plan:
    """A layout with every name and address decided."""

    layout: str
    params: LayoutParams
    nodes: tuple[NodePlan, ...]
    switches: tuple[str, ...]
    vip: str
    inner_vip: str | None
    services: tuple[Service, ...] = DEFAULT_SERVICES
    reach: tuple[Reach, ...] = field(default=(), compare=False)

    def node(self, name: str) -> NodePlan:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    def by_role(self, role: str) -> list[NodePlan]:
        return [n for n in self.nodes if n.role == role]

    @property
    def directors(self) -> list[NodePlan]:
        return self.by_role("director")

    @property
    def realservers(self) -> list[NodePlan]:
        return self.by_role("realserver")

    @property
    def clients(self) -> list[NodePlan]:
        return self.by_role("client")

    @property
    def has_pair(self) -> bool:
        """A master/backup director pair whose VIPs fail over (NAT layouts with HA on; not
        with the OpenFlow director, which lives in the switches)."""
        return len(self.directors) == 2 and self.params.ha != "none" and not self.openflow

    @property
    def kernel_ipvs(self) -> bool:
        """The kernel's IPVS forwards, configured with the real ipvsadm (a full kernel)."""
        return self.params.director == "ipvs"

    @property
    def openflow(self) -> bool:
        """The OpenFlow director balances the VIP in the switches; the director hosts idle."""
        return self.params.director == "openflow"

    @property
    def controller_app(self) -> str | None:
        """The os-ken app programming the switches, if any."""
        if self.openflow:
            return "lb"
        return None if self.params.controller == "none" else self.params.controller


def spare_addresses(plan: Plan, cidr: str, count: int) -> list[str]:
    """``count`` addresses of ``cidr``'s subnet that nothing in ``plan`` uses (no host's
    address, VIP or gateway), from the top of the subnet down: for a run that needs more
    source addresses on a host than the plan gives it (pure)."""
    net = ipaddress.IPv4Interface(cidr).network
    used = {plan.vip, plan.inner_vip}
    for node in plan.nodes:
        used.add(node.gateway)
        used.update(a.split("/")[0] for intf in node.intfs for a in intf.addrs)
        used.update(v.split("/")[0] for v in node.lo_vips)
        used.update(v.split("/")[0] for v, _ in node.vips)
    spare = [str(a) for a in reversed(list(net.hosts())) if str(a) not in used]
    if len(spare) < count:
        raise PlanError(f"{net} has {len(spare)} spare addresses, not {count}")
    return spare[:count]


def _nth(base: str, i: int) -> str:
    return str(ipaddress.IPv4Address(base) + i)


def _clients(params: LayoutParams, gateway: str | None) -> list[NodePlan]:
    return [
        NodePlan(
            name=f"c{i}",
            role="client",
            intfs=(Intf(f"c{i}-eth0", (f"{_nth(CLIENT_BASE, i)}/24",), "s1", "outer"),),
            gateway=gateway,
        )
        for i in range(1, params.n_clients + 1)
    ]


def dr_plan(params: LayoutParams) -> Plan:
    """The seed's LVS-DR layout: clients - s1 - fw - s2 - {d1, rs1..rsN}."""
    nodes = _clients(params, FW_OUTER)
    nodes.append(
        NodePlan(
            name="fw",
            role="firewall",
            intfs=(
                Intf("fw-eth0", (f"{FW_OUTER}/24",), "s1", "outer"),
                Intf("fw-eth1", (f"{FW_INNER}/24",), "s2", "inner"),
            ),
        )
    )
    nodes.append(
        NodePlan(
            name="d1",
            role="director",
            intfs=(Intf("d1-eth0", ("10.0.0.2/24",), "s2", "inner"),),
            gateway=FW_INNER,
            vips=((f"{VIP_DR}/32", "d1-eth0"),),
        )
    )
    nodes += [
        NodePlan(
            name=f"rs{i}",
            role="realserver",
            intfs=(Intf(f"rs{i}-eth0", (f"{_nth(RS_BASE_DR, i)}/24",), "s2", "inner"),),
            gateway=FW_INNER,
            lo_vips=(f"{VIP_DR}/32",),
        )
        for i in range(1, params.n_rs + 1)
    ]
    plan = Plan("dr", params, tuple(nodes), ("s1", "s2"), VIP_DR, None)
    return dataclasses.replace(plan, reach=tuple(_dr_reach(plan)))


def nat_plan(params: LayoutParams, nics: int = 2) -> Plan:
    """The seed's LVS-NAT layout: a master/backup director pair with ``nics`` NICs each.

    With two NICs the outer segment (s1) carries clients and the directors' outer NICs and
    the inner segment (s2) the directors' inner NICs and the real servers. With one NIC
    everything shares s1 and each director holds both subnets on its only interface.
    """
    if nics not in (1, 2):
        raise PlanError(f"a NAT director has 1 or 2 NICs, not {nics}")
    inner_switch = "s2" if nics == 2 else "s1"
    nodes = _clients(params, None)
    for idx, name in enumerate(("d1", "d2")):
        outer, inner = f"10.0.1.{2 + idx}/24", f"192.168.0.{2 + idx}/24"
        if nics == 2:
            intfs = (
                Intf(f"{name}-eth0", (outer,), "s1", "outer"),
                Intf(f"{name}-eth1", (inner,), "s2", "inner"),
            )
            inner_if = f"{name}-eth1"
        else:
            intfs = (Intf(f"{name}-eth0", (outer, inner), "s1", "inner"),)
            inner_if = f"{name}-eth0"
        vips = ((f"{VIP_NAT_OUTER}/24", f"{name}-eth0"), (f"{VIP_NAT_INNER}/24", inner_if))
        nodes.append(NodePlan(name=name, role="director", intfs=intfs, vips=vips))
    nodes += [
        NodePlan(
            name=f"rs{i}",
            role="realserver",
            intfs=(Intf(f"rs{i}-eth0", (f"{_nth(RS_BASE_NAT, i)}/24",), inner_switch, "inner"),),
            gateway=VIP_NAT_INNER,
        )
        for i in range(1, params.n_rs + 1)
    ]
    switches = ("s1", "s2") if nics == 2 else ("s1",)
    layout = "nat" if nics == 2 else "nat1"
    plan = Plan(layout, params, tuple(nodes), switches, VIP_NAT_OUTER, VIP_NAT_INNER)
    return dataclasses.replace(plan, reach=tuple(_nat_reach(plan)))


def make_plan(layout: str, params: LayoutParams | None = None) -> Plan:
    """The plan of ``layout`` ("dr", "nat", "nat1") with ``params`` (defaults if None)."""
    params = params or LayoutParams()
    if layout == "dr":
        return dr_plan(params)
    if layout == "nat":
        return nat_plan(params, nics=2)
    if layout == "nat1":
        return nat_plan(params, nics=1)
    raise PlanError(f"unknown layout {layout!r}; known: {', '.join(LAYOUTS)}")


def ipvsadm_rules(plan: Plan) -> str:
    """The layout's default services in ``ipvsadm -S`` form: each service on the VIP over
    every real server, weight 1, forwarded as the layout does (DR: -g, NAT: -m)."""
    fwd = "-g" if plan.layout == "dr" else "-m"
    lines = []
    for svc in plan.services:
        flag = "-t" if svc.proto == "tcp" else "-u"
        lines.append(f"-A {flag} {plan.vip}:{svc.port} -s {plan.params.scheduler}")
        for rs in plan.realservers:
            lines.append(f"-a {flag} {plan.vip}:{svc.port} -r {rs.ip}:{svc.port} {fwd} -w 1")
    return "\n".join(lines) + "\n"


def _addr(node: NodePlan, intf_index: int = 0) -> str:
    return node.intfs[intf_index].addrs[0].split("/")[0]


def _dr_reach(plan: Plan) -> list[Reach]:
    fw, d1 = plan.node("fw"), plan.node("d1")
    out: list[Reach] = []
    for c in plan.clients:
        out.append(
            Reach(
                c.name,
                "VIP",
                plan.vip,
                True,
                "the director holds the VIP; the firewall admits ping to it",
            )
        )
        out.append(Reach(c.name, "fw", FW_OUTER, True, "same segment"))
        out.append(
            Reach(c.name, d1.name, _addr(d1), False, "the firewall admits only the VIP's services")
        )
        for rs in plan.realservers:
            out.append(
                Reach(c.name, rs.name, rs.ip, False, "the firewall admits only the VIP's services")
            )
    for rs in plan.realservers:
        out.append(
            Reach(
                rs.name,
                plan.clients[0].name,
                plan.clients[0].ip,
                True,
                "real servers route through the firewall",
            )
        )
        out.append(Reach(rs.name, fw.name, FW_INNER, True, "same LAN"))
        out.append(Reach(rs.name, d1.name, _addr(d1), True, "same LAN"))
    out.append(Reach(d1.name, plan.realservers[0].name, plan.realservers[0].ip, True, "same LAN"))
    return out


def _nat_reach(plan: Plan) -> list[Reach]:
    out: list[Reach] = []
    d1, d2 = plan.node("d1"), plan.node("d2")
    inner_idx = 1 if len(d1.intfs) == 2 else 0
    for c in plan.clients:
        out.append(Reach(c.name, "VIP", plan.vip, True, "the master director holds the outer VIP"))
        out.append(Reach(c.name, d1.name, _addr(d1), True, "same outer segment"))
        out.append(Reach(c.name, d2.name, _addr(d2), True, "same outer segment"))
        for rs in plan.realservers:
            out.append(
                Reach(c.name, rs.name, rs.ip, False, "clients have no route to the private network")
            )
    for rs in plan.realservers:
        out.append(
            Reach(
                rs.name, "inner-VIP", VIP_NAT_INNER, True, "the master holds the inner gateway VIP"
            )
        )
        out.append(
            Reach(
                rs.name,
                d2.name,
                d2.intfs[inner_idx].addrs[-1].split("/")[0],
                True,
                "same inner segment",
            )
        )
        out.append(
            Reach(
                rs.name,
                plan.clients[0].name,
                plan.clients[0].ip,
                False,
                "directors do not route; only the director's NAT joins the two sides",
            )
        )
    return out


def layout_field(name: str, default: Any = dataclasses.MISSING) -> Any:
    """An experiment parameter that sets the layout knob ``name``: the plan's default (unless
    ``default``) and help, so the two never drift. Pair it with `check_layout_knobs` in the
    parameters' ``__post_init__``, which applies the plan's own bounds."""
    spec = next((f for f in LayoutParams.knobs() if f.name == name), None)
    if spec is None:
        raise PlanError(f"unknown layout knob {name!r}")
    value = spec.default if default is dataclasses.MISSING else default
    return field(default=value, metadata={"help": spec.metadata["help"], "layout_knob": name})


def check_layout_knobs(params: object) -> None:
    """Refuse (PlanError, a ValueError) layout knobs the plan would refuse: the fields made
    with `layout_field` of a parameter dataclass, checked by `LayoutParams` itself."""
    values = {
        f.metadata["layout_knob"]: getattr(params, f.name)
        for f in dataclasses.fields(params)
        if "layout_knob" in f.metadata
    }
    LayoutParams(**values)
