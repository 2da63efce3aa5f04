"""How an experiment is declared, registered and swept.

For: the `Experiment` declaration an experiment module makes (name, description, typed
parameter dataclass, `run_point`, `report`), the registry (`EXPERIMENTS`, filled by loading
every file of the checkout's ``experiments/`` folder plus the files, folders and modules named
in the environment variable ``LVS_TESTBED_EXPERIMENTS``), the typing of parameters (text from
the command line and values from JSON, both checked against the dataclass field's type), and
the expansion of a sweep into points (the cartesian product of the given values, times the
repeats).

Not for: running points (`testbed.harness.runner` in the parent, `.point` in each child),
the layout of result files (`.results`) or plotting (`testbed.report`). Nothing here imports
Mininet or matplotlib: ``lvs-testbed experiment list`` works anywhere.

A parameter dataclass looks like this; every field has a default and a help text, and its
name carries its unit::

    @dataclass(frozen=True)
    class Params:
        rate_pps: float = field(default=1000.0, metadata={"help": "Offered load, packets/s."})
        layout: Literal["dr", "nat"] = field(default="dr", metadata={"help": "Which layout."})
        quota_cores: float | None = field(default=None, metadata={"help": "Director CPU quota."})

Supported field types: int, float, str, bool, ``Literal[...]`` of str or int, and any of
those ``| None`` (written ``none`` on the command line). ``__post_init__`` may raise
ValueError to refuse a combination; the sweep is then refused before anything runs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.util
import itertools
import logging
import math
import os
import re
import sys
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Union, get_args, get_origin, get_type_hints

from testbed import REPO_ROOT

if TYPE_CHECKING:
    from testbed.harness.results import RunData
    from testbed.report.render import Figure, Section

EXTRA_MODULES_ENV = "LVS_TESTBED_EXPERIMENTS"
DEFAULT_TIMEOUT_S = 600.0

Scalar = int | float | str | bool | None
"""What a parameter, a summary figure or a sample cell may hold: it must survive JSON and CSV."""


class ExperimentError(ValueError):
    """An experiment is unknown, declared wrongly, or its module does not import."""


class SweepError(ValueError):
    """A sweep names an unknown parameter or gives a value its type refuses; nothing ran."""


# ---------------------------------------------------------------------------------------------
# What an experiment author writes


@dataclass(frozen=True)
class PointContext:
    """What `run_point` gets besides its parameters.

    ``out_dir``: the point's own directory (already created; put extra files here).
    ``log``: a logger whose records go to the point's ``point.log``. ``repeat``: which repeat
    of this configuration this is (0-based). ``point_id``: the point's directory name.
    """

    out_dir: Path
    point_id: str
    repeat: int
    log: logging.Logger


@dataclass(frozen=True)
class PointResult:
    """What one measured configuration returns.

    ``summary``: the point's figures, named with units (``delivered_pps``, ``director_cores``).
    ``samples``: raw rows (dicts with the same keys), written to ``samples.csv`` with a header.
    ``invalid_reasons``: why the point does not measure the system under test (see
    `testbed.measure.analysis.check_fidelity`); empty when it does.
    """

    summary: Mapping[str, Scalar]
    samples: Sequence[Mapping[str, Scalar]] = ()
    invalid_reasons: Sequence[str] = ()


@dataclass(frozen=True)
class Experiment:
    """An experiment: the measurement of one configuration, its parameters, and its report.

    ``run_point(params, ctx)`` runs in a fresh process per point and returns a `PointResult`;
    an exception marks the point failed (the sweep goes on). ``report(run)`` gets the loaded
    run (`testbed.harness.results.RunData`) and returns the figures and sections of its
    report, each figure with a finding. ``summarize(run)``, if given, returns what the run's
    summary.json carries beside the point list (the seed's ``verdicts``). ``needs_root``:
    refuse to start without root (every experiment that builds a layout). ``timeout_s``:
    default limit per point. ``module``: filled in by `register` with the registering module,
    which a point's process imports to find the experiment.
    """

    name: str
    description: str
    params: type
    run_point: Callable[[Any, PointContext], PointResult]
    report: Callable[[RunData], Sequence[Figure | Section]] | None = None
    summarize: Callable[[RunData], Mapping[str, Any]] | None = None
    needs_root: bool = True
    timeout_s: float = DEFAULT_TIMEOUT_S
    module: str = ""

    def param_specs(self) -> list[ParamSpec]:
        return param_specs(self.params)


# ---------------------------------------------------------------------------------------------
# Parameter typing


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}
_NONE = {"none", "null"}


def _parse_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)  # 1e5 is a fine way to write 100000
    except ValueError:
        raise ValueError(f"{text!r} is not an integer") from None
    if not number.is_integer():
        raise ValueError(f"{text!r} is not an integer")
    return int(number)


def _parse_float(text: str) -> float:
    try:
        number = float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number") from None
    if not math.isfinite(number):
        raise ValueError(f"{text!r} is not a finite number")
    return number


def _parse_bool(text: str) -> bool:
    if text.lower() in _TRUE:
        return True
    if text.lower() in _FALSE:
        return False
    raise ValueError(f"{text!r} is not a boolean (true/false, yes/no, on/off, 1/0)")


@dataclass(frozen=True)
class ParamSpec:
    """One parameter: its name, type, default and help, and how its values are checked."""

    name: str
    base: Any  # int, float, str or bool; for Literal, the tuple of choices
    optional: bool
    default: Scalar
    help: str

    @property
    def type_text(self) -> str:
        text = (
            "one of " + ", ".join(map(str, self.base))
            if isinstance(self.base, tuple)
            else self.base.__name__
        )
        return f"{text} or none" if self.optional else text

    def parse(self, text: str) -> Scalar:
        """A value from command-line text; ValueError says what was expected."""
        text = text.strip()
        if self.optional and text.lower() in _NONE:
            return None
        if isinstance(self.base, tuple):
            for choice in self.base:
                if str(choice) == text:
                    return choice
            raise ValueError(f"{text!r} is not {self.type_text}")
        if self.base is bool:
            return _parse_bool(text)
        if self.base is int:
            return _parse_int(text)
        if self.base is float:
            return _parse_float(text)
        if not text:
            raise ValueError("empty value")
        return text

    def check(self, value: object) -> Scalar:
        """A value from JSON or a default, checked (ints are accepted as floats)."""
        if value is None and self.optional:
            return None
        if isinstance(self.base, tuple):
            if value in self.base and type(value) in {type(c) for c in self.base}:
                return value  # type: ignore[return-value]
        elif self.base is float and type(value) in (int, float):
            return float(value)  # type: ignore[arg-type]
        elif type(value) is self.base:
            return value  # type: ignore[return-value]
        raise ValueError(f"{value!r} is not {self.type_text}")


def _field_type(cls: type, f: dataclasses.Field, hint: Any) -> tuple[Any, bool]:
    """(base, optional) for a field's type hint, or ExperimentError for unsupported types."""
    optional = False
    if get_origin(hint) in (Union, types.UnionType):
        args = [a for a in get_args(hint) if a is not type(None)]
        if len(args) != 1 or len(get_args(hint)) != 2:
            raise ExperimentError(f"{cls.__name__}.{f.name}: only 'X | None' unions are supported")
        hint, optional = args[0], True
    if get_origin(hint) is Literal:
        choices = get_args(hint)
        if not all(type(c) in (str, int) for c in choices):
            raise ExperimentError(f"{cls.__name__}.{f.name}: Literal choices must be str or int")
        return choices, optional
    if hint in (int, float, str, bool):
        return hint, optional
    raise ExperimentError(
        f"{cls.__name__}.{f.name}: type {hint!r} is not supported "
        "(int, float, str, bool, Literal[...], or one of those | None)"
    )


def param_specs(cls: type) -> list[ParamSpec]:
    """The parameters of a parameter dataclass, in field order, checked for defaults and help."""
    if not dataclasses.is_dataclass(cls) or not isinstance(cls, type):
        raise ExperimentError(f"{cls!r} is not a dataclass")
    try:
        hints = get_type_hints(cls)
    except NameError as exc:
        raise ExperimentError(f"{cls.__name__}: cannot resolve a type hint: {exc}") from exc
    specs = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        base, optional = _field_type(cls, f, hints[f.name])
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            raise ExperimentError(f"{cls.__name__}.{f.name} has no default")
        help_text = f.metadata.get("help")
        if not help_text:
            raise ExperimentError(
                f'{cls.__name__}.{f.name} has no help: field(..., metadata={{"help": ...}})'
            )
        spec = ParamSpec(f.name, base, optional, None, help_text)
        try:
            default = spec.check(default)
        except ValueError as exc:
            raise ExperimentError(f"{cls.__name__}.{f.name}: default {exc}") from None
        specs.append(dataclasses.replace(spec, default=default))
    return specs


def params_from_dict(cls: type, values: Mapping[str, object]) -> Any:
    """An instance of the parameter dataclass from JSON values (missing names take defaults,
    unknown names are an error: the experiment changed since the run was made)."""
    specs = {s.name: s for s in param_specs(cls)}
    unknown = sorted(set(values) - set(specs))
    if unknown:
        raise ExperimentError(
            f"parameters {', '.join(unknown)} are not in {cls.__name__} (known: {', '.join(specs)})"
        )
    return cls(**{name: specs[name].check(value) for name, value in values.items()})


def format_value(value: Scalar) -> str:
    """A value as the command line writes it (so `ParamSpec.parse` reads it back)."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


# ---------------------------------------------------------------------------------------------
# Registry

EXPERIMENTS: dict[str, Experiment] = {}
_FILE_MODULE_PREFIX = "lvs_testbed_experiment_"
_NAME_RE = re.compile(r"^[a-z][a-z0-9_-]*$")


def register(experiment: Experiment) -> Experiment:
    """Add an experiment to `EXPERIMENTS`; returns it with ``module`` set to the caller's
    module (its file's path for a definition loaded from a file). Call it at the top level of
    the experiment's module (``EXPERIMENT = register(...)``).

    The declaration is checked here, so a mistake shows at import, not mid-sweep.
    """
    caller = sys._getframe(1).f_globals
    # A definition loaded from its file is known by the file's path (see `_load_file`).
    module = (
        caller.get("__file__")
        if caller.get("__name__", "").startswith(_FILE_MODULE_PREFIX)
        else None
    )
    module = str(Path(module).resolve()) if module else caller.get("__name__", "")
    experiment = dataclasses.replace(experiment, module=experiment.module or module)
    if not _NAME_RE.match(experiment.name):
        raise ExperimentError(
            f"experiment name {experiment.name!r}: use lower case letters, digits, '-' and '_'"
        )
    if not experiment.description or "\n" in experiment.description:
        raise ExperimentError(f"experiment {experiment.name}: the description is one line")
    if not experiment.timeout_s > 0:
        raise ExperimentError(f"experiment {experiment.name}: timeout_s must be positive")
    experiment.param_specs()
    existing = EXPERIMENTS.get(experiment.name)
    if existing is not None and existing.module != experiment.module:
        raise ExperimentError(
            f"experiment {experiment.name!r} is defined in both "
            f"{existing.module} and {experiment.module}"
        )
    EXPERIMENTS[experiment.name] = experiment
    return experiment


def experiment_dirs() -> list[Path]:
    """Where experiment definitions are found: the checkout's ``experiments/`` folder (users
    copy a file there to make a new experiment), then the folders named in
    ``LVS_TESTBED_EXPERIMENTS``."""
    return [REPO_ROOT / "experiments"] + [Path(x) for x in _extra_sources() if Path(x).is_dir()]


def _extra_sources() -> list[str]:
    return [m.strip() for m in os.environ.get(EXTRA_MODULES_ENV, "").split(",") if m.strip()]


def experiment_modules() -> list[str]:
    """What registers experiments: every ``*.py`` file of `experiment_dirs` (by path), then the
    files (``*.py``) and dotted module names in ``LVS_TESTBED_EXPERIMENTS`` (comma-separated:
    tests, out-of-tree work)."""
    files = [
        str(f)
        for d in experiment_dirs()
        if d.is_dir()
        for f in sorted(d.glob("*.py"))
        if not f.name.startswith("_")
    ]
    extra = [x for x in _extra_sources() if not Path(x).is_dir()]
    return files + [str(Path(x).resolve()) if x.endswith(".py") else x for x in extra]


def _load_file(path: str) -> None:
    """Import an experiment definition from its file, under a module name of its own; the
    experiments it registers record the file's path as their module, so a point's process
    loads the same file."""
    resolved = str(Path(path).resolve())
    digest = hashlib.sha1(resolved.encode()).hexdigest()[:10]
    name = f"{_FILE_MODULE_PREFIX}{digest}_{re.sub(r'[^a-zA-Z0-9_]', '_', Path(path).stem)}"
    if name in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(name, resolved)
    if spec is None or spec.loader is None:
        raise ExperimentError(f"{path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise


def _import(module: str) -> None:
    try:
        if module.endswith(".py"):
            if not Path(module).is_file():
                raise ExperimentError(f"experiment file {module} does not exist")
            _load_file(module)
        else:
            importlib.import_module(module)
    except ExperimentError:
        raise
    except Exception as exc:  # a broken module must name itself, whatever broke it
        raise ExperimentError(
            f"cannot import experiment module {module}: {type(exc).__name__}: {exc}"
        ) from exc


def load_experiments() -> dict[str, Experiment]:
    """Import every experiment module; the registry, sorted by name."""
    for module in experiment_modules():
        _import(module)
    return dict(sorted(EXPERIMENTS.items()))


def get_experiment(name: str) -> Experiment:
    """An experiment by name, or by the path of a file that defines one (``experiments/x.py``,
    or a copy anywhere)."""
    if name.endswith(".py"):
        path = str(Path(name).resolve())
        _import(path)
        found = [e for e in EXPERIMENTS.values() if e.module == path]
        if len(found) != 1:
            raise ExperimentError(
                f"{name} registers {len(found)} experiments; name one of them instead of the file"
                if found
                else f"{name} registers no experiment"
            )
        return found[0]
    known = load_experiments()
    if name not in known:
        raise ExperimentError(f"unknown experiment {name!r}; known: {', '.join(known) or 'none'}")
    return known[name]


def definition_module(experiment: Experiment) -> types.ModuleType:
    """The loaded module that defines ``experiment`` (for helpers the definition offers beside
    it, such as the seed's sweep for `reproduce`)."""
    for module in list(sys.modules.values()):
        file = getattr(module, "__file__", None)
        if module.__name__ == experiment.module or (
            file and str(Path(file).resolve()) == experiment.module
        ):
            return module
    raise ExperimentError(f"the module of experiment {experiment.name} is not loaded")


def experiment_from_module(module: str, name: str) -> Experiment:
    """The experiment ``name`` as registered by importing ``module`` (a dotted name or a
    file's path; how a point's process and the report find the experiment a run directory
    recorded)."""
    _import(module)
    experiment = EXPERIMENTS.get(name)
    if experiment is None or experiment.module != module:
        raise ExperimentError(f"module {module} does not register an experiment {name!r}")
    return experiment


# ---------------------------------------------------------------------------------------------
# Sweeps


@dataclass(frozen=True)
class Point:
    """One configuration and repeat: its id (= directory name) and every parameter's value."""

    point_id: str
    repeat: int
    params: dict[str, Scalar]


@dataclass(frozen=True)
class Sweep:
    """The points of a run: ``values`` holds the parameters given, each with its values in the
    order given; the others keep their defaults."""

    experiment: Experiment
    values: dict[str, list[Scalar]]
    repeat: int
    points: list[Point] = field(default_factory=list)

    def command(self) -> str:
        """The command line that makes this sweep again."""
        parts = ["lvs-testbed", "experiment", "run", self.experiment.name]
        for name, values in self.values.items():
            parts += ["--param", f"{name}={','.join(format_value(v) for v in values)}"]
        if self.repeat != 1:
            parts += ["--repeat", str(self.repeat)]
        return " ".join(parts)


def parse_assignments(
    experiment: Experiment, assignments: Sequence[str]
) -> dict[str, list[Scalar]]:
    """``["rate_pps=1000,2000", "layout=nat"]`` -> ``{"rate_pps": [1000.0, 2000.0], ...}``.

    A parameter may be given several times; its values add up, in order. Every problem is
    collected, so one message lists them all.
    """
    specs = {s.name: s for s in experiment.param_specs()}
    values: dict[str, list[Scalar]] = {}
    errors = []
    for assignment in assignments:
        name, sep, text = assignment.partition("=")
        name = name.strip()
        if not sep or not name:
            errors.append(f"{assignment!r}: expected NAME=VALUE[,VALUE...]")
            continue
        if name not in specs:
            errors.append(
                f"unknown parameter {name!r} for experiment {experiment.name}; "
                f"known: {', '.join(specs)}"
            )
            continue
        for item in text.split(","):
            try:
                value = specs[name].parse(item)
            except ValueError as exc:
                errors.append(f"{name}: {exc}")
                continue
            if value in values.get(name, []):
                errors.append(
                    f"{name}: {format_value(value)} is given twice (use --repeat to repeat)"
                )
                continue
            values.setdefault(name, []).append(value)
    if errors:
        raise SweepError("\n".join(errors))
    return values


_UNSAFE_RE = re.compile(r"[^A-Za-z0-9._=,+-]")
MAX_SLUG_CHARS = 80


def _point_id(index: int, width: int, swept: Mapping[str, Scalar], repeat: int) -> str:
    slug = ",".join(f"{k}={format_value(v)}" for k, v in swept.items())
    slug = _UNSAFE_RE.sub("_", slug)[:MAX_SLUG_CHARS]
    return f"{index:0{width}d}-{slug}-r{repeat}" if slug else f"{index:0{width}d}-r{repeat}"


def plan_sweep(experiment: Experiment, assignments: Sequence[str], repeat: int = 1) -> Sweep:
    """Parse the assignments and expand them into points: the cartesian product of the values
    (in field order, the last parameter varying fastest), run once per repeat with the repeats
    outermost, so slow drift of the machine spreads over every configuration alike.

    Every configuration is built once here, so a value the dataclass refuses stops the sweep
    before anything runs.
    """
    if repeat < 1:
        raise SweepError(f"--repeat must be at least 1, got {repeat}")
    values = parse_assignments(experiment, assignments)
    specs = experiment.param_specs()
    order = [s.name for s in specs if s.name in values]
    values = {name: values[name] for name in order}
    defaults = {s.name: s.default for s in specs}
    configs = [
        dict(zip(order, combo, strict=True)) for combo in itertools.product(*values.values())
    ]
    errors = []
    for config in configs:
        try:
            experiment.params(**{**defaults, **config})
        except (ValueError, TypeError) as exc:
            where = ", ".join(f"{k}={format_value(v)}" for k, v in config.items()) or "the defaults"
            errors.append(f"{where}: {exc}")
    if errors:
        raise SweepError("\n".join(errors))
    swept = [name for name in order if len(values[name]) > 1]
    width = max(3, len(str(len(configs) - 1)))
    points = [
        Point(_point_id(i, width, {k: config[k] for k in swept}, r), r, {**defaults, **config})
        for r in range(repeat)
        for i, config in enumerate(configs)
    ]
    return Sweep(experiment, values, repeat, points)
