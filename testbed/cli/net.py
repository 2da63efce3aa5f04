"""``lvs-testbed up`` (build a layout and open its CLI) and ``lvs-testbed clean``."""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from testbed.cli.common import (
    CAPTURE_DIR_OPTION,
    CAPTURE_OPTION,
    SCRIPT_OPTION,
    VERBOSE_OPTION,
    console,
    err_console,
    fail,
    report_captures,
    require_root,
)
from testbed.topo.plan import LAYOUTS, LayoutParams, PlanError

if TYPE_CHECKING:
    from testbed.net.network import Testbed


def _choice_enum(name: str, choices: tuple[str, ...]) -> type[Enum]:
    """An Enum typer shows and checks as a list of choices."""
    return Enum(name, {c: c for c in choices}, type=str)


Layout = _choice_enum("Layout", LAYOUTS)


def _annotation(f: dataclasses.Field) -> object:
    """The Python type typer parses a `LayoutParams` field's option as."""
    if f.metadata.get("choices"):
        return _choice_enum(f.name, f.metadata["choices"])
    base = {"int": int, "float": float, "bool": bool, "str": str}[str(f.type).split(" |")[0]]
    return base | None if "None" in str(f.type) else base


def layout_parameters() -> list[inspect.Parameter]:
    """One typer option per `LayoutParams` field, from the field's `knob` metadata: the plan
    is the one place a layout setting, its default and its help are declared."""
    out = []
    for f in LayoutParams.knobs():
        flag = f.metadata.get("flag") or "--" + f.name.replace("_", "-")
        decls = [f"{flag}/--no-{flag[2:]}" if f.type == "bool" else flag]
        if f.metadata.get("short"):
            decls.append(f.metadata["short"])
        option = typer.Option(
            f.default, *decls, help=f.metadata["help"], show_default=f.default is not None
        )
        out.append(
            inspect.Parameter(
                f.name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=_annotation(f)
            )
        )
    return out


def params_from_options(values: dict) -> LayoutParams:
    """`LayoutParams` from the generated options' values (choices arrive as Enum members)."""
    names = {f.name for f in LayoutParams.knobs()}
    return LayoutParams(
        **{k: v.value if isinstance(v, Enum) else v for k, v in values.items() if k in names}
    )


def up(
    layout: Layout = typer.Argument(
        ...,
        help="dr (seed layout 1), nat (seed layout 2: master/backup, "
        "two NICs each) or nat1 (NAT with one NIC per director).",
    ),
    config: list[str] = typer.Option(
        None,
        "--config",
        metavar="DIRECTOR=FILE",
        help="Use this keepalived.conf for a director (e.g. d1=my.conf); "
        "the others get generated ones. See docs/keepalived.md.",
    ),
    map_iface: list[str] = typer.Option(
        None,
        "--map-iface",
        metavar="NAME=IFACE",
        help="Run --config files' interface NAME on IFACE: a director's interface "
        "(eth0=d1-eth0) or outer/inner (each director's NIC on that segment).",
    ),
    config_id: list[str] = typer.Option(
        None,
        "--config-id",
        metavar="DIRECTOR=ID",
        help="keepalived's -i for a director's --config file: which @ID lines apply "
        "(default: the director's name, e.g. @d1).",
    ),
    show_config: bool = typer.Option(
        False, "--show-config", help="Print the keepalived.conf each director would run, and exit."
    ),
    no_cli: bool = typer.Option(
        False,
        "--no-cli",
        help="Run the self-check (reachability as the layout intends) and exit: 0 if it holds.",
    ),
    script: Path = SCRIPT_OPTION,
    verbose: bool = VERBOSE_OPTION,
    capture: bool = CAPTURE_OPTION,
    capture_dir: Path = CAPTURE_DIR_OPTION,
    **knobs: object,
) -> None:
    """Build a layout and open its CLI (Mininet's, plus `check` and `plan`).

    Names and addresses follow the plan in docs/layouts.md. Everything it made is removed on
    exit, on Ctrl-C and on errors; `lvs-testbed clean` removes what a killed run left. One run
    at a time per machine (a second is refused, naming the first). The daemons' logs are kept
    under /var/log/lvs-testbed/<run-id>/, named on exit.
    """
    try:
        params = params_from_options(knobs)
    except PlanError as exc:
        fail(str(exc), 2)
    configs = _parse_configs(config or [], map_iface or [], config_id or [], layout.value, params)
    if show_config:
        _show_configs(layout.value, params, configs)
        return
    require_root(f"`up {layout.value}`")
    run_layout(
        layout.value,
        params,
        no_cli,
        script,
        verbose,
        configs,
        capture_root=capture_dir if capture else None,
    )


