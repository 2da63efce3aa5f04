"""ipvsadm's command line and output over a Director, as a pure function.

For: `run(argv, state, stdin_text=None, now=None) -> Result(rc, out, err)`, which parses the
options as ipvsadm 1.31 does (popt: bundled short options, optional -p argument, the first
option must be the command), checks them against ipvsadm's table of legal command/option
pairs, applies the command to `state` (a model.Director) and renders the output column for
column as ipvsadm.c prints it: -L/-l with --stats, --rate, --thresholds, --persistent-conn,
--exact, --nosort, -c, --timeout; -S in the form -R reads back. Errors use ipvsadm's and
libipvs's words and exit codes (2 for usage errors, 255 for refusals from the kernel side, 1
for listing a missing service), and a refused command changes nothing.

Not for: I/O. `argv` excludes the program name; the caller prints `out` and `err` and exits
with `rc`. Names are not resolved: addresses are always printed numerically, as with -n,
and host names are refused; port names such as `http` are read with getservbyname, falling
back to a small built-in table. Not supported: IPv6, SCTP, --pe, --ops, tunnel types other
than ipip (``--tun-type ipip`` is taken, and -S writes it for -i, as ipvsadm 1.31 does) and the
sync-daemon commands (each gets a clear error). Weights go up to INT_MAX, as Debian's ipvsadm
takes them. How this compares with kernel IPVS and the real ipvsadm, command by command, is in
docs/ipvs-differences.md (tests/kernel checks it). -S also saves -x/-y thresholds when set
(ipvsadm drops them), and -R checks every line before applying any (ipvsadm applies lines up
to the first bad one).
"""

from __future__ import annotations

import re
import shlex
import socket
from collections.abc import Callable
from typing import Any, NamedTuple

from .conntable import PROTO_NAMES
from .model import (
    DEFAULT_PERSISTENT_TIMEOUT_S,
    DEFAULT_SCHEDULER,
    HOST_NETMASK,
    IPVS_VERSION,
    DestSpec,
    Director,
    Fwd,
    IpvsError,
    Proto,
    ServiceSpec,
    VirtualService,
    int_to_ip,
    service_key,
)
from .schedulers import SCHEDULERS, describe_sched_flags, sched_flag_names

PROGRAM = "ipvsadm"
VERSION_LINE = f"ipvsadm v1.31 2019/12/24 (compiled with popt and IPVS v{IPVS_VERSION})"
MAX_TIMEOUT_S = 86400 * 31
MAX_WEIGHT = 2**31 - 1
SCHEDNAME_MAXLEN = 15  # IP_VS_SCHEDNAME_MAXLEN - 1
RC_USAGE = 2  # fail(2, ...)
RC_REFUSED = 255  # main() returns -1 after a failed ipvs_* call, or tryhelp_exit(-1)
RC_NO_SERVICE = 1  # list_service(): exit(1)


class Result(NamedTuple):
    rc: int
    out: str
    err: str


class _Exit(Exception):
    def __init__(self, rc: int, err: str = "", out: str = "") -> None:
        super().__init__(err)
        self.result = Result(rc, out, err)


def _fail(message: str) -> _Exit:
    return _Exit(RC_USAGE, message + "\n")


def _tryhelp() -> _Exit:
    return _Exit(RC_REFUSED, f"Try `{PROGRAM} -h' or '{PROGRAM} --help' for more information.\n")


