"""What every command shares: the consoles, and turning domain errors into a clear message
with a non-zero exit instead of a traceback."""

from __future__ import annotations

import os
from pathlib import Path
from typing import NoReturn

import typer
from rich.console import Console

from testbed.net.capture import FILE_MB, FILES_PER_LINK

console = Console()
err_console = Console(stderr=True)


def fail(message: str, code: int = 1) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def require_root(what: str) -> None:
    if os.geteuid() != 0:
        fail(f"{what} needs root (Mininet, namespaces, cgroups): run it with sudo", 1)


CAPTURE_HELP = (
    f"Capture every link into pcap files that open in Wireshark (one tcpdump per link; at "
    f"most {FILES_PER_LINK} x {FILE_MB} MB per link, the newest packets kept)."
)
CAPTURE_DIR_OPTION = typer.Option(
    Path("captures"),
    "--capture-dir",
    file_okay=False,
    help="With --capture: the pcaps go to DIR/<run-id>/.",
)

# The options of the commands that open a layout's CLI (`up`, `lab start`).
SCRIPT_OPTION = typer.Option(
    None,
    "--script",
    exists=True,
    dir_okay=False,
    help="Run these CLI commands, then exit (commands may also be piped in).",
)
VERBOSE_OPTION = typer.Option(False, "--verbose", "-v", help="Show Mininet's progress.")
CAPTURE_OPTION = typer.Option(False, "--capture", help=CAPTURE_HELP)
RESULTS_OPTION = typer.Option(
    None,
    "--results",
    file_okay=False,
    help="Results root (default: $LVS_TESTBED_RESULTS or ./results).",
)


def report_captures(directory: Path | None, files: list[Path]) -> None:
    """Say where a run's packet captures are (nothing if it captured nothing)."""
    if directory is not None:
        console.print(
            f"packet captures: {directory} ({len(files)} pcap files, one per link)",
            highlight=False,
            soft_wrap=True,
        )