def _with_layout_options(command):
    """``command`` with its signature extended by `layout_parameters` in place of ``**knobs``
    (typer reads options from the signature and passes them all as keywords)."""
    hints = typing.get_type_hints(command)
    fixed = [
        p.replace(kind=inspect.Parameter.KEYWORD_ONLY, annotation=hints[p.name])
        for p in inspect.signature(command).parameters.values()
        if p.kind != inspect.Parameter.VAR_KEYWORD
    ]
    command.__signature__ = inspect.Signature([*fixed[:1], *layout_parameters(), *fixed[1:]])
    return command


_with_layout_options(up)


def _parse_configs(items: list[str], maps: list[str], ids: list[str], layout: str, params) -> dict:
    """``d1=FILE`` pairs with their interface maps and config ids, checked before anything
    is built: a known director, a readable keepalived.conf that parses, every interface it
    names present on that director."""
    from testbed.keepalived_conf.model import ConfigError
    from testbed.net.daemon_configs import UserConfig
    from testbed.topo.plan import make_plan

    plan = make_plan(layout, params)
    directors = {d.name: d for d in plan.directors}
    if (maps or ids) and not items:
        fail("--map-iface and --config-id are for --config files; give --config DIRECTOR=FILE", 2)
    paths = _director_values(items, "--config", "FILE", directors)
    if paths and not plan.has_pair:
        fail(
            f"--config is for NAT layouts with failover on (--ha vrrp or keepalived), not {layout}",
            2,
        )
    config_ids = _director_values(ids, "--config-id", "ID", directors)
    try:
        iface_maps = _interface_maps(maps, directors)
    except ValueError as exc:
        fail(str(exc), 2)
    if iface_maps and params.ha == "keepalived":
        fail(
            "keepalived reads the file as it is: with --ha keepalived rename its interfaces in "
            "the file instead of --map-iface",
            2,
        )
    configs = {}
    for name, path in paths.items():
        user = UserConfig(str(Path(path).resolve()), config_ids.get(name), iface_maps.get(name, {}))
        try:
            effective = user.effective(name)
        except (OSError, ConfigError) as exc:
            fail(f"{path}: {getattr(exc, 'strerror', None) or exc}", 2)
        _check_interfaces(name, path, effective, directors[name])
        configs[name] = user
    return configs


def _director_values(items: list[str], option: str, what: str, directors: dict) -> dict[str, str]:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not value or name not in directors:
            fail(
                f"{option} takes DIRECTOR={what} with DIRECTOR one of "
                f"{', '.join(sorted(directors))}; got {item!r}",
                2,
            )
        out[name] = value
    return out


def _interface_maps(items: list[str], directors: dict) -> dict[str, dict[str, str]]:
    """``NAME=IFACE`` items per director: IFACE a director's interface, or outer/inner."""
    from testbed.keepalived_conf.ifmap import parse_mapping

    maps: dict[str, dict[str, str]] = {}
    owners = {i.name: d for d, node in directors.items() for i in node.intfs}
    for item in items:
        old, sep, target = item.partition("=")
        if not sep or not old or not target:
            raise ValueError(f"--map-iface takes NAME=IFACE, got {item!r}")
        if target in ("outer", "inner"):
            for d, node in directors.items():
                nic = node.intfs[0] if target == "outer" else node.intfs[-1]
                maps.setdefault(d, {}).update(parse_mapping([f"{old}={nic.name}"]))
        elif target in owners:
            maps.setdefault(owners[target], {}).update(parse_mapping([item]))
        else:
            known = ", ".join(sorted(owners))
            raise ValueError(
                f"--map-iface {item!r}: {target!r} is neither outer, inner nor a director's "
                f"interface ({known})"
            )
    return maps