# -- the options, as ipvsadm's popt table has them --------------------------------------------
_NO_ARG, _ARG, _OPT_ARG = 0, 1, 2
_OPTIONS = (
    # long name, short, argument, tag
    ("add-service", "A", _NO_ARG, "A"),
    ("edit-service", "E", _NO_ARG, "E"),
    ("delete-service", "D", _NO_ARG, "D"),
    ("clear", "C", _NO_ARG, "C"),
    ("list", "L", _NO_ARG, "L"),
    ("list", "l", _NO_ARG, "L"),
    ("zero", "Z", _NO_ARG, "Z"),
    ("add-server", "a", _NO_ARG, "a"),
    ("edit-server", "e", _NO_ARG, "e"),
    ("delete-server", "d", _NO_ARG, "d"),
    ("set", "", _NO_ARG, "set"),
    ("help", "h", _NO_ARG, "h"),
    ("version", "v", _NO_ARG, "v"),
    ("restore", "R", _NO_ARG, "R"),
    ("save", "S", _NO_ARG, "S"),
    ("start-daemon", "", _ARG, "start-daemon"),
    ("stop-daemon", "", _ARG, "stop-daemon"),
    ("tcp-service", "t", _ARG, "t"),
    ("udp-service", "u", _ARG, "u"),
    ("sctp-service", "", _ARG, "sctp-service"),
    ("fwmark-service", "f", _ARG, "f"),
    ("scheduler", "s", _ARG, "s"),
    ("persistent", "p", _OPT_ARG, "p"),
    ("netmask", "M", _ARG, "M"),
    ("real-server", "r", _ARG, "r"),
    ("masquerading", "m", _NO_ARG, "m"),
    ("ipip", "i", _NO_ARG, "i"),
    ("gatewaying", "g", _NO_ARG, "g"),
    ("weight", "w", _ARG, "w"),
    ("u-threshold", "x", _ARG, "x"),
    ("l-threshold", "y", _ARG, "y"),
    ("numeric", "n", _NO_ARG, "n"),
    ("connection", "c", _NO_ARG, "c"),
    ("mcast-interface", "", _ARG, "mcast-interface"),
    ("syncid", "", _ARG, "syncid"),
    ("timeout", "", _NO_ARG, "timeout"),
    ("daemon", "", _NO_ARG, "daemon"),
    ("stats", "", _NO_ARG, "stats"),
    ("rate", "", _NO_ARG, "rate"),
    ("thresholds", "", _NO_ARG, "thresholds"),
    ("persistent-conn", "", _NO_ARG, "persistent-conn"),
    ("nosort", "", _NO_ARG, "nosort"),
    ("sort", "", _NO_ARG, "sort"),
    ("exact", "X", _NO_ARG, "exact"),
    ("ipv6", "6", _NO_ARG, "ipv6"),
    ("ops", "o", _NO_ARG, "ops"),
    ("pe", "", _ARG, "pe"),
    ("sched-flags", "b", _ARG, "b"),
    ("mcast-group", "", _ARG, "mcast-group"),
    ("mcast-port", "", _ARG, "mcast-port"),
    ("mcast-ttl", "", _ARG, "mcast-ttl"),
    ("sync-maxlen", "", _ARG, "sync-maxlen"),
    ("tun-info", "", _NO_ARG, "tun-info"),
    ("tun-type", "", _ARG, "tun-type"),
    ("tun-port", "", _ARG, "tun-port"),
    ("tun-nocsum", "", _NO_ARG, "tun-nocsum"),
    ("tun-csum", "", _NO_ARG, "tun-csum"),
    ("tun-remcsum", "", _NO_ARG, "tun-remcsum"),
)
_LONG = {long: (mode, tag) for long, _, mode, tag in _OPTIONS}
_SHORT = {short: (mode, tag) for _, short, mode, tag in _OPTIONS if short}
_UNSUPPORTED = {
    "sctp-service",
    "mcast-interface",
    "syncid",
    "ipv6",
    "ops",
    "pe",
    "mcast-group",
    "mcast-port",
    "mcast-ttl",
    "sync-maxlen",
    "tun-info",
    "tun-type",
    "tun-port",
    "tun-nocsum",
    "tun-csum",
    "tun-remcsum",
}
_COMMANDS = {
    "A": "add-service",
    "E": "edit-service",
    "D": "delete-service",
    "C": "flush",
    "L": "list",
    "a": "add-server",
    "d": "delete-server",
    "e": "edit-server",
    "set": "set",
    "start-daemon": "start-daemon",
    "stop-daemon": "stop-daemon",
    "R": "restore",
    "S": "save",
    "Z": "zero",
}

# commands_v_options[][] of ipvsadm.c for the options supported here, in ipvsadm's order:
# '+' compulsory, 'x' illegal, '1' at most one of them, ' ' optional.
_OPTNAMES = (
    "numeric",
    "connection",
    "service-address",
    "scheduler",
    "persistent",
    "netmask",
    "real-server",
    "forwarding-method",
    "weight",
    "u-threshold",
    "l-threshold",
    "timeout",
    "daemon",
    "stats",
    "rate",
    "thresholds",
    "persistent-conn",
    "nosort",
    "exact",
    "sched-flags",
)
_LEGAL = {
    #                  n c s s p M r f w x y t d s r t p s e b
    "add-service": "xx+   xxxxxxxxxxxxx ",
    "edit-service": "xx+   xxxxxxxxxxxxx ",
    "delete-service": "xx+xxxxxxxxxxxxxxxxx",
    "flush": "xxxxxxxxxxxxxxxxxxxx",
    "list": " 11xxxxxxxx11      x",
    "add-server": "xx+xxx+    xxxxxxxxx",
    "delete-server": "xx+xxx+xxxxxxxxxxxxx",
    "edit-server": "xx+xxx+    xxxxxxxxx",
    "set": "xxxxxxxxxxxxxxxxxxxx",
    "restore": "xxxxxxxxxxxxxxxxxxxx",
    "save": " xxxxxxxxxxxxxxxxxxx",
    "zero": "xx xxxxxxxxxxxxxxxxx",
}

