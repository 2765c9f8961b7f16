"""Experiment files: read one, check it, and expand its grid into the runs the harness trains.

An experiment file is JSON::

    {
        "name": "fast_vs_regular",
        "description": "what the experiment asks",
        "bundle": "..",                          # the bundle folder, relative to this file
        "configs": ["configs/train.json"],       # config stack every arm starts from, relative to the bundle
        "overrides": {"phantom#n": 8},           # config overrides every arm gets
        "arms": {
            "fast": {"configs": ["configs/train_cpu.json"]},
            "regular": {"configs": ["configs/regular.json"], "overrides": {"val_interval": 2}}
        },
        "grid": {"seed": [0, 1]},                # every arm runs once per combination (cartesian product)
        "thresholds": [0.8, 0.9],                # validation key metric values whose first crossing is timed
        "budget_s": 600,                         # own wall time per run (optional; arms may set their own)
        "stop_at": 0.9,                          # a run stops once its metric reaches this (optional)
        "schedule": "interleaved",               # or "sequential"
        "compare": [["regular", "fast"]]         # time-to-threshold ratios a/b, per grid point
    }

Runs are named ``arm`` (no grid) or ``arm[id=value,...]``; a run's overrides are ``bundle_root`` (the bundle
folder), the experiment's, then the arm's,
then its grid point's, then the command line's ``--override``.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bundlezoo.data.checks import InputDataError

SCHEDULES = ("interleaved", "sequential")
REPO_ROOT = Path(__file__).resolve().parents[2]
_TOP_KEYS = {"name", "description", "bundle", "configs", "overrides", "arms", "grid", "thresholds", "budget_s",
             "stop_at", "schedule", "compare"}
_ARM_KEYS = {"configs", "overrides", "budget_s", "description"}


@dataclass(frozen=True)
class RunSpec:
    """One training run of an experiment: an arm at one grid point.

    Args:
        name: unique run name, ``arm`` or ``arm[id=value,...]``.
        arm: the arm's name.
        point: the grid point, config id -> value.
        configs: absolute paths of the config files, in the order they are layered.
        overrides: config id -> value, applied after the files.
        budget_s: own wall-time budget in seconds (None: none).
    """

    name: str
    arm: str
    point: dict[str, Any]
    configs: list[str]
    overrides: dict[str, Any]
    budget_s: float | None

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON form, recorded in the results so a restart can tell whether the plan changed."""
        return {"arm": self.arm, "point": self.point, "configs": [repo_relative(c) for c in self.configs],
                "overrides": {k: repo_relative(v) if k == "bundle_root" else v for k, v in self.overrides.items()},
                "budget_s": self.budget_s}


@dataclass
class Experiment:
    """A parsed experiment file (see the module docstring) and its expanded runs."""

    path: Path
    name: str
    description: str
    bundle: Path
    thresholds: list[float]
    stop_at: float | None
    schedule: str
    compare: list[tuple[str, str]]
    raw: dict[str, Any]
    runs: list[RunSpec] = field(default_factory=list)

    def grid_points(self) -> list[dict[str, Any]]:
        """The grid's points in run order (one empty point without a grid)."""
        grid = self.raw.get("grid") or {}
        return [dict(zip(grid, values)) for values in itertools.product(*grid.values())]


def repo_relative(path: str | Path) -> str:
    """``path`` relative to the repository when inside it, so recorded results do not name one machine's checkout."""
    p = Path(path)
    return str(p.relative_to(REPO_ROOT)) if p.is_relative_to(REPO_ROOT) else str(p)


def run_name(arm: str, point: dict[str, Any]) -> str:
    """``arm`` or ``arm[id=value,...]``: the name a run is stored and reported under."""
    if not point:
        return arm
    return arm + "[" + ",".join(f"{k}={json.dumps(v, separators=(',', ':'))}" for k, v in point.items()) + "]"


def _fail(path: Path, problem: str) -> InputDataError:
    return InputDataError(path, problem)


