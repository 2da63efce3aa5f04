"""The files of a run directory, and reading a run back for its report.

For: one definition of what lies where, shared by the parent that runs a sweep, the child
that measures a point and the report that reads them::

    results/<experiment>/<run-id>/        run-id: UTC start time and a short hash of the sweep
      params.json     the sweep: experiment, module, given values, repeat, command, every point
      env.json        the machine: kernel, Python, package versions, git revision, CPUs, doctor
      points.jsonl    one record per point, appended as each finishes (after a resume a point
                      may appear again: the last record wins)
      summary.json    one row per point (status, validity, parameters, summary figures) and
                      the run's metadata and attempts; rewritten whenever a sweep stops
      results.csv     the same rows as one flat table (a row per point and repeat; status,
                      every parameter and every summary figure as columns), for pandas or a
                      spreadsheet; rewritten with summary.json
      points/<point-id>/
        result.json   the point's record (the source of truth for resume and report)
        samples.csv   raw samples, with a header row
        point.log     the point process's output and log
        pcaps/<layout-run-id>/<link>.pcap   with ``experiment run --capture``: every link of
                      each layout the point built (`testbed.net.capture`)
      report/         report.md and figures, made by `testbed.report.render`

`RunData` is what an experiment's report hook gets: every point with its typed parameters,
status, validity and figures, plus `RunData.series` to pull curves out of them.

Not for: running anything (`testbed.harness.runner`) or plotting (`testbed.report`).
"""

from __future__ import annotations

import csv
import json
import os
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from testbed.harness.framework import (
    Experiment,
    Scalar,
    experiment_from_module,
    format_value,
    params_from_dict,
)

PARAMS_FILE = "params.json"
ENV_FILE = "env.json"
INDEX_FILE = "points.jsonl"
SUMMARY_FILE = "summary.json"
TABLE_FILE = "results.csv"
POINTS_DIR = "points"
RESULT_FILE = "result.json"
SAMPLES_FILE = "samples.csv"
LOG_FILE = "point.log"
CAPTURES_DIR = "pcaps"
REPORT_DIR = "report"

STATUS_OK = "ok"
STATUS_FAILED = "failed"
STATUS_INTERRUPTED = "interrupted"
STATUS_PENDING = "pending"  # never ran, or its process left no record


class RunDirError(ValueError):
    """A directory is not a run directory, or one of its files is unreadable."""


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def write_json(path: Path, data: object) -> None:
    """Write JSON atomically (a reader never sees half a file, even after a kill)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise RunDirError(f"{path} is missing: is {path.parent} a run directory?") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise RunDirError(f"{path} is unreadable: {exc}") from exc


def append_jsonl(path: Path, record: Mapping[str, object]) -> None:
    with path.open("a") as f:
        f.write(json.dumps(record) + "\n")


def point_dir(run_dir: Path, point_id: str) -> Path:
    return run_dir / POINTS_DIR / point_id


# ---------------------------------------------------------------------------------------------
# Point records and samples


def point_record(
    point: Mapping[str, Any],
    *,
    status: str,
    summary: Mapping[str, Scalar] | None = None,
    invalid_reasons: Sequence[str] = (),
    error: str | None = None,
    samples_file: str | None = None,
    elapsed_s: float | None = None,
) -> dict[str, Any]:
    """A point's record, as ``result.json``, ``points.jsonl`` and ``summary.json`` hold it.
    ``point`` is the point as params.json lists it (``point_id``, ``repeat``, ``params``)."""
    return {
        "point_id": point["point_id"],
        "repeat": point["repeat"],
        "status": status,
        "valid": status == STATUS_OK and not invalid_reasons,
        "invalid_reasons": list(invalid_reasons),
        "error": error,
        "elapsed_s": elapsed_s,
        "finished_at": utc_now(),
        "params": point["params"],
        "summary": dict(summary or {}),
        "samples": samples_file,
    }


def write_samples(path: Path, rows: Sequence[Mapping[str, Scalar]]) -> None:
    """Rows as CSV with a header row; every row must have the same columns, in any order."""
    if not rows:
        raise ValueError("no samples to write")
    header = list(rows[0])
    for i, row in enumerate(rows):
        if set(row) != set(header):
            raise ValueError(
                f"sample row {i} has columns {sorted(row)}, row 0 has {sorted(header)}"
            )
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)


def _cell(text: str) -> Scalar:
    if text == "":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"True": True, "False": False}.get(text, text)


def read_samples(path: Path) -> list[dict[str, Scalar]]:
    """The rows of a samples CSV, numbers as numbers, empty cells as None."""
    with path.open(newline="") as f:
        return [{k: _cell(v) for k, v in row.items()} for row in csv.DictReader(f)]


# ---------------------------------------------------------------------------------------------
# The run as files


def load_spec(run_dir: Path) -> dict[str, Any]:
    spec = read_json(run_dir / PARAMS_FILE)
    for key in ("experiment", "module", "run_id", "values", "points"):
        if key not in spec:
            raise RunDirError(f"{run_dir / PARAMS_FILE} has no {key!r}")
    return spec


def read_results(run_dir: Path, spec: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """point id -> the record in its result.json, for points that have a readable one."""
    results = {}
    for point in spec["points"]:
        path = point_dir(run_dir, point["point_id"]) / RESULT_FILE
        try:
            results[point["point_id"]] = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue  # never ran, or killed mid-write: the point is pending
    return results


def summary_rows(
    spec: Mapping[str, Any], results: Mapping[str, Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """One row per point in sweep order; points without a record are pending."""
    rows = []
    for point in spec["points"]:
        record = results.get(point["point_id"]) or point_record(point, status=STATUS_PENDING)
        rows.append({key: record[key] for key in (*TABLE_FIXED_COLUMNS, "params", "summary")})
    return rows


TABLE_FIXED_COLUMNS = (
    "point_id",
    "repeat",
    "status",
    "valid",
    "invalid_reasons",
    "error",
    "elapsed_s",
)
SUMMARY_COLUMN_PREFIX = "summary_"
"""Put before a summary figure's name only where it would collide with another column."""