def _check_interfaces(name: str, path: str, config, node) -> None:
    from testbed.keepalived_conf.ifmap import interfaces_of

    present = {i.name for i in node.intfs}
    missing = sorted(interfaces_of(config) - present)
    if missing:
        nics = ", ".join(f"{i.name} ({i.segment}, {', '.join(i.addrs)})" for i in node.intfs)
        example = missing[0]
        fail(
            f"{path} names interface(s) {', '.join(missing)}, which {name} does not have "
            f"(its interfaces: {nics}); map them, e.g. --map-iface {example}={node.intfs[0].name} "
            f"or --map-iface {example}=outer",
            2,
        )


def _show_configs(layout: str, params, configs: dict) -> None:
    from testbed.keepalived_conf import render_config
    from testbed.net.network import generated_keepalived_conf
    from testbed.topo.plan import make_plan

    plan = make_plan(layout, params)
    if not plan.has_pair:
        fail(f"layout {layout} has no failover pair (NAT layouts with --ha vrrp or keepalived)", 2)
    for d in plan.directors:
        user = configs.get(d.name)
        if user is None:
            print(f"# ---- {d.name}: keepalived.conf (generated) ----")
            print(generated_keepalived_conf(plan, d.name))
            continue
        mapped = ", ".join(f"{a}->{b}" for a, b in sorted(user.iface_map.items())) or "none"
        print(
            f"# ---- {d.name}: {user.path} as it runs (config id {user.config_id or d.name}; "
            f"interfaces mapped: {mapped}) ----"
        )
        print(render_config(user.effective(d.name)))


UP_CLI_HELP = (
    "Type `help` for commands, `check` to test reachability, `state` for what the hosts hold "
    "now, `exit` to stop."
)


def run_layout(
    layout: str,
    params,
    no_cli: bool,
    script: Path | None,
    verbose: bool,
    configs: dict[str, str] | None = None,
    *,
    kind: str | None = None,
    on_ready: Callable[[Testbed], None] | None = None,
    open_cli: Callable[..., object] | None = None,
    cli_help: str = UP_CLI_HELP,
    capture_root: Path | None = None,
) -> None:
    """Build the layout, then self-check and exit (``no_cli``) or open its CLI (saying
    ``cli_help`` first); always tear it down. Shared with `lvs-testbed lab start`: ``kind``
    names the run, ``on_ready`` runs once
    the layout answers (a lab's starting state), ``open_cli(testbed, script=...)`` opens the
    CLI (default: the layout's `LvsCLI`; a lab's adds its check). With ``capture_root``
    every link is captured into ``<capture_root>/<run-id>/`` (`testbed.net.capture`)."""
    from testbed.net.capture import CaptureError
    from testbed.net.network import Terminated, Testbed, handle_termination
    from testbed.net.nodes import NodeConfigError
    from testbed.net.report import plan_table, reach_table
    from testbed.net.shaping import ShapingError
    from testbed.runtime.cgroup import CpuQuotaError, MemoryLimitError

    handle_termination()
    testbed = Testbed(
        layout,
        params,
        kind=kind or f"up-{layout}",
        quiet=not verbose,
        configs=configs,
        capture_root=capture_root,
    )
    ok = True
    try:
        testbed.start()
        ready = testbed.wait_ready()
        if on_ready is not None:
            on_ready(testbed)
        if no_cli:
            console.print(plan_table(testbed.plan))
            results = testbed.check_reachability()
            console.print(reach_table(results))
            ok = all(r.ok for r in results)
        else:
            if open_cli is None:
                from testbed.net.console import LvsCLI as open_cli
            console.print(plan_table(testbed.plan))
            if not ready:
                err_console.print(
                    "[yellow]warning:[/] reachability differs from the plan: type `check`"
                )
            console.print(cli_help, highlight=False)
            open_cli(testbed, script=str(script) if script else None)
    except (
        ShapingError,
        CpuQuotaError,
        MemoryLimitError,
        NodeConfigError,
        CaptureError,
        PermissionError,
        RuntimeError,
    ) as exc:
        ok = False
        err_console.print(f"[bold red]error:[/] {exc}")
    except Terminated:
        ok = False
        err_console.print("terminated: tearing the layout down")
    finally:
        report = testbed.stop()
        if report is not None and report.errors:
            err_console.print("[yellow]cleanup left:[/] " + "; ".join(report.errors))
        if testbed.logs_dir is not None:
            err_console.print(f"daemon logs kept in {testbed.logs_dir}", highlight=False)
        report_captures(testbed.capture_dir, testbed.capture_files)
    if not ok:
        raise typer.Exit(1)


