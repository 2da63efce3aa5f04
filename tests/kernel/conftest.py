"""The full-kernel tier's settings: every test here gets a longer timeout than the project's
300 s, since a layout under software emulation (the runner without KVM) takes minutes to
build; a test that sets its own timeout keeps it."""

from __future__ import annotations

import pytest

KERNEL_TEST_TIMEOUT_S = 900


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(KERNEL_TEST_TIMEOUT_S))
