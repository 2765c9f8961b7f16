"""Run an experiment's arms through MONAI's ``ConfigWorkflow`` and record what each run measured.

Each run is a bundle built by ``ConfigWorkflow(workflow_type="train")`` from its config stack and overrides and
driven through the workflow's standard properties (``trainer``, ``evaluator``, ``train_handlers``,
``train_preprocessing``): nothing is read through parser ids or private attributes. The harness only attaches
handlers, which record per epoch the mean training loss, the validation key metric, the training and validation
wall time, and the run's own clock.

Own time: every run has its own clock, running while that run builds (data caching included) and trains. With the
``interleaved`` schedule the runs take turns epoch by epoch in one process (machine drift and other users' load hit
all alike); with ``sequential`` each run trains to its end before the next is built.

Resume: after every epoch a run's state (network, optimizer, learning-rate scheduler, AMP scaler, trainer epoch and
iteration, the torch/numpy/python random generators, the random transforms' generators, its clock and curve) goes to
``runs/<name>/state.pt`` (tensors and plain containers: ``torch.load(..., weights_only=True)``), then the results
JSON is rewritten. Started again on the same ``--out`` after a crash or ``kill -9``, finished runs are skipped and an
interrupted one continues from its last finished epoch; started again with a larger ``--budget_s``, runs stopped by
their budget go on.
"""

from __future__ import annotations

import gc
import io
import json
import random
import shlex
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bundlezoo.data.checks import InputDataError
from bundlezoo.data.io import atomic_write_bytes, atomic_write_json

from tools.provenance import code_version, machine_info

from .plan import Experiment, RunSpec, repo_relative
from .report import comparisons, summarise_curve

RESULTS = "results.json"
STATE = "state.pt"


def data_kind(dataset_dir: str) -> str:
    """ "synthetic phantom" for a data set the phantom engine wrote, else the folder (e.g. a real MSD task)."""
    try:
        meta = json.loads((Path(dataset_dir) / "dataset.json").read_text())
    except (OSError, ValueError):
        return str(dataset_dir)
    text = f"{meta.get('description', '')} {meta.get('reference', '')}".lower()
    return "synthetic phantom" if "phantom" in text else str(dataset_dir)


class MemoryMonitor:
    """Samples the resident memory (RSS) of this process and its children and keeps the peak per active run.

    All runs live in one process, so a peak includes what the other runs hold at that moment (with the interleaved
    schedule, e.g. another run's data cache); DataLoader worker processes count for the run that started them, and a
    page shared with forked workers counts once per process.
    """

    def __init__(self, interval: float = 0.2) -> None:
        import psutil

        self._proc = psutil.Process()
        self.interval = interval
        self.active: str | None = None
        self.peak_rss_mb: dict[str, float] = {}
        self._stop = threading.Event()
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        """Add the current RSS to the active run's peak."""
        label = self.active
        if label is None:
            return
        total = 0
        for proc in [self._proc] + self._proc.children(recursive=True):
            try:
                total += proc.memory_info().rss
            except Exception:  # a worker may exit between listing and reading
                pass
        self.peak_rss_mb[label] = max(self.peak_rss_mb.get(label, 0.0), total / 2**20)

    def switch(self, label: str | None) -> None:
        """Make ``label`` the active run (None: nobody)."""
        self.sample()
        self.active = label
        self.sample()

    def close(self) -> None:
        """Stop sampling."""
        self.switch(None)
        self._stop.set()


def _np_state_plain(state: tuple) -> tuple:
    import torch

    name, keys, pos, has_gauss, cached = state
    return name, torch.as_tensor(keys.astype("int64")), int(pos), int(has_gauss), float(cached)


def _np_state_back(state: tuple) -> tuple:
    import numpy as np

    name, keys, pos, has_gauss, cached = state
    return name, keys.numpy().astype(np.uint32), pos, has_gauss, cached


