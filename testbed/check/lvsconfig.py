"""keepalived's virtual_server blocks as ipvsadm command lines, for the testbed's director.

What it is for: the pure translation keepalived's checker does through libipvs, written as
the ``ipvsadm`` argv lists the director's control channel takes (``{"op": "ipvsadm",
"argv": [...]}``):

=============================  ====================================================
keepalived.conf                ipvsadm
=============================  ====================================================
``virtual_server IP PORT``     ``-t IP:PORT`` (``protocol UDP``: ``-u``; SCTP:
                               ``--sctp-service``)
``virtual_server fwmark N``    ``-f N``
``lb_algo`` / ``lvs_sched``    ``-s`` (none written: ipvsadm's and keepalived's wlc)
``lb_kind NAT|DR|TUN``         ``-m`` / ``-g`` / ``-i`` on each real server; none
                               written is keepalived's NAT, so ``-m`` is always
                               spelled out (ipvsadm's own default would be ``-g``)
``persistence_timeout``        ``-p``
``persistence_granularity``    ``-M``
``real_server IP [PORT]``      ``-r IP[:PORT]`` (no port: ipvsadm takes the service's)
``weight``                     ``-w``
=============================  ====================================================

What it is not: the health checker (``checker.py`` decides when a real server goes and
comes back) or an ipvsadm parser. It does not check what the director supports; see
:func:`director_warnings` for that.
"""

from __future__ import annotations

from testbed.director.schedulers import SCHEDULERS
from testbed.keepalived_conf.model import Config, RealServer, VirtualServer

FORWARDING_FLAGS = {"NAT": "-m", "DR": "-g", "TUN": "-i"}
DEFAULT_LB_KIND = "NAT"  # keepalived's default forwarding method
PROTOCOL_FLAGS = {"TCP": "-t", "UDP": "-u", "SCTP": "--sctp-service"}


def service_address(vs: VirtualServer) -> list[str]:
    """The ``-t|-u|-f ...`` words that name the virtual service."""
    if vs.fwmark is not None:
        return ["-f", str(vs.fwmark)]
    if vs.address is None:
        raise ValueError("a virtual_server needs an address or a fwmark")
    where = str(vs.address) if vs.port is None else f"{vs.address}:{vs.port}"
    return [PROTOCOL_FLAGS[vs.protocol], where]


def describe(vs: VirtualServer) -> str:
    """A virtual service as keepalived's log writes it: ``[10.0.1.100]:tcp:80``, ``FWM 5``."""
    if vs.fwmark is not None:
        return f"FWM {vs.fwmark}"
    port = "" if vs.port is None else f":{vs.port}"
    return f"[{vs.address}]:{vs.protocol.lower()}{port}"


def describe_rs(rs: RealServer) -> str:
    return f"[{rs.address}]" + ("" if rs.port is None else f":{rs.port}")


def service_argv(vs: VirtualServer, edit: bool = False) -> list[str]:
    """``-A`` (or ``-E`` when ``edit``) with scheduler and persistence."""
    argv = ["-E" if edit else "-A", *service_address(vs)]
    if vs.lb_algo is not None:
        argv += ["-s", vs.lb_algo]
    if vs.persistence_timeout_s is not None:
        argv += ["-p", str(vs.persistence_timeout_s)]
        if vs.persistence_granularity is not None:
            argv += ["-M", str(vs.persistence_granularity)]
    return argv


def delete_service_argv(vs: VirtualServer) -> list[str]:
    return ["-D", *service_address(vs)]


def _real_address(rs: RealServer) -> str:
    return str(rs.address) if rs.port is None else f"{rs.address}:{rs.port}"


def real_server_argv(
    vs: VirtualServer, rs: RealServer, weight: int | None = None, edit: bool = False
) -> list[str]:
    """``-a`` (or ``-e`` when ``edit``) with forwarding method and weight.

    ``weight`` overrides the configured one (0 for ``inhibit_on_failure``).
    """
    kind = vs.lb_kind or DEFAULT_LB_KIND
    return [
        "-e" if edit else "-a",
        *service_address(vs),
        "-r",
        _real_address(rs),
        FORWARDING_FLAGS[kind],
        "-w",
        str(rs.weight if weight is None else weight),
    ]


def delete_real_server_argv(vs: VirtualServer, rs: RealServer) -> list[str]:
    return ["-d", *service_address(vs), "-r", _real_address(rs)]


def startup_commands(config: Config) -> list[list[str]]:
    """What keepalived sets up at start: every service, then its real servers (all alive)."""
    commands: list[list[str]] = []
    for vs in config.virtual_servers:
        commands.append(service_argv(vs))
        commands += [real_server_argv(vs, rs) for rs in vs.real_servers]
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
