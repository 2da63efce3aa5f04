"""What every test tier shares: tests/kernel is collected only when it is named.

tests/kernel needs a full kernel (ip_vs, netem, the OVS kernel datapath) and runs in
`make test-kernel` (`lvs-testbed vm run -- pytest tests/kernel`, or `pytest tests/kernel` on a
Linux with ip_vs). `pytest tests` (`make test`, CI on a small kernel) leaves it out entirely
rather than collecting it only to skip it.
"""

from __future__ import annotations

from pathlib import Path

KERNEL_DIR = Path(__file__).parent / "kernel"


def _names_kernel_tier(config) -> bool:
    base = Path(config.invocation_params.dir)
    for arg in config.args:
        path = (base / arg.split("::", 1)[0]).resolve()
        if path == KERNEL_DIR or KERNEL_DIR in path.parents:
            return True
    return False


def pytest_ignore_collect(collection_path: Path, config) -> bool | None:
    if collection_path == KERNEL_DIR and not _names_kernel_tier(config):
        return True
    return None