def table_rows(rows: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[dict[str, Scalar]]]:
    """`summary_rows` flattened: the header and one dict per row. Columns: the fixed ones,
    then every parameter (as the sweep lists them), then every summary figure in the order
    first seen; a cell a row lacks (a figure of a point that never ran) stays empty."""
    params: list[str] = []
    figures: list[str] = []
    for row in rows:
        params += [k for k in row["params"] if k not in params]
        figures += [k for k in row["summary"] if k not in figures]
    taken = set(TABLE_FIXED_COLUMNS) | set(params)
    figure_columns = {k: SUMMARY_COLUMN_PREFIX + k if k in taken else k for k in figures}
    header = [*TABLE_FIXED_COLUMNS, *params, *figure_columns.values()]
    out = []
    for row in rows:
        flat: dict[str, Scalar] = {k: row[k] for k in TABLE_FIXED_COLUMNS}
        flat["invalid_reasons"] = "; ".join(row["invalid_reasons"])
        flat.update({k: row["params"].get(k) for k in params})
        flat.update({figure_columns[k]: row["summary"].get(k) for k in figures})
        out.append(flat)
    return header, out


def write_table(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    """`table_rows` as CSV with a header row (empty cells for None), written atomically."""
    header, flat = table_rows(rows)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=header)
        writer.writeheader()
        writer.writerows(flat)
    os.replace(tmp, path)


