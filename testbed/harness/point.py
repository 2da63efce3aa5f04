"""One point of a sweep, in its own process: ``python -m testbed.harness.point RUN_DIR ID``.

For: the child side of `testbed.harness.runner`. It reads the point from params.json,
imports the experiment's module, builds the typed parameters, calls ``run_point``, writes
``samples.csv`` and ``result.json`` into the point's directory, and exits 0 (ok), 1 (the
measurement raised) or 130 (stopped by SIGTERM). Its stdout and stderr are the point's
``point.log``; so are the records of ``ctx.log``. The daemons of the layouts it builds log
into ``logs/<run-id>/`` of the point's directory (runtime/logs.py), kept with its results.

SIGTERM raises KeyboardInterrupt here, so ``finally`` blocks and context managers in
``run_point`` (a `Testbed` being torn down) run before the process exits, and the process asks
the kernel for that same SIGTERM if the parent dies (``PR_SET_PDEATHSIG``), so a killed sweep
does not leave a point measuring on its own.

Not for: anything the parent decides (timeouts, resume, the index and summary).
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from testbed.harness.framework import (
    PointContext,
    PointResult,
    Scalar,
    experiment_from_module,
    params_from_dict,
)
from testbed.harness.results import (
    RESULT_FILE,
    SAMPLES_FILE,
    STATUS_FAILED,
    STATUS_INTERRUPTED,
    STATUS_OK,
    load_spec,
    point_dir,
    point_record,
    write_json,
    write_samples,
)

PR_SET_PDEATHSIG = 1
POINT_LOGS_DIR = "logs"
EXIT_OK, EXIT_FAILED, EXIT_INTERRUPTED = 0, 1, 130


def _die_with_parent() -> None:
    try:
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (AttributeError, OSError):
        pass  # not Linux: the parent's SIGTERM on Ctrl-C still stops us


def _sigterm_interrupts() -> None:
    def interrupt(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)


def _scalar(name: str, value: object) -> Scalar:
    if value is None or isinstance(value, bool | int | float | str):
        return value  # type: ignore[return-value]
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    raise TypeError(
        f"summary figure {name!r} is a {type(value).__name__}: figures are numbers, "
        "strings, booleans or None"
    )


def _summary(summary: Mapping[str, object]) -> dict[str, Scalar]:
    return {str(k): _scalar(str(k), v) for k, v in summary.items()}


def run(run_dir: Path, point_id: str) -> int:
    """Measure the point ``point_id`` of ``run_dir``; the exit code for the process."""
    spec = load_spec(run_dir)
    point = next((p for p in spec["points"] if p["point_id"] == point_id), None)
    if point is None:
        raise SystemExit(f"{run_dir} has no point {point_id!r}")
    pdir = point_dir(run_dir, point_id)
    pdir.mkdir(parents=True, exist_ok=True)
    # Every layout this point builds keeps its daemons' logs with the point's results.
    os.environ["LVS_TESTBED_LOGS_IN"] = str(pdir / POINT_LOGS_DIR)
    log = logging.getLogger(f"testbed.experiments.{spec['experiment']}")
    started = time.monotonic()
    try:
        experiment = experiment_from_module(spec["module"], spec["experiment"])
        params = params_from_dict(experiment.params, point["params"])
        log.info("point %s of %s: %s", point_id, run_dir, params)
        result = experiment.run_point(params, PointContext(pdir, point_id, point["repeat"], log))
        if not isinstance(result, PointResult):
            raise TypeError(f"run_point returned {type(result).__name__}, not a PointResult")
        summary = _summary(result.summary)
        reasons = [str(r) for r in result.invalid_reasons]
        if result.samples:
            write_samples(pdir / SAMPLES_FILE, result.samples)
        record = point_record(
            point,
            status=STATUS_OK,
            summary=summary,
            invalid_reasons=reasons,
            samples_file=SAMPLES_FILE if result.samples else None,
        )
        code = EXIT_OK
        for reason in reasons:
            log.warning("invalid: %s", reason)
    except KeyboardInterrupt:
        log.warning("stopped by the runner")
        record = point_record(point, status=STATUS_INTERRUPTED, error="stopped by the runner")
        code = EXIT_INTERRUPTED
    except Exception as exc:  # any failure of the measurement is the point's result
        log.exception("point %s failed", point_id)
        record = point_record(point, status=STATUS_FAILED, error=f"{type(exc).__name__}: {exc}")
        code = EXIT_FAILED
    record["elapsed_s"] = round(time.monotonic() - started, 3)
    write_json(pdir / RESULT_FILE, record)
    return code


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m testbed.harness.point RUN_DIR POINT_ID", file=sys.stderr)
        return 2
    _die_with_parent()
    _sigterm_interrupts()
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return run(Path(args[0]), args[1])


if __name__ == "__main__":
    sys.exit(main())
