"""lvs-testbed: an emulated lab for Linux Virtual Server layouts (see README.md and docs/)."""

import functools
import sys
from pathlib import Path

__version__ = "0.1.0"

REPO_ROOT = Path(__file__).resolve().parent.parent
"""The checkout the package runs from (installed editable): where the user-facing folders
``experiments/``, ``controllers/``, ``topos/`` and ``labs/`` live."""


CHECKOUT_VENV = REPO_ROOT / ".venv"
"""The virtual environment `make setup` makes in the checkout (system site packages)."""


def _outside_a_venv() -> bool:
    return sys.prefix == sys.base_prefix


@functools.cache
def child_python() -> str:
    """The interpreter for the testbed's own processes (daemons, servers, load generators).

    This one, unless it runs outside any virtual environment while the checkout has one:
    Mininet's ``mn`` runs the system Python, which has Mininet but not typer or os-ken, so a
    layout that ``mn --custom topos/<layout>.py`` built runs them with the checkout's
    ``.venv`` (made from that same system Python, so it sees Mininet too)."""
    venv_python = CHECKOUT_VENV / "bin" / "python"
    if _outside_a_venv() and venv_python.exists():
        return str(venv_python)
    return sys.executable


def use_checkout_venv() -> None:
    """Let this process (the system Python, under ``mn``) import what the checkout's .venv
    installed (rich, typer, os-ken): append its site-packages to ``sys.path``. Only outside a
    virtual environment, and only a .venv of this Python's version (its compiled packages must
    fit)."""
    if not _outside_a_venv():
        return
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    site = CHECKOUT_VENV / "lib" / version / "site-packages"
    if site.is_dir() and str(site) not in sys.path:
        sys.path.append(str(site))