_NUMBER = re.compile(r"\s*[+-]?[0-9]+")
_WELL_KNOWN_PORTS = {
    "echo": 7,
    "ftp-data": 20,
    "ftp": 21,
    "ssh": 22,
    "telnet": 23,
    "smtp": 25,
    "domain": 53,
    "http": 80,
    "www": 80,
    "pop3": 110,
    "ntp": 123,
    "imap": 143,
    "imap2": 143,
    "snmp": 161,
    "ldap": 389,
    "https": 443,
    "submission": 587,
    "imaps": 993,
    "pop3s": 995,
    "mysql": 3306,
    "http-alt": 8080,
}


class _Event(NamedTuple):
    tag: str | None  # None marks a popt error; `arg` then holds the message
    arg: str | None
    raw: str


def _popt(argv: list[str]) -> tuple[list[_Event], list[str]]:
    """Split argv as popt does: option events in order (ending at the first error) and the
    leftover arguments."""
    events: list[_Event] = []
    leftovers: list[str] = []
    i = 0
    while i < len(argv):
        word = argv[i]
        i += 1
        if word == "--":
            leftovers.extend(argv[i:])
            break
        if word.startswith("--"):
            name, eq, value = word[2:].partition("=")
            if name not in _LONG:
                events.append(_Event(None, "unknown option", word))
                break
            mode, tag = _LONG[name]
            arg: str | None = None
            if mode == _NO_ARG:
                if eq:
                    events.append(_Event(None, "option does not take an argument", word))
                    break
            elif eq:
                arg = value
            elif i < len(argv) and (mode == _ARG or not argv[i].startswith("-")):
                arg = argv[i]
                i += 1
            elif mode == _ARG:
                events.append(_Event(None, "missing argument", word))
                break
            events.append(_Event(tag, arg, word))
            continue
        if not word.startswith("-") or word == "-":
            leftovers.append(word)
            continue
        j = 1
        while j < len(word):
            letter = word[j]
            j += 1
            if letter not in _SHORT:
                events.append(_Event(None, "unknown option", word))
                return events, leftovers
            mode, tag = _SHORT[letter]
            if mode == _NO_ARG:
                events.append(_Event(tag, None, word))
                continue
            arg = None
            if j < len(word):
                arg = word[j:]
            elif i < len(argv) and (mode == _ARG or not argv[i].startswith("-")):
                arg = argv[i]
                i += 1
            elif mode == _ARG:
                events.append(_Event(None, "missing argument", word))
                return events, leftovers
            events.append(_Event(tag, arg, word))
            break
    return events, leftovers


# -- argument parsers ---------------------------------------------------------------------------
def _string_to_number(text: str, low: int, high: int) -> int | None:
    """strtol() over the whole string, then a range check, as ipvsadm's string_to_number."""
    if not _NUMBER.fullmatch(text):
        return None
    value = int(text)
    return value if low <= value <= high else None


def _inet_aton(text: str) -> int | None:
    try:
        return int.from_bytes(socket.inet_aton(text), "big")
    except (OSError, ValueError):
        return None


def _service_port(name: str, proto: int) -> int | None:
    """A port name for the protocol: /etc/services when the system has it, else a built-in
    table of the common ones."""
    if proto not in (Proto.TCP, Proto.UDP):
        return None
    try:
        return socket.getservbyname(name, "tcp" if proto == Proto.TCP else "udp")
    except OSError:
        return _WELL_KNOWN_PORTS.get(name)


def _parse_service(text: str, proto: int) -> tuple[int, int | None] | None:
    """host[:port] -> (address, port or None); None if unusable (parse_service())."""
    if not text or text.isdigit():
        return None
    if text.startswith("[") or text.count(":") > 1:
        return None  # IPv6
    host, colon, port_text = text.rpartition(":")
    if not colon:
        host, port_text = text, ""
    addr = _inet_aton(host)
    if addr is None:
        return None
    if not colon:
        return addr, None
    port = _string_to_number(port_text, 0, 65535)
    if port is None:
        port = _service_port(port_text, proto)
    return None if port is None else (addr, port)


def _parse_timeout(text: str | None, low: int, high: int) -> int:
    if text is None:
        return DEFAULT_PERSISTENT_TIMEOUT_S
    value = _string_to_number(text, low, high)
    if value is None:
        raise _fail(f"invalid timeout value `{text}' specified")
    return value


def _parse_sched_flags(scheduler: str, text: str) -> int:
    names = sched_flag_names(scheduler)
    flags = 0
    for flag in text.split(","):
        if not flag:
            continue
        if flag in names:
            flags |= names[flag]
        elif any(flag in sched_flag_names(other) for other in ("sh", "mh")):
            raise _fail(f"incompatible scheduler flag `{flag}'")
        else:
            raise _fail(f"invalid scheduler flag `{flag}'")
    return flags


