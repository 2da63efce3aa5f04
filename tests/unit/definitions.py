"""The experiment definitions in the checkout's ``experiments/`` folder, loaded by path as the
CLI loads them, for tests of their pure parts."""

from types import ModuleType

from testbed.harness.framework import definition_module, get_experiment


def definition(name: str) -> ModuleType:
    """The module of experiment ``name`` (e.g. ``definition("seed").verdicts``)."""
    return definition_module(get_experiment(name))
