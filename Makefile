# Every user-facing target sets itself up first, so each is one command on a fresh machine.
# Root is needed (apt, Mininet, namespaces, cgroups). As root (Debian's root has no sudo) the
# commands run as they are; as another user they run through sudo. So `make test` works
# either way, and so does `sudo make test`.

VENV := .venv
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

.PHONY: setup reproduce demo bench test test-unit test-kernel lint lock clean help

help:
	@echo "make setup        install everything (apt packages, Open vSwitch, .venv); idempotent"
	@echo "make reproduce    the seed post's scenario end to end: calibrate, measure, report"
	@echo "make demo         bring up each layout, check it, shaped iperf3 run, exit clean"
	@echo "make bench        director vs kernel forwarding: delivered pps and ratios"
	@echo "make test         lint + unit tests + integration tests (root, Mininet)"
	@echo "make test-unit    the fast tier: no Mininet"
	@echo "make test-kernel  the tests that need a full kernel (ip_vs, netem), in a qemu VM"
	@echo "make lint         ruff check and ruff format --check"
	@echo "make lock         regenerate constraints.txt (the pinned Python packages)"
	@echo "make clean        remove what killed runs left behind (tracked resources only)"
	@echo "(as root, or as a user with sudo: the targets call sudo themselves)"

setup:
	$(SUDO) scripts/provision.sh

reproduce: setup
	$(SUDO) $(BIN)/lvs-testbed reproduce

demo: setup
	$(SUDO) $(BIN)/lvs-testbed demo

bench: setup
	$(SUDO) $(BIN)/lvs-testbed bench

lint: setup
	$(SUDO) $(BIN)/ruff check testbed tests topos experiments controllers
	$(SUDO) $(BIN)/ruff format --check testbed tests topos experiments controllers

test: lint
	$(SUDO) $(BIN)/pytest tests

test-unit: setup
	$(SUDO) $(BIN)/pytest tests/unit

# Resolves pyproject.toml's ranges afresh; no root needed. Then `make test` and commit.
lock:
	scripts/lock.sh

# One VM boot for the whole tier (each boot costs ~10 s, more under software emulation; the
# tier took 20 minutes under TCG). `make test` leaves tests/kernel out (tests/conftest.py) and
# runs only its smoke subset, in a VM of its own (tests/integration/test_kernel_vm.py).
test-kernel: setup
	$(SUDO) $(BIN)/lvs-testbed vm run --timeout-s 3600 -- $(BIN)/pytest tests/kernel -q

clean: setup
	$(SUDO) $(BIN)/lvs-testbed clean