# -- one command --------------------------------------------------------------------------------
class _Command:
    """An ipvsadm command line, parsed and checked (struct ipvs_command_entry and friends)."""

    def __init__(self) -> None:
        self.cmd = ""
        self.options: set[str] = set()
        self.fmt: set[str] = set()
        self.proto = int(Proto.TCP)
        self.addr = 0
        self.port = 0
        self.fwmark = 0
        self.scheduler = ""
        self.persistent = False
        self.timeout_s = DEFAULT_PERSISTENT_TIMEOUT_S
        self.netmask = HOST_NETMASK
        self.sched_flags_text = ""
        self.sched_flags = 0
        self.daddr = 0
        self.dport = 0
        self.weight = 1
        self.fwd = Fwd.DR
        self.u_threshold = 0
        self.l_threshold = 0
        self.timeouts = (0, 0, 0)

    def set_option(self, name: str) -> None:
        if name in self.options:
            raise _fail(f"multiple '{name}' options specified")
        self.options.add(name)

    @property
    def key(self) -> tuple[int, int, int, int]:
        return service_key(self.proto, self.addr, self.port, self.fwmark)

    def service_spec(self) -> ServiceSpec:
        return ServiceSpec(
            self.proto,
            self.addr,
            self.port,
            self.fwmark,
            self.scheduler or DEFAULT_SCHEDULER,
            self.persistent,
            self.timeout_s,
            self.netmask,
            self.sched_flags,
        )

    def dest_spec(self) -> DestSpec:
        return DestSpec(
            self.daddr, self.dport, self.weight, self.fwd, self.u_threshold, self.l_threshold
        )


def _parse(argv: list[str]) -> _Command:
    events, leftovers = _popt(argv)
    if not events or events[0].tag is None:
        raise _tryhelp()
    first = events[0]
    if first.tag == "h":
        raise _Exit(0, out=_usage())
    if first.tag == "v":
        raise _Exit(0, out=VERSION_LINE + "\n")
    if first.tag not in _COMMANDS:
        raise _tryhelp()
    command = _Command()
    command.cmd = _COMMANDS[first.tag]
    if first.tag in ("start-daemon", "stop-daemon"):
        raise _fail(
            f"--{first.tag}: connection sync is not controlled through ipvsadm in "
            "lvs-testbed (the director daemon starts it)"
        )
    for event in events[1:]:
        if event.tag is None:
            raise _Exit(RC_REFUSED, f"{event.raw}: {event.arg}\n")
        _apply_option(command, event)
    if command.cmd == "set":
        if len(leftovers) < 3:
            raise _fail("--set option requires 3 timeout values")
        tcp_s, tcpfin_s, udp_s = (_parse_timeout(text, 0, MAX_TIMEOUT_S) for text in leftovers[:3])
        command.timeouts = (tcp_s, tcpfin_s, udp_s)
        leftovers = leftovers[3:]
    if leftovers:
        raise _fail(f"unexpected argument {leftovers[0]}")
    if command.sched_flags_text:
        command.sched_flags = _parse_sched_flags(
            command.scheduler or DEFAULT_SCHEDULER, command.sched_flags_text
        )
    _check_options(command)
    return command