def _configs(path: Path, bundle: Path, files: Any, where: str) -> list[str]:
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        raise _fail(path, f"{where}: 'configs' must be a list of file names")
    out = []
    for f in files:
        p = (bundle / f).resolve()
        if not p.is_file():
            raise _fail(path, f"{where}: config file {p} does not exist")
        out.append(str(p))
    return out


def load_experiment(path: str | Path, budget_s: float | None = None, override: dict[str, Any] | None = None) -> Experiment:
    """Read and check an experiment file and expand its grid.

    Args:
        path: the experiment JSON file.
        budget_s: replaces every run's own wall-time budget (the command line's ``--budget_s``).
        override: config overrides applied to every run after all others (the command line's ``--override``).

    Raises:
        InputDataError: the file is missing, not JSON, or names unknown keys, missing files or bad values.
    """
    path = Path(path).resolve()
    try:
        raw = json.loads(path.read_text())
    except OSError as e:
        raise _fail(path, f"cannot read the experiment file ({e.strerror})") from None
    except ValueError as e:
        raise _fail(path, f"not valid JSON ({e})") from None
    if not isinstance(raw, dict):
        raise _fail(path, "an experiment file must hold a JSON object")
    unknown = set(raw) - _TOP_KEYS
    if unknown:
        raise _fail(path, f"unknown keys {sorted(unknown)} (allowed: {sorted(_TOP_KEYS)})")
    arms = raw.get("arms")
    if not isinstance(arms, dict) or not arms:
        raise _fail(path, "'arms' must map at least one arm name to its configs and overrides")
    bundle = (path.parent / raw.get("bundle", ".")).resolve()
    if not bundle.is_dir():
        raise _fail(path, f"bundle folder {bundle} does not exist")
    grid = raw.get("grid") or {}
    if not isinstance(grid, dict) or not all(isinstance(v, list) and v for v in grid.values()):
        raise _fail(path, "'grid' must map config ids to non-empty lists of values")
    thresholds = raw.get("thresholds", [])
    if not isinstance(thresholds, list) or not all(isinstance(t, (int, float)) for t in thresholds):
        raise _fail(path, "'thresholds' must be a list of numbers")
    schedule = raw.get("schedule", "interleaved")
    if schedule not in SCHEDULES:
        raise _fail(path, f"'schedule' must be one of {SCHEDULES}, got {schedule!r}")
    compare = raw.get("compare", [])
    if not isinstance(compare, list) or not all(isinstance(c, list) and len(c) == 2 and set(c) <= set(arms)
                                                 for c in compare):
        raise _fail(path, f"'compare' must be a list of [arm, arm] pairs naming arms of {sorted(arms)}")

    base = _configs(path, bundle, raw.get("configs", []), "top level")
    exp = Experiment(path=path, name=str(raw.get("name", path.stem)), description=str(raw.get("description", "")),
                     bundle=bundle, thresholds=[float(t) for t in thresholds], stop_at=raw.get("stop_at"),
                     schedule=schedule, compare=[(a, b) for a, b in compare], raw=raw)
    for point in exp.grid_points():
        for arm, spec in arms.items():
            if not isinstance(spec, dict) or set(spec) - _ARM_KEYS:
                raise _fail(path, f"arm {arm!r}: must be an object with keys among {sorted(_ARM_KEYS)}")
            files = base + _configs(path, bundle, spec.get("configs", []), f"arm {arm!r}")
            if not files:
                raise _fail(path, f"arm {arm!r}: no config files")
            arm_budget = spec.get("budget_s", raw.get("budget_s"))
            exp.runs.append(RunSpec(
                name=run_name(arm, point), arm=arm, point=point, configs=files,
                overrides={"bundle_root": str(bundle), **raw.get("overrides", {}), **spec.get("overrides", {}),
                           **point, **(override or {})},
                budget_s=float(budget_s) if budget_s is not None else (None if arm_budget is None else float(arm_budget)),
            ))
    return exp