class ArmRun:
    """One run: its workflow, clock, curve and saved state.

    Args:
        spec: the run (arm, grid point, configs, overrides, budget).
        out_dir: the experiment's output folder; the run writes under ``out_dir/runs/<name>``.
        thresholds: metric values whose first crossing is timed.
        stop_at: stop once the metric reaches this (None: never).
        memory: the shared memory monitor.
    """

    def __init__(self, spec: RunSpec, out_dir: Path, thresholds: list[float], stop_at: float | None,
                 memory: MemoryMonitor) -> None:
        self.spec = spec
        self.dir = out_dir / "runs" / spec.name
        self.thresholds = thresholds
        self.stop_at = stop_at
        self.memory = memory
        self.own_s = 0.0
        self.setup_s = 0.0
        self.curve: list[dict[str, Any]] = []
        self.stopped: str | None = None
        self.peak_rss_mb = 0.0
        self.info: dict[str, Any] = {}
        self.workflow: Any = None
        self._turn_t0 = 0.0
        self._epoch: dict[str, float] = {}
        self._pause_after_epoch = False
        self.on_epoch: Any = None  # called after each epoch's state is saved (the results file is rewritten)

    # -- clock ---------------------------------------------------------------------------------------------------
    def now(self) -> float:
        """Own time so far, the running turn included."""
        return self.own_s + (time.perf_counter() - self._turn_t0 if self._turn_t0 else 0.0)

    def _start(self) -> None:
        self.memory.switch(self.spec.name)
        self._turn_t0 = time.perf_counter()

    def _stop(self) -> None:
        self.own_s += time.perf_counter() - self._turn_t0
        self._turn_t0 = 0.0
        self.memory.switch(None)
        self.peak_rss_mb = max(self.peak_rss_mb, self.memory.peak_rss_mb.get(self.spec.name, 0.0))

    # -- build ---------------------------------------------------------------------------------------------------
    def build(self) -> None:
        """Build the workflow (the data caching it does is charged to this run) and load the saved state, if any."""
        from monai.bundle import ConfigWorkflow

        self.dir.mkdir(parents=True, exist_ok=True)
        state = self._load_state()
        if self.stopped:  # killed after its last epoch was saved, before the results said so
            return
        self._start()
        configs_dir = Path(self.spec.configs[0]).parent
        meta = configs_dir / "metadata.json"
        logging_conf = configs_dir / "logging.conf"
        overrides = {"ckpt_dir": str(self.dir / "models"), "output_dir": str(self.dir / "eval"),
                     **self.spec.overrides}
        wf = ConfigWorkflow(config_file=self.spec.configs, meta_file=str(meta) if meta.is_file() else None,
                            logging_file=str(logging_conf) if logging_conf.is_file() else False,
                            workflow_type="train", **overrides)
        wf.initialize()
        trainer, evaluator = wf.trainer, wf.evaluator
        if evaluator is None:
            raise InputDataError(self.spec.configs[-1], f"run {self.spec.name!r} has no evaluator; the harness "
                                 "times the validation key metric")
        self.workflow = wf
        self.info = {"n_train": len(wf.train_dataset), "n_validation": len(wf.val_dataset),
                     "val_interval": wf.val_interval, "max_epochs": trainer.state.max_epochs,
                     "device": str(wf.device), "data": data_kind(str(wf.dataset_dir))}
        self._attach(trainer, evaluator)
        if state is not None:
            self._restore(state)
        self._stop()
        if state is None:
            self.setup_s = self.own_s

    def _attach(self, trainer: Any, evaluator: Any) -> None:
        from ignite.engine import Events
        from monai.handlers import from_engine

        loss_of = from_engine(["loss"], first=True)

        def epoch_started(engine: Any) -> None:
            self._epoch = {"t0": time.perf_counter(), "val_s": 0.0, "loss_sum": 0.0, "steps": 0}

        def iteration_completed(engine: Any) -> None:
            self._epoch["loss_sum"] += float(loss_of(engine.state.output))
            self._epoch["steps"] += 1

        def val_started(engine: Any) -> None:
            self._epoch["v0"] = time.perf_counter()

        def val_completed(engine: Any) -> None:
            self._epoch["val_s"] += time.perf_counter() - self._epoch["v0"]
            self._epoch["metric"] = float(engine.state.metrics[engine.state.key_metric_name])

        trainer.add_event_handler(Events.EPOCH_STARTED, epoch_started)
        trainer.add_event_handler(Events.ITERATION_COMPLETED, iteration_completed)
        evaluator.add_event_handler(Events.STARTED, val_started)
        evaluator.add_event_handler(Events.COMPLETED, val_completed)
        # attached after the bundle's handlers, so it runs after the epoch's ValidationHandler and LR step
        trainer.add_event_handler(Events.EPOCH_COMPLETED, self._epoch_completed)

    def _epoch_completed(self, engine: Any) -> None:
        e = self._epoch
        wall = time.perf_counter() - e["t0"]
        metric = e.get("metric")
        self.curve.append({
            "epoch": int(engine.state.epoch),
            "time_s": round(self.now(), 3),
            "train_s": round(wall - e["val_s"], 3),
            "val_s": round(e["val_s"], 3) if metric is not None else None,
            "loss": round(e["loss_sum"] / max(e["steps"], 1), 6),
            "metric": None if metric is None else round(metric, 5),
        })
        shown = "" if metric is None else f" val metric {metric:.4f}"
        print(f"[{self.spec.name}] epoch {engine.state.epoch} loss {self.curve[-1]['loss']:.4f}{shown} "
              f"own time {self.now():.1f} s", flush=True)
        if self.stop_at is not None and metric is not None and metric >= self.stop_at:
            self.stopped = f"reached {self.stop_at}"
        elif self.spec.budget_s is not None and self.now() >= self.spec.budget_s:
            self.stopped = "budget"
        elif engine.state.epoch >= engine.state.max_epochs:
            self.stopped = "max_epochs"
        self._save_state(engine)
        if self.on_epoch is not None:
            self.on_epoch()
        if self.stopped and engine.state.epoch < engine.state.max_epochs:
            engine.terminate()
        elif self._pause_after_epoch and not self.stopped:
            engine.terminate(skip_completed=True)  # its turn is over; the next run() resumes at the next epoch

    # -- state ---------------------------------------------------------------------------------------------------
    def _random_transforms(self) -> list[Any]:
        from monai.transforms import Compose, Randomizable

        pre = self.workflow.train_preprocessing
        flat = pre.flatten().transforms if isinstance(pre, Compose) else [pre]
        return [t for t in flat if isinstance(t, Randomizable)]

    def _scheduler(self) -> Any:
        """The learning-rate scheduler of the first train handler that holds one (MONAI's LrScheduleHandler)."""
        for h in self.workflow.train_handlers or []:
            if getattr(h, "lr_scheduler", None) is not None:
                return h.lr_scheduler
        return None

    def _save_state(self, trainer: Any) -> None:
        import numpy as np
        import torch

        sched, scaler = self._scheduler(), getattr(trainer, "scaler", None)
        state = {
            "network": trainer.network.state_dict(),
            "optimizer": trainer.optimizer.state_dict(),
            "lr_scheduler": sched.state_dict() if sched is not None else None,
            "scaler": scaler.state_dict() if scaler is not None else None,
            "trainer": {"epoch": int(trainer.state.epoch), "iteration": int(trainer.state.iteration),
                        "epoch_length": int(trainer.state.epoch_length), "max_epochs": int(trainer.state.max_epochs)},
            "rng": {"torch": torch.get_rng_state(), "numpy": _np_state_plain(np.random.get_state()),
                    "python": random.getstate(),
                    "transforms": [_np_state_plain(t.R.get_state()) for t in self._random_transforms()]},
            "own_s": self.now(), "setup_s": self.setup_s, "curve": self.curve, "stopped": self.stopped,
            "info": self.info,
            "peak_rss_mb": max(self.peak_rss_mb, self.memory.peak_rss_mb.get(self.spec.name, 0.0)),
        }
        buf = io.BytesIO()
        torch.save(state, buf)
        atomic_write_bytes(self.dir / STATE, buf.getvalue())

    def _load_state(self) -> dict[str, Any] | None:
        import torch

        path = self.dir / STATE
        if not path.is_file():
            return None
        state = torch.load(path, map_location="cpu", weights_only=True)
        self.own_s, self.setup_s = float(state["own_s"]), float(state["setup_s"])
        self.curve, self.stopped, self.info = list(state["curve"]), state["stopped"], dict(state["info"])
        if self.stopped == "budget" and (self.spec.budget_s is None or self.spec.budget_s > self.own_s):
            self.stopped = None  # given more own time (a larger --budget_s), a run stopped by its budget goes on
        self.peak_rss_mb = float(state["peak_rss_mb"])
        return state

    def _restore(self, state: dict[str, Any]) -> None:
        import numpy as np
        import torch

        trainer = self.workflow.trainer
        trainer.network.load_state_dict(state["network"])
        trainer.optimizer.load_state_dict(state["optimizer"])
        sched, scaler = self._scheduler(), getattr(trainer, "scaler", None)
        if sched is not None and state["lr_scheduler"] is not None:
            sched.load_state_dict(state["lr_scheduler"])
        if scaler is not None and state["scaler"] is not None:
            scaler.load_state_dict(state["scaler"])
        t = state["trainer"]
        trainer.state.epoch, trainer.state.iteration = t["epoch"], t["iteration"]
        trainer.state.epoch_length, trainer.state.max_epochs = t["epoch_length"], t["max_epochs"]
        rng = state["rng"]
        torch.set_rng_state(rng["torch"])
        np.random.set_state(_np_state_back(rng["numpy"]))
        random.setstate(rng["python"])
        for tr, s in zip(self._random_transforms(), rng["transforms"]):
            tr.R.set_state(_np_state_back(s))
        print(f"[{self.spec.name}] resuming after epoch {t['epoch']} at {self.own_s:.1f} s own time", flush=True)

    # -- running -------------------------------------------------------------------------------------------------
    def turn(self, one_epoch: bool) -> None:
        """Train until the run stops (or, with ``one_epoch``, for one epoch), on this run's clock."""
        trainer = self.workflow.trainer
        self._pause_after_epoch = one_epoch
        self._start()
        try:
            if trainer.state.epoch >= trainer.state.max_epochs:
                self.stopped = self.stopped or "max_epochs"
            else:
                trainer.run()
                if not one_epoch:
                    self.stopped = self.stopped or "max_epochs"
        finally:
            self._stop()

    def release(self) -> None:
        """Drop the workflow (its cached data and network) once the run is over."""
        self.workflow = None
        gc.collect()

    def summary(self) -> dict[str, Any]:
        """What the run measured, for the results JSON."""
        return {
            **self.spec.as_dict(),
            "status": "done" if self.stopped else "running",
            "stopped_because": self.stopped, **self.info,
            "own_time_s": round(self.own_s, 2), "setup_s": round(self.setup_s, 2),
            "peak_rss_mb": round(self.peak_rss_mb, 1),
            **summarise_curve(self.curve, self.thresholds), "curve": self.curve,
        }


