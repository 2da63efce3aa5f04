"""``lvs-testbed controller run APP``: an os-ken OpenFlow controller for OVS layouts."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from testbed.cli.common import fail

if TYPE_CHECKING:
    from testbed.controllers.lb import LbConfig

controller_app = typer.Typer(
    help="os-ken OpenFlow 1.3 controllers for layouts on Open vSwitch (--switch ovs).",
    no_args_is_help=True,
)


@controller_app.command("run")
def run(
    app: str = typer.Argument(
        ...,
        metavar="APP",
        help="l2_learning (a learning switch), lb (the OpenFlow director), or the path of an "
        "os-ken app file: controllers/l2_learning.py, controllers/lb.py or your copy.",
    ),
    port: int = typer.Option(6653, "--port", help="TCP port to listen on for switches."),
    listen: str = typer.Option(
        "127.0.0.1", "--listen", metavar="ADDR", help="Address to listen on for switches."
    ),
    rules: Path = typer.Option(
        None,
        "--rules",
        exists=True,
        dir_okay=False,
        help="lb: the services, in `ipvsadm -S` format (default: the "
        "--mode layout's tcp 80 and udp 7 over its real servers).",
    ),
    keepalived_conf: Path = typer.Option(
        None,
        "--keepalived-conf",
        exists=True,
        dir_okay=False,
        help="lb: take the services from the virtual_server blocks of a keepalived.conf instead.",
    ),
    mode: str = typer.Option(
        None,
        "--mode",
        help="lb: the layout, dr or nat (default dr, or what an app file's default_config "
        "says). nat also answers for the real servers' gateway 192.168.0.254.",
    ),
    n_rs: int = typer.Option(
        None, "--rs", help="lb: real servers of the --mode layout's default services (default 3)."
    ),
    vip_mac: str = typer.Option(
        None,
        "--vip-mac",
        metavar="MAC",
        help="lb: the virtual MAC that answers for the VIPs (default 02:00:00:00:00:64).",
    ),
    gateway_ip: list[str] = typer.Option(
        None,
        "--gateway-ip",
        metavar="ADDR",
        help="lb: another address to answer ARP and ping for (repeat; replaces --mode's).",
    ),
    stats_interval_s: float = typer.Option(
        None, "--stats-interval-s", help="lb: seconds between flow counter polls (>= 1; 2)."
    ),
    no_control: bool = typer.Option(
        False,
        "--no-control",
        help="lb: no control socket (`lvs-testbed ipvsadm --director of` will not reach it).",
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log os-ken's debug messages."),
) -> None:
    """Run an os-ken app until SIGTERM or Ctrl-C, as ryu-manager runs an app file. With an
    OpenFlow director (`lb`, controllers/lb.py or a copy), `lvs-testbed ipvsadm --director
    of ...` and `lvs-testbed director stats --director of` reach it."""
    from testbed.controllers.runner import (
        ControllerError,
        app_class,
        control_dir,
        is_openflow_director,
        resolve_app,
        run_app,
    )

    given = {
        "--rules": rules,
        "--keepalived-conf": keepalived_conf,
        "--mode": mode,
        "--rs": n_rs,
        "--vip-mac": vip_mac,
        "--gateway-ip": gateway_ip,
        "--stats-interval-s": stats_interval_s,
        "--no-control": no_control,
    }
    try:
        cls = app_class(resolve_app(app))
        director = is_openflow_director(cls)
        if not director and any(v is not None and v is not False for v in given.values()):
            used = ", ".join(name for name, v in given.items() if v is not None and v is not False)
            raise ValueError(f"{used}: only for the lb app (an OpenFlow director), not for {app}")
        if rules and keepalived_conf:
            raise ValueError("give --rules or --keepalived-conf, not both")
        with contextlib.ExitStack() as stack:
            lb_config = None
            if director:
                run_dir = None if no_control else stack.enter_context(control_dir())
                lb_config = _lb_config(
                    cls.default_config(),
                    rules,
                    keepalived_conf,
                    mode,
                    n_rs,
                    vip_mac,
                    gateway_ip,
                    stats_interval_s,
                    run_dir,
                )
            run_app(app, listen=listen, port=port, lb_config=lb_config, verbose=verbose)
    except (ControllerError, ValueError, OSError) as exc:
        fail(str(exc))
    # os-ken's switch connections live in threads that cannot be stopped: leave now.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _lb_config(
    base: LbConfig | None,
    rules: Path | None,
    keepalived_conf: Path | None,
    mode: str | None,
    n_rs: int | None,
    vip_mac: str | None,
    gateway_ip: list[str] | None,
    stats_interval_s: float | None,
    run_dir: Path | None,
):
    """What the OpenFlow director serves: the --mode layout's defaults, or ``base`` (an app
    file's ``default_config()``) when it has one and no --mode/--rs was given; either
    overridden by what was given."""
    import dataclasses

    from testbed.controllers.lb import rules_from_keepalived
    from testbed.net.daemon_configs import lb_config_for_layout

    options: dict = {"run_dir": run_dir}
    if stats_interval_s is not None:
        options["stats_interval_s"] = stats_interval_s
    if vip_mac:
        options["vip_mac"] = vip_mac
    if gateway_ip:
        options["gateway_ips"] = tuple(gateway_ip)
    if rules is not None:
        options["rules"] = rules.read_text()
    elif keepalived_conf is not None:
        options["rules"] = rules_from_keepalived(keepalived_conf)
    if base is None or mode is not None or n_rs is not None:
        return lb_config_for_layout(mode or "dr", 3 if n_rs is None else n_rs, **options)
    return dataclasses.replace(base, **options)


def register(app: typer.Typer) -> None:
    app.add_typer(controller_app, name="controller")
