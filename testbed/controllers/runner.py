"""Start a controller app with os-ken's AppManager, in this process: what ``ryu-manager
FILE`` does (os-ken 4.2 ships no manager command of its own).

For: `run_app`, behind ``lvs-testbed controller run``: find the app (a built-in name, or the
path of an app file such as the top-level ``controllers/lb.py`` or a user's copy), check that
the OpenFlow port is free (os-ken only logs a failed bind, from a thread, and then serves
nothing), set os-ken's configuration (``os_ken.cfg.CONF``: listen address and port), hand an
OpenFlow director app its `LbConfig`, then load and run the app until SIGTERM or SIGINT, and
close it (the director removes its control socket).

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


JOIN_POLL_S = 0.5


def _join_interruptibly(threads: list) -> None:
    """Wait for ``threads`` (os-ken's native hub threads) to end, waking every JOIN_POLL_S.

    A process-directed signal may be delivered to any thread; Python then runs the handler
    only when the main thread next executes bytecode, and a main thread blocked in a plain
    ``join()`` never does: SIGTERM would be ignored, at random (it was, about one time in
    five, when it came right after start)."""
    while any(t.is_alive() for t in threads):
        for t in threads:
            t.join(JOIN_POLL_S)


def resolve_app(app: str) -> str:
    """What os-ken loads for ``app``: a built-in's module, or the absolute path of an app file
    (``*.py``); ControllerError naming both kinds if it is neither."""
    if app in APPS:
        return APPS[app]
    if app.endswith(".py"):
        path = Path(app)
        if not path.is_file():
            raise ControllerError(f"no app file {app}: give a path such as controllers/lb.py")
        return str(path.resolve())
    raise ControllerError(
        f"unknown app {app!r}; known: {', '.join(APPS)}, or the path of an app file "
        "(controllers/NAME.py, or your copy)"
    )


def app_class(spec: str) -> type:
    """The os-ken app class ``spec`` (from `resolve_app`) defines, found as os-ken finds it:
    the first `OSKenApp` subclass defined in that module itself (not merely imported)."""
    from os_ken.base import app_manager

    try:
        cls = app_manager.AppManager.get_instance().load_app(spec)
    except Exception as exc:  # a broken app file must name itself, whatever broke it
        raise ControllerError(f"cannot load {spec}: {type(exc).__name__}: {exc}") from exc
    if cls is None:
        raise ControllerError(
            f"{spec} defines no os-ken app: it needs a subclass of "
            "os_ken.base.app_manager.OSKenApp defined in the file itself"
        )
    return cls


def is_openflow_director(cls: type) -> bool:
    """Whether ``cls`` is the OpenFlow director or a subclass (so it takes an LbConfig)."""
    from testbed.controllers import lb

    return issubclass(cls, lb.OpenFlowDirector)


def run_app(
    app: str,
    *,
    listen: str = DEFAULT_LISTEN,
    port: int = DEFAULT_PORT,
    lb_config: LbConfig | None = None,
    verbose: bool = False,
) -> None:
    """Run ``app`` (a key of APPS or an app file's path) until SIGTERM/SIGINT. ``lb_config``
    is what an OpenFlow director app serves (required for one, refused for others). Raises
    ControllerError before starting if it cannot."""
    spec = resolve_app(app)
    if not 1 <= port <= 65535:
        raise ControllerError(f"--port must be 1..65535, got {port}")
    check_port_free(listen, port)
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    configure_os_ken(listen, port)
    director = is_openflow_director(app_class(spec))
    if director:
        from testbed.controllers import lb

        if lb_config is None:
            raise ControllerError(f"{app} is an OpenFlow director: it needs its services")
        lb.build_director(lb_config.rules)  # refuse bad rules here, not inside os-ken
        lb.configure(lb_config)
    elif lb_config is not None:
        raise ControllerError(f"{app} is not an OpenFlow director: it takes no services")

    from os_ken.base import app_manager

    manager = app_manager.AppManager.get_instance()
    # From here a signal may come at any moment (a switch can connect, and its owner stop
    # us, before the apps are all up): the try covers every step, so the stop always ends
    # in close() and a return, never in a KeyboardInterrupt that leaves the threads running.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    try:
        manager.load_apps([spec])
        services = manager.instantiate_apps(**manager.create_contexts())
        logging.getLogger(__name__).info(
            "%s listening for OpenFlow 1.3 switches on %s:%d", app, listen, port
        )
        _join_interruptibly(services)
    except KeyboardInterrupt:
        pass
    finally:
        manager.close()
