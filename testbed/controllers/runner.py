"""Start one of the controller apps with os-ken's AppManager, in this process.

For: `run_app`, behind ``lvs-testbed controller run``: check that the OpenFlow port is free
(os-ken only logs a failed bind, from a thread, and then serves nothing), set os-ken's
configuration (``os_ken.cfg.CONF``: listen address and port), hand the director its
`LbConfig`, then load and run the app until SIGTERM or SIGINT, and close it (the director
removes its control socket).

Not for: OVS or Mininet (the layout side points its switches at us), or ending the process:
os-ken 4's native hub runs each switch connection in a thread that cannot be stopped, so
the caller must leave with ``os._exit`` once `run_app` returns (the CLI does).

os-ken 4.2's ``AppManager.run_apps`` is not used as is: on its way out it calls ``kill()``
on threads, which its native hub threads do not have, so every stop would end in an
AttributeError. `run_app` does the same steps without that call.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from testbed.runtime.registry import Run, run_root

if TYPE_CHECKING:
    from testbed.controllers.lb import LbConfig

APPS = {
    "l2_learning": "testbed.controllers.l2_learning",
    "lb": "testbed.controllers.lb",
}
DEFAULT_PORT = 6653
"""The IANA OpenFlow port; Mininet's RemoteController uses it too."""
DEFAULT_LISTEN = "127.0.0.1"
"""The switches run in the root namespace (Mininet's OVS), so loopback reaches them."""


class ControllerError(RuntimeError):
    """The controller cannot start; the message says why and what to do."""


def check_port_free(listen: str, port: int) -> None:
    """Bind a test socket as os-ken will (SO_REUSEADDR); ControllerError if it cannot."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((listen, port))
        except OSError as exc:
            fix = (
                "another controller probably holds the port; stop it or pick another port "
                "with --port"
                if exc.errno == errno.EADDRINUSE
                else "check --listen"
            )
            raise ControllerError(
                f"cannot listen on {listen}:{port} ({exc.strerror}): {fix}"
            ) from exc


def configure_os_ken(listen: str, port: int) -> None:
    """Initialise ``os_ken.cfg.CONF`` as os-ken's manager would, with our address and port.

    The controller module must be imported first: it registers the command-line options
    (``ofp_listen_host``, ``ofp_tcp_listen_port``) that CONF parses. It can only be imported
    after the app manager (they import each other)."""
    import os_ken.base.app_manager  # noqa: F401 - before the controller module
    import os_ken.controller.controller  # noqa: F401 - registers the options
    from os_ken import cfg

    cfg.CONF(args=[], project="os_ken")
    cfg.CONF.set_override("ofp_listen_host", listen)
    cfg.CONF.set_override("ofp_tcp_listen_port", port)


@contextmanager
def control_dir() -> Iterator[Path]:
    """Where the director's control socket goes: the layout's run directory when started by
    one (``$LVS_TESTBED_RUN_DIR``), else a run of our own under the run root, removed on exit
    (so ``lvs-testbed ipvsadm --director of`` finds it, and ``lvs-testbed clean`` knows it)."""
    env = os.environ.get("LVS_TESTBED_RUN_DIR")
    if env:
        yield Path(env)
        return
    try:
        run = Run("controller")
    except OSError as exc:
        raise ControllerError(
            f"cannot create a run directory under {run_root()} ({exc.strerror}) for the control "
            f"socket: run with sudo, point LVS_TESTBED_RUNDIR at a writable directory, or "
            f"pass --no-control"
        ) from exc
    try:
        yield run.dir
    finally:
        run.cleanup()


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def run_app(
    app: str,
    *,
    listen: str = DEFAULT_LISTEN,
    port: int = DEFAULT_PORT,
    lb_config: LbConfig | None = None,
    verbose: bool = False,
) -> None:
    """Run ``app`` (a key of APPS) until SIGTERM/SIGINT. ``lb_config`` (an lb.LbConfig) is
    what the ``lb`` app serves. Raises ControllerError before starting if it cannot."""
    if app not in APPS:
        raise ControllerError(f"unknown app {app!r}; known: {', '.join(APPS)}")
    if not 1 <= port <= 65535:
        raise ControllerError(f"--port must be 1..65535, got {port}")
    check_port_free(listen, port)
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    configure_os_ken(listen, port)
    if app == "lb":
        from testbed.controllers import lb

        if lb_config is None:
            raise ControllerError("the lb app needs its services (an lb.LbConfig)")
        config = lb_config
        lb.build_director(config.rules)  # refuse bad rules here, not inside os-ken
        lb.configure(config)

    from os_ken.base import app_manager
    from os_ken.lib import hub

    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    manager = app_manager.AppManager.get_instance()
    manager.load_apps([APPS[app]])
    services = manager.instantiate_apps(**manager.create_contexts())
    logging.getLogger(__name__).info(
        "%s listening for OpenFlow 1.3 switches on %s:%d", app, listen, port
    )
    try:
        hub.joinall(services)
    except KeyboardInterrupt:
        pass
    finally:
        manager.close()