def _apply_option(command: _Command, event: _Event) -> None:
    tag, arg = event.tag, event.arg or ""
    if tag in ("t", "u"):
        command.set_option("service-address")
        command.proto = int(Proto.TCP if tag == "t" else Proto.UDP)
        parsed = _parse_service(arg, command.proto)
        if parsed is None:
            raise _fail("illegal virtual server address[:port] specified")
        command.addr = parsed[0]
        if parsed[1] is not None:
            command.port = parsed[1]
    elif tag == "f":
        command.set_option("service-address")
        mark = _string_to_number(arg, 1, 0xFFFFFFFF)
        if mark is None:
            raise _fail(f"invalid fwmark value `{arg}' specified")
        command.proto, command.fwmark = int(Proto.TCP), mark
    elif tag == "s":
        command.set_option("scheduler")
        command.scheduler = arg[:SCHEDNAME_MAXLEN]
    elif tag == "p":
        command.set_option("persistent")
        command.persistent = True
        command.timeout_s = _parse_timeout(event.arg, 1, MAX_TIMEOUT_S)
    elif tag == "M":
        command.set_option("netmask")
        mask = _inet_aton(arg)
        if mask is None:
            raise _fail("illegal virtual server persistent mask specified")
        command.netmask = mask
    elif tag == "r":
        command.set_option("real-server")
        parsed = _parse_service(arg, command.proto)
        if parsed is None:
            raise _fail("illegal real server address[:port] specified")
        # No port given: the service's port as known at this point of the line.
        command.daddr = parsed[0]
        command.dport = command.port if parsed[1] is None else parsed[1]
    elif tag in ("m", "i", "g"):
        command.set_option("forwarding-method")
        command.fwd = {"m": Fwd.NAT, "i": Fwd.TUN, "g": Fwd.DR}[tag]
    elif tag == "w":
        command.set_option("weight")
        # Debian's ipvsadm 1.31 takes weights up to INT_MAX (upstream stops at 65535).
        weight = _string_to_number(arg, 0, MAX_WEIGHT)
        if weight is None:
            raise _fail("illegal weight specified")
        command.weight = weight
    elif tag in ("x", "y"):
        name = "u-threshold" if tag == "x" else "l-threshold"
        command.set_option(name)
        value = _string_to_number(arg, 0, 2**31 - 1)
        if value is None:
            raise _fail(f"illegal {name.replace('-', '_')} specified")
        if tag == "x":
            command.u_threshold = value
        else:
            command.l_threshold = value
    elif tag == "n":
        command.set_option("numeric")
    elif tag == "c":
        command.set_option("connection")
    elif tag in ("timeout", "daemon"):
        command.set_option(tag)
    elif tag in ("stats", "rate", "thresholds", "persistent-conn", "nosort", "exact"):
        command.set_option(tag)
        command.fmt.add(tag)
    elif tag == "sort":
        pass  # sorting is the default; ipvsadm keeps the option for compatibility
    elif tag == "b":
        command.set_option("sched-flags")
        command.sched_flags_text = arg
    elif tag == "tun-type" and arg == "ipip":
        pass  # IP-in-IP, ipvsadm's default and what -S writes for -i: the only tunnel here
    elif tag in _UNSUPPORTED:
        raise _fail(
            f"{event.raw}: not supported by lvs-testbed's ipvsadm "
            "(IPv4 TCP/UDP services only, no sync daemon options)"
        )
    else:
        raise _fail(f"invalid option `{event.raw}'")


def _check_options(command: _Command) -> None:
    """generic_opt_check(), then the per-command checks of process_options()."""
    legal = _LEGAL[command.cmd]
    first_exclusive = None
    for name, rule in zip(_OPTNAMES, legal, strict=True):
        if name not in command.options:
            if rule == "+":
                raise _fail(
                    f"You need to supply the '{name}' option for the '{command.cmd}' command"
                )
            continue
        if rule == "x":
            raise _fail(f"Illegal '{name}' option with the '{command.cmd}' command")
        if rule == "1":
            if first_exclusive is None:
                first_exclusive = name
            else:
                raise _fail(
                    f"The option '{name}' conflicts with the '{first_exclusive}' "
                    f"option in the '{command.cmd}' command"
                )
    if (
        command.cmd in ("add-service", "edit-service")
        and not command.fwmark
        and not command.port
        and not command.persistent
    ):
        raise _fail("Zero port specified for non-persistent service")
    # The real server port must be the service's for DR and TUN, unless fwmark.
    if (
        command.cmd in ("add-server", "edit-server")
        and not command.fwmark
        and command.fwd in (Fwd.DR, Fwd.TUN)
    ):
        command.dport = command.port
    if command.cmd == "list":
        opts = command.options
        if (
            opts & {"connection", "timeout", "daemon"} and opts & {"stats", "rate", "thresholds"}
        ) or (opts & {"timeout", "daemon"} and "persistent-conn" in opts):
            raise _fail("options conflicts in the list command")


# -- output -------------------------------------------------------------------------------------
def _addrport(addr: int, port: int) -> str:
    return f"{int_to_ip(addr)}:{port}"


def _largenum(value: int, exact: bool) -> str:
    """print_largenum(): 9 columns, or K/M/G/T units past 8 digits unless --exact."""
    if exact:
        text = str(value)
        return text.rjust(9 if len(text) <= 8 else len(text) + 1)
    if value < 100_000_000:
        return f"{value:9d}"
    if value < 1_000_000_000:
        return f"{value // 1000:8d}K"
    if value < 100_000_000_000:
        return f"{value // 1_000_000:8d}M"
    if value < 100_000_000_000_000:
        return f"{value // 1_000_000_000:8d}G"
    return f"{value // 1_000_000_000_000:8d}T"


