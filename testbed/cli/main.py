"""The ``lvs-testbed`` command: one typer app; each area adds its commands or sub-app here.

Modules under testbed/cli stay thin: they parse options, call the library, and turn its
errors into messages. Mininet is imported lazily so ``--help`` works anywhere.
"""

from __future__ import annotations

import typer

from testbed import __version__
from testbed.cli import (
    bench,
    controller,
    demo,
    director,
    doctor,
    experiment,
    lab,
    net,
    reproduce,
    vm,
    vrrp,
)

app = typer.Typer(
    name="lvs-testbed",
    help="An emulated lab for Linux Virtual Server: the LVS-DR and LVS-NAT layouts of a 2003 "
    "lvs-users post, rebuilt in Mininet, with a userspace IPVS director.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"lvs-testbed {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Build a layout with `up`, check the machine with `doctor`, remove leftovers with `clean`."""


doctor.register(app)
net.register(app)
demo.register(app)
director.register(app)
experiment.register(app)
bench.register(app)
reproduce.register(app)
vrrp.register(app)
controller.register(app)
lab.register(app)
vm.register(app)


def main() -> None:
    app()
