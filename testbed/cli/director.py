"""``lvs-testbed director run|stats`` and ``lvs-testbed ipvsadm ...``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from testbed.cli.common import fail
from testbed.director.defense import DEFAULT_CONN_MAX

director_app = typer.Typer(
    help="The userspace IPVS director: run it, read its counters.", no_args_is_help=True
)


@director_app.command("run")
def run(
    iface: list[str] = typer.Option(
        ..., "--iface", "-i", help="A NIC to forward on (repeat for two NICs)."
    ),
    name: str = typer.Option(
        "", "--name", help="Director name (default: the host part of the first NIC, e.g. d1)."
    ),
    io: str = typer.Option(
        "ring",
        "--io",
        help="ring: PACKET_MMAP rings, a batch per wake-up; frame: one system call per frame.",
    ),
    batch: int = typer.Option(64, "--batch", help="Frames handled per port per wake-up, at most."),
    wait_us: int = typer.Option(
        0,
        "--wait-us",
        help="After a wake-up, wait this long (us) for more frames "
        "unless a full batch is there: the interrupt-coalescing knob.",
    ),
    table_bits: int = typer.Option(
        12, "--table-bits", help="Connection table size: 2^bits buckets (8..20)."
    ),
    rules: Path = typer.Option(
        None,
        "--rules",
        exists=True,
        dir_okay=False,
        help="Rules to load at start, in `ipvsadm -S` format.",
    ),
    no_kernel_bypass: bool = typer.Option(
        False, "--no-kernel-bypass", help="Do not keep the local kernel off the services' traffic."
    ),
    sync_iface: str = typer.Option(
        None,
        "--sync-iface",
        metavar="IF",
        help="Sync connections with the peer director over this NIC "
        "(UDP multicast 224.0.0.81:8848, as IPVS): send updates for "
        "the connections forwarded here and apply the peer's, so a "
        "failover keeps them. Off by default.",
    ),
    sync_id: int = typer.Option(
        0,
        "--sync-id",
        metavar="N",
        help="Sync ID 0..255 put in our messages; with 0 every peer's "
        "messages are applied, otherwise only those with the same ID "
        "(needs --sync-iface).",
    ),
    sync_peer: str = typer.Option(
        None,
        "--sync-peer",
        metavar="ADDR",
        help="Apply sync messages only from this address (the peer director's on the sync "
        "NIC). IPVS sync is unauthenticated: without it anyone on the segment is believed.",
    ),
    conn_max: int = typer.Option(
        DEFAULT_CONN_MAX,
        "--conn-max",
        help="Connection table limit, entries: a new connection past it is refused (see "
        "docs/safety.md). About 0.6 KiB of memory each.",
    ),
    amemthresh: int = typer.Option(
        None,
        "--amemthresh",
        help="The defences' automatic modes switch on with fewer than this many entries "
        "of room left (IPVS's amemthresh, in entries; default conn-max/16).",
    ),
    drop_entry: int = typer.Option(
        1, "--drop-entry", help="IPVS drop_entry defence: 0 off, 1 automatic, 3 always."
    ),
    drop_packet: int = typer.Option(
        0, "--drop-packet", help="IPVS drop_packet defence: 0 off, 1 automatic, 3 always."
    ),
    secure_tcp: int = typer.Option(
        0, "--secure-tcp", help="IPVS secure_tcp defence: 0 off, 1 automatic, 3 always."
    ),
) -> None:
    """Run the director in this network namespace (inside a director host) until SIGTERM."""
    from testbed.director.daemon import DaemonConfig, run_daemon
    from testbed.director.ports import PortError

    try:
        cfg = DaemonConfig(
            interfaces=iface,
            name=name,
            io_mode=io,
            batch=batch,
            wait_us=wait_us,
            table_bits=table_bits,
            rules=rules.read_text() if rules else None,
            kernel_bypass=not no_kernel_bypass,
            sync_iface=sync_iface,
            sync_id=sync_id,
            sync_peer=sync_peer,
            conn_max=conn_max,
            defense={
                "drop_entry": drop_entry,
                "drop_packet": drop_packet,
                "secure_tcp": secure_tcp,
                **({"amemthresh": amemthresh} if amemthresh is not None else {}),
            },
        )
        if not 8 <= table_bits <= 20:
            raise ValueError(f"--table-bits must be 8..20, got {table_bits}")
        run_daemon(cfg)
    except (ValueError, PortError, RuntimeError) as exc:
        fail(str(exc))


@director_app.command("stats")
def stats(
    director: str = typer.Option(
        None, "--director", "-d", help="Director name (default: the one in this namespace)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the raw JSON."),
) -> None:
    """Frame counters (forwarded, ignored and dropped by reason), CPU and table figures."""
    from testbed.runtime.control import ControlError, find_director, request

    try:
        reply = request(find_director(director), {"op": "stats"})
    except ControlError as exc:
        fail(str(exc))
    data = reply["stats"]
    if as_json:
        print(json.dumps(data, indent=2, sort_keys=True))
        return
    frames = data["frames"]
    lines = [
        f"director {data['name']}: {data['io_mode']} I/O, batch {data['batch']}, wait "
        f"{data['wait_us']} us, "
        f"up {data['uptime_s']:.0f} s, CPU {data['cpu_s']:.2f} s",
        f"frames: rx {frames['rx']}, forwarded {frames['forwarded']}, queued for ARP "
        f"{frames['queued']}; "
        f"connections {data['connections']}",
    ]
    for label in ("ignored", "dropped"):
        if frames[label]:
            lines.append(
                f"{label}: " + ", ".join(f"{k} {v}" for k, v in sorted(frames[label].items()))
            )
    defense = data.get("defense")
    if defense:
        lines.append(defense_line(defense))
    if data.get("rss_kb"):
        lines.append(f"memory: {data['rss_kb'] / 1024:.1f} MiB resident")
    sync = data.get("sync")
    if sync:
        sent, got = sync["sent"], sync["received"]
        malformed = sum(got["malformed"].values())
        lines.append(
            f"sync (ID {sync['sync_id']}): sent {sent['messages_sent']} messages "
            f"({sent['conns_queued']} updates, {sent['send_errors']} send errors); received "
            f"{got['messages']} messages, applied {got['conns_applied']} updates, ignored "
            f"{got['ignored_sync_id']} of other sync IDs, malformed {malformed}"
        )
    print("\n".join(lines))


def defense_line(d: dict) -> str:
    """The table's fill, the defences' state and their drops, on one line."""

    def mode(name: str, active: bool) -> str:
        return f"{name} {d[name]} ({'on' if active else 'off'})"

    drops = ", ".join(f"{k} {v}" for k, v in sorted(d["drops"].items())) or "none"
    return (
        f"table: {d['entries']} of {d['conn_max']} entries (amemthresh {d['amemthresh']}); "
        f"defences: {mode('drop_entry', d['dropentry_active'])}, "
        f"{mode('drop_packet', d['drop_rate'] > 0)}"
        + (f" rate 1/{d['drop_rate']}" if d["drop_rate"] else "")
        + f", {mode('secure_tcp', d['secure_tcp_active'])}; drops: {drops}"
    )


@director_app.command("sysctl")
def sysctl(
    settings: list[str] = typer.Argument(
        None,
        metavar="[NAME=VALUE]...",
        help="Settings to change: conn_max, amemthresh, am_droprate, drop_entry, "
        "drop_packet, secure_tcp (with or without the net.ipv4.vs. prefix).",
    ),
    director: str = typer.Option(
        None, "--director", "-d", help="Director name (default: the one in this namespace)."
    ),
) -> None:
    """Show or set the connection table's limit and IPVS's defences, as `sysctl net.ipv4.vs`
    does for the kernel (all settings change, or none)."""
    from testbed.runtime.control import ControlError, find_director, request

    values: dict[str, int] = {}
    for item in settings or []:
        name, sep, value = item.partition("=")
        name = name.strip().removeprefix("net.ipv4.vs.")
        try:
            if not sep:
                raise ValueError
            values[name] = int(value)
        except ValueError:
            fail(f"settings are NAME=INTEGER (e.g. drop_entry=1), got {item!r}", 2)
    try:
        reply = request(find_director(director), {"op": "sysctl", "set": values})
    except ControlError as exc:
        fail(str(exc))
    sys.stdout.write(reply.get("out", ""))
    sys.stderr.write(reply.get("err", ""))
    raise typer.Exit(reply.get("rc", 1))


_HERE = 0  # _kernel_director: the kernel IPVS of our own namespace


def _kernel_director(name: str | None) -> int | None:
    """Where ipvsadm must go when the director is kernel IPVS (``up --director ipvs``): the
    shell pid of director host ``name`` in a live run, `_HERE` when we run inside a director
    host of such a run (no name given), None when no kernel IPVS director fits."""
    import json
    import os

    from testbed.net.hosts import RunHosts
    from testbed.runtime.registry import list_runs, owner_alive

    def is_ipvs_run(run_dir: Path) -> bool:
        try:
            layout = json.loads((run_dir / "layout.json").read_text())
        except (OSError, ValueError):
            return False
        return layout.get("params", {}).get("director") == "ipvs"

    if name is None:
        env_run = os.environ.get("LVS_TESTBED_RUN_DIR")
        return _HERE if env_run and is_ipvs_run(Path(env_run)) else None
    for run_dir in list_runs():
        if owner_alive(run_dir) is None or not is_ipvs_run(run_dir):
            continue
        hosts = RunHosts(run_dir)
        directors = {d.name for d in hosts.plan().directors}
        if name in directors and name in hosts.shells:
            return hosts.shells[name]
    return None


def ipvsadm(ctx: typer.Context) -> None:
    """ipvsadm for the testbed's director: the same options and output as ipvsadm.

    Run it on a director host (`d1 ipvsadm -L -n` in the CLI; hosts also have a plain `ipvsadm`
    command); elsewhere name the director first: `lvs-testbed ipvsadm --director d1 -L -n`.
    With `up --director ipvs` it is the real ipvsadm on that director's kernel IPVS.
    """
    from testbed.director import ipvsadm as ipvsadm_cli
    from testbed.director.model import Director
    from testbed.runtime.control import ControlError, find_director, request

    argv = list(ctx.args)
    name = None
    if len(argv) >= 2 and argv[0] == "--director":  # not -d: that is ipvsadm's delete-server
        name, argv = argv[1], argv[2:]
    if not ipvsadm_cli.needs_director(argv):  # -h, --help, -v, --version: its own text
        result = ipvsadm_cli.run(argv, Director())
        sys.stdout.write(result.out)
        raise typer.Exit(result.rc)
    stdin_text = None
    if argv and argv[0] in ("-R", "--restore"):
        stdin_text = sys.stdin.read()
    kernel = _kernel_director(name)
    if kernel is not None:
        from testbed.runtime.ipvs import run_ipvsadm

        res = run_ipvsadm(argv, stdin_text, netns_pid=None if kernel == _HERE else kernel)
        sys.stdout.write(res.out)
        sys.stderr.write(res.err)
        raise typer.Exit(res.rc)
    try:
        reply = request(find_director(name), {"op": "ipvsadm", "argv": argv, "stdin": stdin_text})
    except ControlError as exc:
        fail(str(exc))
    sys.stdout.write(reply.get("out", ""))
    sys.stderr.write(reply.get("err", ""))
    raise typer.Exit(reply.get("rc", 1))


def register(app: typer.Typer) -> None:
    app.add_typer(director_app, name="director")
    app.command(
        "ipvsadm",
        context_settings={
            "allow_extra_args": True,
            "ignore_unknown_options": True,
            "help_option_names": [],
        },
        add_help_option=False,
    )(ipvsadm)
