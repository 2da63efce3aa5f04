"""``lvs-testbed vrrp run|status|show-config|check-config``: keepalived-style failover.

Thin: the daemon is ``testbed.vrrp.daemon``, the NAT pair's configuration
``testbed.net.daemon_configs``, the parser ``testbed.keepalived_conf``. Domain errors become a
message and a non-zero exit.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from testbed.cli.common import fail

vrrp_app = typer.Typer(
    help="keepalived-style failover for the NAT director pair: run the VRRP daemon, read its "
    "state, print or check a keepalived.conf.",
    no_args_is_help=True,
)


@vrrp_app.command("run")
def run(
    config: Path = typer.Option(
        ..., "--config", "-f", exists=True, dir_okay=False, help="The keepalived.conf to run."
    ),
    name: str = typer.Option(
        None, "--name", help="Daemon name (default: router_id, else the interface's host part)."
    ),
    director: str = typer.Option(
        None,
        "--director",
        help="Director that gets the virtual_server blocks (default: the one in this namespace).",
    ),
    vrrp_only: bool = typer.Option(
        False, "--vrrp-only", help="Run VRRP only, no health checker (keepalived --vrrp)."
    ),
    check_only: bool = typer.Option(
        False, "--check-only", help="Run the health checker only (keepalived --check)."
    ),
    dont_release_ipvs: bool = typer.Option(
        False,
        "--dont-release-ipvs",
        help="Leave the virtual services on the director at exit (keepalived -I).",
    ),
    config_id: str = typer.Option(
        None, "--config-id", "-i", help="keepalived's -i: which @ID lines of the file apply."
    ),
    map_iface: list[str] = typer.Option(
        None,
        "--map-iface",
        metavar="NAME=IFACE",
        help="Run the file's interface NAME on IFACE (e.g. eth0=d1-eth0); repeatable.",
    ),
    kernel_ipvs: bool = typer.Option(
        False,
        "--kernel-ipvs",
        help="Drive the kernel's IPVS in this namespace with the real ipvsadm, as keepalived "
        "does, instead of the testbed's director (needs a kernel with ip_vs).",
    ),
) -> None:
    """Run the VRRP daemon in this network namespace (on a director host) until SIGTERM."""
    from testbed.check.checker import CheckerSetupError
    from testbed.keepalived_conf.ifmap import parse_mapping
    from testbed.keepalived_conf.model import ConfigError
    from testbed.vrrp.daemon import DaemonError, run_daemon

    if vrrp_only and check_only:
        fail("--vrrp-only and --check-only exclude each other", 2)
    if kernel_ipvs and director is not None:
        fail("--kernel-ipvs drives this namespace's kernel IPVS; it takes no --director", 2)
    try:
        mapping = parse_mapping(map_iface or [])
    except ValueError as exc:
        fail(str(exc), 2)
    try:
        code = run_daemon(
            str(config),
            name=name,
            director=director,
            vrrp=not check_only,
            check=not vrrp_only,
            release_ipvs=not dont_release_ipvs,
            config_id=config_id,
            iface_map=mapping,
            kernel_ipvs=kernel_ipvs,
        )
    except ConfigError as exc:
        fail(str(exc), 2)
    except (DaemonError, CheckerSetupError) as exc:
        fail(str(exc))
    except PermissionError as exc:
        fail(f"{exc}: the VRRP daemon needs root (raw sockets, ip addr)")
    raise typer.Exit(code)


@vrrp_app.command("status")
def status(
    name: str = typer.Option(
        None, "--name", help="Daemon name (default: the one in this namespace)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the raw JSON."),
) -> None:
    """Each instance's state, priorities, master, advert counters and last transition."""
    from testbed.runtime.control import ControlError, find_daemon, request
    from testbed.vrrp.daemon import CONTROL

    try:
        reply = request(find_daemon(CONTROL, name), {"op": "status"}, what=CONTROL.what)
    except ControlError as exc:
        fail(str(exc))
    data = reply["status"]
    if as_json:
        print(json.dumps(data, indent=2, sort_keys=True))
        return
    print(format_status(data))


def format_status(data: dict) -> str:
    """The status table (pure, for tests)."""
    columns = ("INSTANCE", "STATE", "PRIO", "EFF", "MASTER", "ADV-IN", "ADV-OUT", "LAST TRANSITION")
    rows = []
    for inst in data["instances"]:
        last = inst["transitions"][-1] if inst["transitions"] else None
        when = "-"
        if last is not None:
            ago_s = data["wall_s"] - last["wall_s"]
            when = f"{last['previous']}->{last['state']} {ago_s:.1f} s ago"
        rows.append(
            (
                inst["name"],
                inst["state"],
                str(inst["priority"]),
                str(inst["effective_priority"]),
                inst["master"] or "-",
                str(inst["adverts_received"]),
                str(inst["adverts_sent"]),
                when,
            )
        )
    widths = [max(len(r[i]) for r in (columns, *rows)) for i in range(len(columns) - 1)]
    lines = [f"VRRP daemon {data['name']} (pid {data['pid']})"]
    for row in (columns, *rows):
        cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    for group in data["groups"]:
        lines.append(
            f"sync group {group['name']}: {group['state']} ({', '.join(group['members'])})"
        )
    for inst in data["instances"]:
        drops = {k: v for k, v in inst["drops"].items() if v}
        if drops:
            text = ", ".join(f"{k} {v}" for k, v in sorted(drops.items()))
            lines.append(f"{inst['name']} drops: {text}")
    for vs in data["virtual_servers"]:
        alive = sum(rs["alive"] for rs in vs["real_servers"])
        line = (
            f"virtual server {vs['service']}: {alive}/{len(vs['real_servers'])} real servers alive"
        )
        quorum = vs.get("quorum")
        if quorum and not quorum["up"]:
            line += f", quorum lost ({quorum['alive_weight']} < {quorum['quorum']})"
        sorry = vs.get("sorry_server")
        if sorry and sorry["active"]:
            line += f", sorry server {sorry['address']} in"
        lines.append(line)
    return "\n".join(lines)


