"""``python -m testbed`` is ``lvs-testbed``."""

from testbed.cli.main import main

main()