def _title(fmt: set[str]) -> str:
    if "stats" in fmt:
        return (
            f"{'Prot LocalAddress:Port':<33} {'Conns':>8} {'InPkts':>8} {'OutPkts':>8} "
            f"{'InBytes':>8} {'OutBytes':>8}\n  -> RemoteAddress:Port\n"
        )
    if "rate" in fmt:
        return (
            f"{'Prot LocalAddress:Port':<33} {'CPS':>8} {'InPPS':>8} {'OutPPS':>8} "
            f"{'InBPS':>8} {'OutBPS':>8}\n  -> RemoteAddress:Port\n"
        )
    if "thresholds" in fmt:
        return (
            f"{'Prot LocalAddress:Port':<33} {'Uthreshold':<10} {'Lthreshold':<10} "
            f"{'ActiveConn':<10} {'InActConn':<10}\n  -> RemoteAddress:Port\n"
        )
    if "persistent-conn" in fmt:
        return (
            f"{'Prot LocalAddress:Port':<33} {'Weight':<9} {'PersistConn':<11} "
            f"{'ActiveConn':<10} {'InActConn':<10}\n  -> RemoteAddress:Port\n"
        )
    return (
        "Prot LocalAddress:Port Scheduler Flags\n"
        "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n"
    )


def _service_name(svc: VirtualService, rule: bool) -> str:
    if svc.fwmark:
        return f"-f {svc.fwmark}" if rule else f"FWM  {svc.fwmark}"
    vname = _addrport(svc.addr, svc.port)
    if rule:
        return f"{'-t' if svc.proto == Proto.TCP else '-u'} {vname}"
    return f"{PROTO_NAMES[svc.proto]:<4} {vname}"[:33]


def _service_entry(svc: VirtualService, fmt: set[str], rule: bool) -> list[str]:
    """print_service_entry(): the service line and one line per real server."""
    name = _service_name(svc, rule)
    exact = "exact" in fmt
    stats = svc.stats
    flag_names = describe_sched_flags(svc.sched_name, svc.sched_flags)
    if rule:
        line = f"-A {name} -s {svc.sched_name}"
        if svc.persistent:
            line += f" -p {svc.timeout_s}"
            if svc.netmask != HOST_NETMASK:
                line += f" -M {int_to_ip(svc.netmask)}"
        if flag_names:
            line += " -b " + ",".join(flag_names)
    elif "stats" in fmt:
        line = f"{name:<33}" + "".join(_largenum(v, exact) for v in stats.as_tuple())
    elif "rate" in fmt:
        line = f"{name:<33}" + "".join(_largenum(v, exact) for v in stats.rates())
    else:
        line = f"{name} {svc.sched_name}"
        if flag_names:
            line += f" ({','.join(flag_names)})"
        if svc.persistent:
            line += f" persistent {svc.timeout_s}"
            if svc.netmask != HOST_NETMASK:
                line += f" mask {int_to_ip(svc.netmask)}"
    lines = [line]
    dests = svc.dests if "nosort" in fmt else _qsort(svc.dests, _cmp_dests)
    for d in dests:
        dname = _addrport(d.addr, d.port)
        if rule:
            line = f"-a {name} -r {dname} {d.fwd.switch} -w {d.weight}"
            if d.fwd is Fwd.TUN:
                line += " --tun-type ipip"  # print_tunnel_rule()
            if d.u_threshold:
                line += f" -x {d.u_threshold}"
            if d.l_threshold:
                line += f" -y {d.l_threshold}"
        elif "stats" in fmt:
            line = f"  -> {dname[:28]:<28}" + "".join(
                _largenum(v, exact) for v in d.stats.as_tuple()
            )
        elif "rate" in fmt:
            s = d.stats
            line = (
                f"  -> {dname[:28]:<28} {s.cps:8d} {s.inpps:8d} {s.outpps:8d}"
                f"{_largenum(s.inbps, exact)}{_largenum(s.outbps, exact)}"
            )
        elif "thresholds" in fmt:
            line = (
                f"  -> {dname[:28]:<28} {d.u_threshold:<10} {d.l_threshold:<10} "
                f"{d.activeconns:<10} {d.inactconns:<10}"
            )
        elif "persistent-conn" in fmt:
            line = (
                f"  -> {dname[:28]:<28} {d.weight:<9} {d.persistconns:<11} "
                f"{d.activeconns:<10} {d.inactconns:<10}"
            )
        else:
            line = (
                f"  -> {dname[:28]:<28} {d.fwd.value:<7} {d.weight:<6} "
                f"{d.activeconns:<10} {d.inactconns:<10}"
            )
        lines.append(line)
    return lines


def _c_int(value: int) -> int:
    """``value`` as C's int gets it: the low 32 bits, two's complement."""
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


def _cmp_services(a: VirtualService, b: VirtualService) -> int:
    """libipvs's ipvs_cmp_services(): u32 fields (mark, address) are subtracted into an
    int, so two addresses 2^31 or more apart compare the wrong way round."""
    for x, y in ((a.fwmark, b.fwmark), (a.proto, b.proto), (a.addr, b.addr)):
        r = _c_int(x - y)
        if r:
            return r
    return a.port - b.port


def _cmp_dests(a: Any, b: Any) -> int:
    """libipvs's ipvs_cmp_dests(), with the same wrapping address difference."""
    return _c_int(a.addr - b.addr) or a.port - b.port


