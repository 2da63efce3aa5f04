"""``lvs-testbed vm run|prepare|clean``: commands in Debian's full kernel, booted under qemu on
this machine's own root filesystem (`testbed.vm`), for what a small kernel lacks (ip_vs,
netem, the Open vSwitch kernel datapath)."""

from __future__ import annotations

from pathlib import Path

import typer

from testbed.cli.common import console, fail, require_root

vm_app = typer.Typer(
    help="Run commands in a full kernel (qemu; KVM when it works, software emulation otherwise).",
    no_args_is_help=True,
)


@vm_app.command("run", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def run(
    ctx: typer.Context,
    timeout_s: float = typer.Option(
        1800.0, "--timeout-s", help="Kill the VM after this long, s (boot included)."
    ),
    memory: str = typer.Option(
        "2G", "--memory", help="The VM's memory (qemu's syntax: 2G, 4096M)."
    ),
    cpus: int = typer.Option(2, "--cpus", min=1, max=64, help="The VM's CPUs."),
    ovs: bool = typer.Option(
        True,
        "--ovs/--no-ovs",
        help="Start Open vSwitch in the guest (a private database; --no-ovs saves 5-8 s).",
    ),
    rw: list[Path] = typer.Option(
        None,
        "--rw",
        file_okay=False,
        exists=True,
        help="Another directory the guest may write (repeat); the current directory always is.",
    ),
) -> None:
    """Boot the full kernel, run the command after `--` in the current directory, stream its
    output and exit with its exit code (124: timed out, 130: interrupted, 125: the guest gave
    no result). Results the command writes under the current directory stay on the host;
    everything else it writes stays in the guest. Example:
    `sudo lvs-testbed vm run -- lvs-testbed up dr --director ipvs --no-cli`."""
    from testbed.vm import runner

    command = list(ctx.args)
    if not command:
        fail("give the command after `--`, e.g. `lvs-testbed vm run -- uname -r`", 2)
    require_root("`vm run`")
    try:
        result = runner.run_command(
            command,
            cwd=Path.cwd(),
            rw_dirs=rw or (),
            timeout_s=timeout_s,
            memory=memory,
            cpus=cpus,
            start_ovs=ovs,
        )
    except runner.VmError as exc:
        fail(str(exc), 2)
    raise typer.Exit(result.exit_code)


@vm_app.command("prepare")
def prepare() -> None:
    """Fetch (or refresh) Debian's kernel into the cache the VM boots from."""
    from testbed.vm import runner

    require_root("`vm prepare`")
    try:
        kernel = runner.ensure_kernel(refresh=True)
    except runner.VmError as exc:
        fail(str(exc), 2)
    console.print(
        f"kernel {kernel.release} ({kernel.package} {kernel.version}) at {kernel.image}",
        highlight=False,
    )


@vm_app.command("clean")
def clean(
    kernels: bool = typer.Option(False, "--kernels", help="Also remove the cached kernels."),
) -> None:
    """Remove what killed VM runs left (their qemu, their run directory); with --kernels, also the
    kernel cache. Only what carries our marker is touched."""
    from testbed.vm import runner

    require_root("`vm clean`")
    removed = runner.clean(kernels=kernels)
    console.print(
        f"removed {len(removed)} item(s)" + (f": {', '.join(removed)}" if removed else ""),
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    app.add_typer(vm_app, name="vm")