def _finished(summary: dict[str, Any] | None, spec: RunSpec) -> bool:
    """Whether a run recorded in the results needs no more training under ``spec`` (its budget may have grown)."""
    if summary is None or summary.get("status") != "done":
        return False
    grown = summary.get("stopped_because") == "budget" and (spec.budget_s is None or spec.budget_s > summary["own_time_s"])
    return not grown


def run_experiment(exp: Experiment, out: str | Path) -> Path:
    """Run every run of ``exp`` not yet finished under ``out`` and write ``out/results.json`` after each epoch.

    Args:
        exp: the loaded experiment.
        out: output folder; holding an earlier (interrupted) sitting of the same experiment, it is continued.

    Returns:
        The results file.

    Raises:
        InputDataError: ``out`` holds results of a different plan.
    """
    out_dir = Path(out).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    results_path = out_dir / RESULTS
    plan = {r.name: r.as_dict() for r in exp.runs}
    # the budget may grow between sittings (a run stopped by its budget then goes on); anything else is another plan
    same_plan = {n: {k: v for k, v in r.items() if k != "budget_s"} for n, r in plan.items()}
    sitting = {"command": "python -m tools.experiments " + shlex.join(sys.argv[1:]), "code": code_version(), "machine": machine_info(),
               "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if results_path.is_file():
        results = json.loads(results_path.read_text())
        earlier = {n: {k: v for k, v in r.items() if k != "budget_s"} for n, r in results.get("plan", {}).items()}
        if earlier != same_plan:
            raise InputDataError(results_path, f"holds another plan than {exp.path}; use a new --out")
        results["plan"] = plan
        results["sittings"].append(sitting)
    else:
        results = {"experiment": exp.name, "description": exp.description, "experiment_file": repo_relative(exp.path),
                   "bundle": repo_relative(exp.bundle), "schedule": exp.schedule, "thresholds": exp.thresholds,
                   "stop_at": exp.stop_at, "compare": [list(c) for c in exp.compare], "plan": plan,
                   "sittings": [sitting], "runs": {}}
    memory = MemoryMonitor()
    runs = [ArmRun(spec, out_dir, exp.thresholds, exp.stop_at, memory) for spec in exp.runs]
    pending = [r for r in runs if not _finished(results["runs"].get(r.spec.name), r.spec)]

    def write() -> None:
        for r in runs:
            if r.info:
                results["runs"][r.spec.name] = r.summary()
        results["comparisons"] = comparisons(results)
        results["updated"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        atomic_write_json(results_path, results)

    for run in runs:
        run.on_epoch = write
    if exp.schedule == "sequential":
        for run in pending:
            run.build()
            if not run.stopped:
                run.turn(one_epoch=False)
            write()
            run.release()
    else:
        for run in pending:
            run.build()
        write()
        while any(not r.stopped for r in pending):
            for run in pending:
                if not run.stopped:
                    run.turn(one_epoch=True)
                    if run.stopped:
                        run.release()
    memory.close()
    write()
    return results_path