@vrrp_app.command("show-config")
def show_config(
    layout: str = typer.Argument(..., help="nat or nat1."),
    director: str = typer.Option("d1", "--director", help="d1 (MASTER) or d2 (BACKUP)."),
    advert_int: float = typer.Option(
        1.0, "--advert-int", help="Advertisement interval in seconds (whole seconds for v2)."
    ),
    version: int = typer.Option(2, "--version", help="VRRP version, 2 or 3."),
    rs: int = typer.Option(3, "--rs", help="Number of real servers in the layout."),
) -> None:
    """Print the keepalived.conf the NAT layouts give a director."""
    from testbed.keepalived_conf import render_config
    from testbed.net.daemon_configs import GenerateError, nat_pair_config
    from testbed.topo.plan import LayoutParams, PlanError, make_plan

    try:
        plan = make_plan(layout, LayoutParams(n_rs=rs))
        config = nat_pair_config(plan, director, advert_int_s=advert_int, version=version)
    except (PlanError, GenerateError) as exc:
        raise typer.BadParameter(str(exc)) from exc
    print(render_config(config), end="")


@vrrp_app.command("check-config")
def check_config(
    file_arg: Path = typer.Argument(
        None, dir_okay=False, metavar="FILE", help="The keepalived.conf (same as -f)."
    ),
    file: Path = typer.Option(
        None, "--config", "-f", dir_okay=False, help="The keepalived.conf to check."
    ),
    config_id: str = typer.Option(
        None, "--config-id", "-i", help="keepalived's -i: which @ID lines apply."
    ),
    keepalived: bool = typer.Option(
        True,
        "--keepalived/--no-keepalived",
        help="Also run `keepalived -t` (when installed) and report where the two disagree.",
    ),
) -> None:
    """Check a keepalived.conf as `lvs-testbed vrrp run` reads it: warnings and errors with
    line numbers, what scripts would do on this machine; exit 2 on errors. Like
    `keepalived -t -f FILE`, which it also runs when keepalived is installed."""
    from testbed.check.checker import CheckerSetupError
    from testbed.keepalived_conf import load_config
    from testbed.keepalived_conf.model import ConfigError
    from testbed.vrrp.daemon import DaemonError, check_runnable, print_warnings, script_warnings

    if (file is None) == (file_arg is None):
        fail("give the keepalived.conf once: `check-config -f FILE` (or `check-config FILE`)", 2)
    path = file or file_arg
    error: str | None = None
    lines: set[int] = set()
    summary = ""
    try:
        config, warnings = load_config(path, config_id=config_id)
        lines = {w.line for w in warnings if w.file == str(path)}
        n_warnings = print_warnings(str(path), warnings, config)
        for note in script_warnings(config):
            print(f"{path}: warning: {note}", file=sys.stderr)
            n_warnings += 1
        check_runnable(config)
        counts = (
            (len(config.instances), "vrrp_instance"),
            (len(config.sync_groups), "vrrp_sync_group"),
            (len(config.scripts), "vrrp_script"),
            (len(config.virtual_servers), "virtual_server"),
        )
        summary = ", ".join(f"{n} {what}" for n, what in counts)
        summary = f"{path}: OK ({summary}; {n_warnings} warning(s))"
    except OSError as exc:
        fail(f"{path}: {exc.strerror or exc}", 2)
    except ConfigError as exc:
        error = str(exc)
        if exc.file == str(path):
            lines.add(exc.line)
    except (DaemonError, CheckerSetupError) as exc:
        error = str(exc)
    if keepalived:
        _compare_with_keepalived(str(path), config_id, error, lines)
    if error is not None:
        fail(error, 2)
    print(summary)


def _compare_with_keepalived(
    path: str, config_id: str | None, error: str | None, lines: set[int]
) -> None:
    from testbed.vrrp.kacompare import compare, run_keepalived_test

    verdict = run_keepalived_test(path, config_id)
    if verdict is None:
        return  # keepalived is not installed: nothing to compare with
    for line in compare(error, lines, verdict):
        print(line, file=sys.stderr)


def register(app: typer.Typer) -> None:
    app.add_typer(vrrp_app, name="vrrp")