def clean(
    force: bool = typer.Option(False, "--force", help="Also stop runs whose owner is still alive."),
) -> None:
    """Remove what testbed runs created and recorded, and nothing else; keep their logs.

    Stops recorded processes (by pid and start time, never by name), the processes in each
    host's namespace (held by the run, so provably its own) and in its cgroups; removes
    bridges and root-namespace interfaces tagged with the run's id, namespaces, cgroups and
    the run's state under /run. Daemon logs stay where the run kept them. Runs whose owner
    is alive (the holder of the run lock) are left alone unless --force. See docs/safety.md.
    """
    import os
    import signal
    import time

    from testbed.runtime.registry import clean_run, list_runs, owner_alive, run_root
    from testbed.runtime.runlock import held_or_holder

    require_root("`clean`")
    failed = False
    # Holding the run lock (when no run holds it) keeps a new run from starting meanwhile.
    with held_or_holder() as holder:
        runs = list_runs()
        if not runs:
            console.print(f"nothing to clean (no runs recorded under {run_root()})")
            return
        if holder is not None:
            console.print(f"a run is in progress: {holder.describe()}", highlight=False)
        for run_dir in runs:
            owner = owner_alive(run_dir)
            if owner is not None:
                if not force:
                    console.print(
                        f"{run_dir.name}: still running (pid {owner}); stop it or use --force",
                        highlight=False,
                    )
                    continue
                os.kill(owner, signal.SIGTERM)  # its finally blocks tear down what it can
                deadline = time.monotonic() + 10
                while owner_alive(run_dir) and time.monotonic() < deadline:
                    time.sleep(0.1)
            report = clean_run(run_dir)
            what = report.removed + [f"process {p}" for p in report.killed]
            console.print(
                f"{run_dir.name}: removed {len(what)} item(s)"
                + (f": {', '.join(what)}" if what else "")
                + (f"; its logs are kept in {report.logs}" if report.logs else ""),
                highlight=False,
            )
            for item in report.skipped:
                console.print(f"{run_dir.name}: left alone {item}", highlight=False)
            for err in report.errors:
                failed = True
                err_console.print(f"[bold red]{run_dir.name}: could not remove[/] {err}")
    if failed:
        raise typer.Exit(1)


def failover(
    how: str = typer.Option(
        "kill",
        "--how",
        help="kill (crash the master's daemons), link (its NICs "
        "down) or shutdown (stop its VRRP daemon cleanly).",
    ),
    probe_pps: float = typer.Option(
        200.0, "--probe-pps", help="UDP probe rate through the VIP during it."
    ),
    run: str = typer.Option(None, "--run", help="Run id (default: the newest running layout)."),
) -> None:
    """Fail the master director of a running NAT layout (started with `up nat` elsewhere) and
    report the takeover time, the RFC bound and the probe's outage and loss."""
    from testbed.net.failover import HOWS, measure, record
    from testbed.net.hosts import HostsError, RunHosts

    require_root("`failover`")
    if how not in HOWS:
        fail(f"--how must be one of {', '.join(HOWS)}", 2)
    try:
        hosts = RunHosts.live(run)
        plan = hosts.plan()
    except HostsError as exc:
        fail(str(exc))
    if not plan.has_pair:
        fail(f"run {hosts.run_dir.name} is not a NAT layout with a director pair")
    master = next(
        (
            d.name
            for d in plan.directors
            if f"{plan.vip}/" in hosts.cmd(d.name, "ip -4 -o addr show")
        ),
        "d1",
    )
    backup = "d2" if master == "d1" else "d1"
    result = measure(
        hosts,
        plan,
        how,
        master,
        backup,
        probe_pps=probe_pps,
        progress=lambda text: console.print(text, highlight=False),
    )
    record(hosts.run_dir, result)  # a lab's hand-in and its CLI's `restore` find it there
    console.print(result.text(), highlight=False)


def register(app: typer.Typer) -> None:
    app.command()(up)
    app.command()(clean)
    app.command()(failover)