def _qsort(items: list, cmp: Callable[[Any, Any], int]) -> list:
    """glibc's qsort() as ipvsadm gets it on Debian 12 (2.36's msort_with_tmp: halves of
    n // 2 and the rest, the left entry taken while cmp <= 0). With libipvs's comparators,
    which are not transitive, the order depends on the algorithm, and ipvsadm -L shows it
    (0.1.2.3 after 192.168.0.11), so a stable sort by key would not match."""
    if len(items) <= 1:
        return list(items)
    half = len(items) // 2
    left, right = _qsort(items[:half], cmp), _qsort(items[half:], cmp)
    out, i, j = [], 0, 0
    while i < len(left) and j < len(right):
        if cmp(left[i], right[j]) <= 0:
            out.append(left[i])
            i += 1
        else:
            out.append(right[j])
            j += 1
    return out + left[i:] + right[j:]


def _sorted_services(state: Director, fmt: set[str]) -> list[VirtualService]:
    services = state.services()
    if "nosort" in fmt:
        return services
    return _qsort(services, _cmp_services)


def _list_all(state: Director, fmt: set[str], rule: bool = False) -> str:
    state.refresh_stats()
    out = [] if rule else [f"IP Virtual Server version {IPVS_VERSION} (size={state.conns.size})\n"]
    if not rule:
        out.append(_title(fmt))
    for svc in _sorted_services(state, fmt):
        out.extend(line + "\n" for line in _service_entry(svc, fmt, rule))
    return "".join(out)


def _list_service(state: Director, command: _Command) -> str:
    try:
        svc = state.service(command.key)
    except IpvsError as exc:
        raise _Exit(RC_NO_SERVICE, exc.message + "\n") from None
    state.refresh_stats()
    lines = _service_entry(svc, command.fmt, rule=False)
    return _title(command.fmt) + "".join(line + "\n" for line in lines)


def _list_connections(state: Director, fmt: set[str], now: float) -> str:
    out = ["IPVS connection entries\n"]
    if "persistent-conn" in fmt:
        out.append(
            f"pro expire {'state':<11} {'source':<18} {'virtual':<18} "
            f"{'destination':<18} {'pe name':<16} pe_data\n"
        )
    else:
        out.append(f"pro expire {'state':<11} {'source':<18} {'virtual':<18} destination\n")
    for conn in state.conns:
        left_s = max(int(conn.expires - now), 0)
        expire = f"{left_s // 60:02d}:{left_s % 60:02d}"
        out.append(
            f"{PROTO_NAMES.get(conn.proto, str(conn.proto)):<3} {expire:<6} "
            f"{conn.state_name:<11} {_addrport(conn.caddr, conn.cport):<18} "
            f"{_addrport(conn.vaddr, conn.vport):<18} {_addrport(conn.daddr, conn.dport)}\n"
        )
    return "".join(out)


# -- running ------------------------------------------------------------------------------------
def _execute(
    command: _Command, state: Director, now: float, stdin_text: str | None, in_restore: bool
) -> str:
    """Apply one checked command; return its standard output."""
    cmd = command.cmd
    if cmd == "list":
        opts = command.options
        if "connection" in opts:
            return _list_connections(state, command.fmt, now)
        if "service-address" in opts:
            return _list_service(state, command)
        if "timeout" in opts:
            tcp_s, tcpfin_s, udp_s = state.timeouts()
            return f"Timeout (tcp tcpfin udp): {tcp_s} {tcpfin_s} {udp_s}\n"
        if "daemon" in opts:
            return ""  # no sync daemon is run through ipvsadm here
        return _list_all(state, command.fmt)
    if cmd == "save":
        return _list_all(state, command.fmt, rule=True)
    if cmd == "restore":
        if in_restore:
            raise _tryhelp()
        return _restore(state, stdin_text or "", now)
    try:
        if cmd == "flush":
            state.clear()
        elif cmd == "add-service":
            state.add_service(command.service_spec())
        elif cmd == "edit-service":
            state.edit_service(command.service_spec())
        elif cmd == "delete-service":
            state.del_service(command.key)
        elif cmd == "zero":
            state.zero(command.key if "service-address" in command.options else None)
        elif cmd == "add-server":
            state.add_dest(command.key, command.dest_spec())
        elif cmd == "edit-server":
            state.edit_dest(command.key, command.dest_spec())
        elif cmd == "delete-server":
            state.del_dest(command.key, command.daddr, command.dport)
        elif cmd == "set":
            state.set_timeouts(*command.timeouts)
    except IpvsError as exc:
        raise _Exit(RC_REFUSED, exc.message + "\n") from None
    return ""


