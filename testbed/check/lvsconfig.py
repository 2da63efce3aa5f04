"""keepalived's virtual_server blocks as ipvsadm command lines, for the testbed's director.

What it is for: the pure translation keepalived's checker does through libipvs, written as
the ``ipvsadm`` argv lists the director's control channel takes (``{"op": "ipvsadm",
"argv": [...]}``):

=================================  ===================================================
keepalived.conf                    ipvsadm
=================================  ===================================================
``virtual_server IP PORT``         ``-t IP:PORT`` (``protocol UDP``: ``-u``; SCTP:
                                   ``--sctp-service``)
``virtual_server fwmark N``        ``-f N``
``virtual_server group G``         one service per address (range) and mark of the
                                   ``virtual_server_group``, each with every real server
``lb_algo`` / ``lvs_sched``        ``-s`` (none written: ipvsadm's and keepalived's wlc)
``lb_kind NAT|DR|TUN``             ``-m`` / ``-g`` / ``-i`` on each real server (a real
                                   server's own ``lvs_method`` wins); none written is
                                   keepalived's NAT, so ``-m`` is always spelled out
                                   (ipvsadm's own default would be ``-g``)
``persistence_timeout``            ``-p``
``persistence_granularity``        ``-M``
``real_server IP [PORT]``          ``-r IP[:PORT]`` (no port: ipvsadm takes the service's)
``weight``                         ``-w``
``uthreshold`` / ``lthreshold``    ``-x`` / ``-y``
``sorry_server IP [PORT]``         ``-r IP[:PORT]`` while the service has no quorum
``lvs_timeouts``                   ``--set TCP TCPFIN UDP``
``lvs_flush``                      ``-C`` before the services are set up
=================================  ===================================================

What it is not: the health checker (``checker.py`` decides when a real server goes and
comes back) or an ipvsadm parser. It does not check what the director supports; see
:func:`director_warnings` for that.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address

from testbed.director.schedulers import SCHEDULERS
from testbed.keepalived_conf.model import (
    Config,
    LvsTimeouts,
    RealServer,
    SorryServer,
    VirtualServer,
    describe,
)

FORWARDING_FLAGS = {"NAT": "-m", "DR": "-g", "TUN": "-i"}
DEFAULT_LB_KIND = "NAT"  # keepalived's default forwarding method
PROTOCOL_FLAGS = {"TCP": "-t", "UDP": "-u", "SCTP": "--sctp-service"}

Service = tuple[str, ...]  # the -t|-u|-f words that name one director service


@dataclass(frozen=True)
class Dest:
    """A real or sorry server as a destination of a director service."""

    address: IPv4Address
    port: int | None
    lb_kind: str
    uthreshold: int | None = None
    lthreshold: int | None = None

    @property
    def where(self) -> str:
        return str(self.address) if self.port is None else f"{self.address}:{self.port}"

    def describe(self) -> str:
        return f"[{self.address}]" + ("" if self.port is None else f":{self.port}")


def rs_dest(vs: VirtualServer, rs: RealServer) -> Dest:
    return Dest(
        rs.address,
        rs.port,
        rs.lb_kind or vs.lb_kind or DEFAULT_LB_KIND,
        rs.uthreshold,
        rs.lthreshold,
    )


def sorry_dest(vs: VirtualServer, sorry: SorryServer) -> Dest:
    return Dest(sorry.address, sorry.port, sorry.lb_kind or vs.lb_kind or DEFAULT_LB_KIND)


def services(vs: VirtualServer, config: Config) -> list[Service]:
    """The director services ``vs`` stands for: one, or one per member of its group."""
    proto = PROTOCOL_FLAGS[vs.protocol]
    if vs.group is not None:
        out: list[Service] = []
        for entry in config.virtual_server_groups[vs.group].entries:
            if entry.fwmark is not None:
                out.append(("-f", str(entry.fwmark)))
            for address in entry.addresses():
                out.append(
                    (proto, str(address) if entry.port is None else f"{address}:{entry.port}")
                )
        return out
    if vs.fwmark is not None:
        return [("-f", str(vs.fwmark))]
    if vs.address is None:
        raise ValueError("a virtual_server needs an address, a fwmark or a group")
    return [(proto, str(vs.address) if vs.port is None else f"{vs.address}:{vs.port}")]


def describe_service(service: Service) -> str:
    return "FWM " + service[1] if service[0] == "-f" else f"{service[1]} ({service[0]})"


def service_argv(vs: VirtualServer, service: Service, edit: bool = False) -> list[str]:
    """``-A`` (or ``-E`` when ``edit``) with scheduler and persistence."""
    argv = ["-E" if edit else "-A", *service]
    if vs.lb_algo is not None:
        argv += ["-s", vs.lb_algo]
    if vs.persistence_timeout_s is not None:
        argv += ["-p", str(vs.persistence_timeout_s)]
        if vs.persistence_granularity is not None:
            argv += ["-M", str(vs.persistence_granularity)]
    return argv


def delete_service_argv(service: Service) -> list[str]:
    return ["-D", *service]


def dest_argv(service: Service, dest: Dest, weight: int, edit: bool = False) -> list[str]:
    """``-a`` (or ``-e`` when ``edit``) with forwarding method, weight and thresholds."""
    argv = [
        "-e" if edit else "-a",
        *service,
        "-r",
        dest.where,
        FORWARDING_FLAGS[dest.lb_kind],
        "-w",
        str(weight),
    ]
    if dest.uthreshold is not None:
        argv += ["-x", str(dest.uthreshold)]
    if dest.lthreshold is not None:
        argv += ["-y", str(dest.lthreshold)]
    return argv


def delete_dest_argv(service: Service, dest: Dest) -> list[str]:
    return ["-d", *service, "-r", dest.where]


def timeouts_argv(timeouts: LvsTimeouts) -> list[str]:
    """``--set TCP TCPFIN UDP``; 0 leaves a value unchanged, as in ipvsadm."""
    return [
        "--set",
        *(str(v or 0) for v in (timeouts.tcp_s, timeouts.tcpfin_s, timeouts.udp_s)),
    ]


def startup_commands(config: Config) -> list[list[str]]:
    """What keepalived sets up at start: every service, then its real servers (all alive)."""
    commands: list[list[str]] = []
    for vs in config.virtual_servers:
        for service in services(vs, config):
            commands.append(service_argv(vs, service))
            commands += [dest_argv(service, rs_dest(vs, rs), rs.weight) for rs in vs.real_servers]
    return commands


def director_warnings(config: Config) -> list[str]:
    """What the testbed's director will refuse or cannot honour in ``config``.

    keepalived.conf accepts more schedulers than the director implements, and SCTP; these
    are valid configuration (the parser accepts them) that the director will reject.
    """
    warnings = []
    for vs in config.virtual_servers:
        where = f"virtual_server {describe(vs)}"
        if vs.lb_algo is not None and vs.lb_algo not in SCHEDULERS:
            warnings.append(f"{where}: lb_algo {vs.lb_algo} is not implemented by the director")
        if vs.fwmark is None and vs.protocol == "SCTP":
            warnings.append(f"{where}: the director does not support SCTP")
    return warnings
