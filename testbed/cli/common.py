"""What every command shares: the consoles, and turning domain errors into a clear message
with a non-zero exit instead of a traceback."""

from __future__ import annotations

import os
from typing import NoReturn

import typer
from rich.console import Console

console = Console()
err_console = Console(stderr=True)


def fail(message: str, code: int = 1) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def require_root(what: str) -> None:
    if os.geteuid() != 0:
        fail(f"{what} needs root (Mininet, namespaces, cgroups): run it with sudo", 1)