def _restore_lines(stdin_text: str) -> list[list[str]]:
    lines = []
    for text in stdin_text.splitlines():
        try:
            words = shlex.split(text, comments=True)
        except ValueError as exc:
            raise _fail(f"cannot parse restore line `{text}': {exc}") from None
        if words:
            lines.append(words)
    return lines


def _restore(state: Director, stdin_text: str, now: float) -> str:
    """ipvsadm -R: every line is tried on a copy first; nothing is applied unless all pass."""
    lines = _restore_lines(stdin_text)
    trial = state.config_copy()
    for words in lines:
        _execute(_parse(words), trial, now, None, in_restore=True)
    return "".join(_execute(_parse(words), state, now, None, in_restore=True) for words in lines)


def run(
    argv: list[str], state: Director, stdin_text: str | None = None, now: float | None = None
) -> Result:
    """Run one ipvsadm command line (without the program name) against `state`.

    `stdin_text` is what -R reads; `now` is the clock for -L -c (default: the latest time
    the Director was given).
    """
    when = state.clock_s if now is None else now
    try:
        if not argv:
            return Result(0, _list_all(state, set()), "")
        command = _parse(argv)
        return Result(0, _execute(command, state, when, stdin_text, in_restore=False), "")
    except _Exit as exc:
        return exc.result


def needs_director(argv: list[str]) -> bool:
    """False for what ipvsadm answers from its own text, without IPVS: ``-h``/``--help`` and
    ``-v``/``--version`` as the first option (so they work where no director runs)."""
    events, _ = _popt(argv)
    return not (events and events[0].tag in ("h", "v"))


def _usage() -> str:
    p = PROGRAM
    return f"""{VERSION_LINE}
Usage:
  {p} -A|E virtual-service [-s scheduler] [-p [timeout]] [-M netmask] [-b sched-flags]
  {p} -D virtual-service
  {p} -C
  {p} -R
  {p} -S [-n]
  {p} -a|e virtual-service -r server-address [options]
  {p} -d virtual-service -r server-address
  {p} -L|l [virtual-service] [options]
  {p} -Z [virtual-service]
  {p} --set tcp tcpfin udp
  {p} -h

Commands:
Either long or short options are allowed.
  --add-service     -A        add virtual service with options
  --edit-service    -E        edit virtual service with options
  --delete-service  -D        delete virtual service
  --clear           -C        clear the whole table
  --restore         -R        restore rules from stdin
  --save            -S        save rules to stdout
  --add-server      -a        add real server with options
  --edit-server     -e        edit real server with options
  --delete-server   -d        delete real server
  --list            -L|-l     list the table
  --zero            -Z        zero counters in a service or all services
  --set tcp tcpfin udp        set connection timeout values
  --help            -h        display this help message

virtual-service:
  --tcp-service|-t  service-address   service-address is host[:port]
  --udp-service|-u  service-address   service-address is host[:port]
  --fwmark-service|-f fwmark          fwmark is an integer greater than zero

Options:
  --scheduler    -s scheduler         one of {"|".join(SCHEDULERS)},
                                      the default scheduler is {DEFAULT_SCHEDULER}.
  --persistent   -p [timeout]         persistent service
  --netmask      -M netmask           persistent granularity mask
  --real-server  -r server-address    server-address is host (and port)
  --gatewaying   -g                   gatewaying (direct routing) (default)
  --ipip         -i                   ipip encapsulation (tunneling)
  --masquerading -m                   masquerading (NAT)
  --weight       -w weight            capacity of real server
  --u-threshold  -x uthreshold        upper threshold of connections
  --l-threshold  -y lthreshold        lower threshold of connections
  --connection   -c                   output of current IPVS connections
  --timeout                           output of timeout (tcp tcpfin udp)
  --daemon                            output of daemon information
  --stats                             output of statistics information
  --rate                              output of rate information
  --exact                             expand numbers (display exact values)
  --thresholds                        output of thresholds information
  --persistent-conn                   output of persistent connection info
  --nosort                            disable sorting output of service/server entries
  --sort                              does nothing, for backwards compatibility
  --numeric      -n                   numeric output of addresses and ports
  --sched-flags  -b flags             scheduler flags (comma-separated)

lvs-testbed:
  This ipvsadm drives the lab's userspace director, with ipvsadm's options and output.
  In a director's host it reaches that director; elsewhere name one first:
  lvs-testbed ipvsadm --director NAME ... (d1, d2, or of for the OpenFlow director).
  Addresses and ports are always printed numerically, as with -n. Host names are not
  resolved; port names such as http are. Not supported: IPv6 (-6), --sctp-service, --pe,
  --ops, tunnel types but ipip, --start-daemon and --stop-daemon (connection sync is
  started by the director daemon). -S also saves -x/-y when set. -R checks every line before it
  applies any; lines may carry # comments.
"""
