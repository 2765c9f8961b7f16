"""Command line of the experiment harness.

Usage::

    python -m tools.experiments run EXPERIMENT.json --out DIR [--budget_s S] [--override '{"id": value}']
    python -m tools.experiments report DIR --doc FILE [--plot FILE.png] [--check]

``run`` started again on the same ``--out`` (after a crash or ``kill -9``) skips finished runs and continues the
interrupted one from its last finished epoch.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import fire

from bundlezoo.data.checks import InputDataError
from bundlezoo.data.io import atomic_write_bytes

from .plan import load_experiment
from .report import insert, load_results, markdown
from .report import plot as draw_plot
from .runner import run_experiment


def _as_dict(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, str):
        value = json.loads(value)
    if not isinstance(value, dict):
        raise InputDataError("--override", f"must be a JSON object of config id -> value, got {value!r}")
    return value


def run(experiment: str, out: str, budget_s: float | None = None, override: Any = None) -> None:
    """Run (or continue) an experiment and write ``OUT/results.json``.

    Args:
        experiment: the experiment JSON file.
        out: output folder (runs' checkpoints, logs and state under ``OUT/runs/<name>``).
        budget_s: own wall-time budget of every run, replacing the file's.
        override: config overrides for every run, applied last (JSON object).
    """
    exp = load_experiment(experiment, budget_s=budget_s, override=_as_dict(override))
    print(f"{exp.name}: {len(exp.runs)} runs ({', '.join(r.name for r in exp.runs)}), schedule {exp.schedule}",
          flush=True)
    path = run_experiment(exp, out)
    print(markdown(load_results(path)))
    print(f"wrote {path}")


def report(results: str, doc: str | None = None, plot: str | None = None, check: bool = False) -> None:
    """Print the tables of a results JSON, or write them into ``doc`` between the experiment's markers.

    Args:
        results: a results JSON file, or the ``--out`` folder of a run.
        doc: markdown file holding ``<!-- experiment:NAME begin -->`` / ``<!-- experiment:NAME end -->``.
        plot: also draw the metric-vs-time curves to this PNG.
        check: do not write; exit 1 when ``doc`` differs from what would be written (drift check).
    """
    res = load_results(results)
    block = markdown(res)
    if doc is None:
        print(block)
    else:
        path = Path(doc)
        text = path.read_text()
        new = insert(text, res["experiment"], block, str(path))
        if check:
            if new != text:
                sys.exit(f"{path}: the tables of experiment {res['experiment']!r} differ from {results}; "
                         f"regenerate with `python -m tools.experiments report {results} --doc {doc}`")
            print(f"{path}: up to date")
        elif new != text:
            atomic_write_bytes(path, new.encode())
            print(f"wrote {path}")
    if plot is not None and not check:
        draw_plot(res, plot)
        print(f"wrote {plot}")


def main() -> None:
    """Console entry point."""
    try:
        fire.Fire({"run": run, "report": report})
    except InputDataError as e:
        sys.exit(f"InputDataError: {e}")


if __name__ == "__main__":
    main()