def count_statuses(rows: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    rows = list(rows)
    return {
        "n_points": len(rows),
        "n_ok": sum(r["status"] == STATUS_OK for r in rows),
        "n_invalid": sum(r["status"] == STATUS_OK and not r["valid"] for r in rows),
        "n_failed": sum(r["status"] == STATUS_FAILED for r in rows),
        "n_pending": sum(r["status"] in (STATUS_PENDING, STATUS_INTERRUPTED) for r in rows),
    }


# ---------------------------------------------------------------------------------------------
# The run as data, for reports


@dataclass(frozen=True)
class PointRecord:
    """One point of a loaded run. ``params`` is the experiment's parameter dataclass."""

    point_id: str
    repeat: int
    params: Any
    param_values: dict[str, Scalar]
    status: str
    valid: bool
    invalid_reasons: tuple[str, ...]
    summary: dict[str, Scalar]
    error: str | None
    dir: Path

    @property
    def measured(self) -> bool:
        return self.status == STATUS_OK

    def value(self, name: str) -> Scalar:
        """A parameter or a summary figure by name (a name may not be both)."""
        in_summary, in_params = name in self.summary, name in self.param_values
        if in_summary and in_params:
            raise KeyError(f"{name!r} is both a parameter and a summary figure: rename the figure")
        if in_summary:
            return self.summary[name]
        if in_params:
            return self.param_values[name]
        raise KeyError(
            f"{name!r} is neither a parameter ({', '.join(self.param_values)}) nor a "
            f"summary figure ({', '.join(self.summary) or 'none'}) of {self.point_id}"
        )

    def samples(self) -> list[dict[str, Scalar]]:
        path = self.dir / SAMPLES_FILE
        return read_samples(path) if path.exists() else []


@dataclass(frozen=True)
class Series:
    """y against x for one group of points: means over the valid repeats at each x, with
    their extremes, counts and the measurements themselves; invalid points are kept apart,
    raw, so plots can show them."""

    label: str
    key: dict[str, Scalar]
    x: list[float]
    y: list[float]
    y_min: list[float]
    y_max: list[float]
    n: list[int]
    invalid_x: list[float]
    invalid_y: list[float]
    values: list[list[float]] = field(default_factory=list)
    """Every valid measurement at each x (the means in ``y`` are theirs), so a plot can show
    each one beside the mean; empty for a series made by hand with means only."""


def _sort_key(value: Scalar) -> tuple[int, float | str]:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (0, value)
    return (1, format_value(value))


@dataclass(frozen=True)
class RunData:
    """A run as its report hook sees it."""

    dir: Path
    experiment: Experiment
    spec: dict[str, Any]
    env: dict[str, Any]
    points: list[PointRecord]

    @property
    def run_id(self) -> str:
        return self.spec["run_id"]

    @property
    def swept(self) -> list[str]:
        """The parameters given more than one value."""
        return [name for name, values in self.spec["values"].items() if len(values) > 1]

    def measured(self) -> list[PointRecord]:
        """Points that ran to the end (valid or not)."""
        return [p for p in self.points if p.measured]

    def series(self, x: str, y: str, by: Sequence[str] = ()) -> list[Series]:
        """Curves of ``y`` against ``x`` (parameters or summary figures), one per distinct
        value of the ``by`` parameters, sorted; points whose x or y is None are left out."""
        valid: dict[tuple, dict[float, list[float]]] = {}
        invalid: dict[tuple, list[tuple[float, float]]] = {}
        for p in self.measured():
            xv, yv = p.value(x), p.value(y)
            if xv is None or yv is None:
                continue
            key = tuple(p.value(b) for b in by)
            valid.setdefault(key, {})
            invalid.setdefault(key, [])
            if p.valid:
                valid[key].setdefault(float(xv), []).append(float(yv))
            else:
                invalid[key].append((float(xv), float(yv)))
        out = []
        for key in sorted(valid, key=lambda k: tuple(_sort_key(v) for v in k)):
            xs = sorted(valid[key])
            if len(by) == 1:
                label = format_value(key[0])
            else:
                label = ", ".join(f"{b}={format_value(v)}" for b, v in zip(by, key, strict=True))
            out.append(
                Series(
                    label=label,
                    key=dict(zip(by, key, strict=True)),
                    x=xs,
                    y=[statistics.fmean(valid[key][v]) for v in xs],
                    y_min=[min(valid[key][v]) for v in xs],
                    y_max=[max(valid[key][v]) for v in xs],
                    n=[len(valid[key][v]) for v in xs],
                    invalid_x=[pt[0] for pt in sorted(invalid[key])],
                    invalid_y=[pt[1] for pt in sorted(invalid[key])],
                    values=[list(valid[key][v]) for v in xs],
                )
            )
        return out


def load_run(run_dir: Path) -> RunData:
    """Read a run directory (complete or not) and find its experiment by the module recorded
    in params.json."""
    if not run_dir.is_dir():
        raise RunDirError(f"{run_dir} is not a directory")
    spec = load_spec(run_dir)
    experiment = experiment_from_module(spec["module"], spec["experiment"])
    env_path = run_dir / ENV_FILE
    env = read_json(env_path) if env_path.exists() else {}
    results = read_results(run_dir, spec)
    points = []
    for point in spec["points"]:
        record = results.get(point["point_id"]) or point_record(point, status=STATUS_PENDING)
        points.append(
            PointRecord(
                point_id=point["point_id"],
                repeat=point["repeat"],
                params=params_from_dict(experiment.params, point["params"]),
                param_values=dict(point["params"]),
                status=record["status"],
                valid=record["valid"],
                invalid_reasons=tuple(record["invalid_reasons"]),
                summary=record["summary"],
                error=record["error"],
                dir=point_dir(run_dir, point["point_id"]),
            )
        )
    return RunData(run_dir, experiment, spec, env, points)
