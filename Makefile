# Every user-facing target sets itself up first, so each is one command on a fresh machine.
# Run as root (Mininet, namespaces, cgroups, apt): sudo make <target>.

VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup reproduce demo bench test test-unit test-kernel lint clean help

help:
	@echo "sudo make setup      install everything (apt packages, Open vSwitch, .venv); idempotent"
	@echo "sudo make reproduce  the seed post's scenario end to end: calibrate, measure, report (~10 min)"
	@echo "sudo make demo       bring up each layout, check it, shaped iperf3 run, exit clean"
	@echo "sudo make bench      director vs kernel forwarding: delivered pps and ratios"
	@echo "sudo make test       lint + unit tests + integration tests (root, Mininet)"
	@echo "sudo make test-unit  the fast tier: no root, no Mininet"
	@echo "sudo make test-kernel  the tests that need a full kernel (ip_vs, netem), in a qemu VM"
	@echo "sudo make lint       ruff"
	@echo "sudo make clean      remove what killed runs left behind (tracked resources only)"

setup:
	scripts/provision.sh

reproduce: setup
	$(BIN)/lvs-testbed reproduce

demo: setup
	$(BIN)/lvs-testbed demo

bench: setup
	$(BIN)/lvs-testbed bench

lint: setup
	$(BIN)/ruff check testbed tests topos experiments
	$(BIN)/ruff format --check testbed tests topos experiments

test: lint
	$(BIN)/pytest tests

test-unit: setup
	$(BIN)/pytest tests/unit

# One VM boot for the whole tier (each boot costs ~10 s, more under software emulation).
test-kernel: setup
	$(BIN)/lvs-testbed vm run -- $(BIN)/pytest tests/kernel -q

clean: setup
	$(BIN)/lvs-testbed clean
