"""The collection's main job: train spleen-fast-train on its synthetic phantoms until it is good, evaluate, export.

Training runs until the validation Dice reaches a target (0.85 by default) or an epoch cap, in its own folder
(``runs/demo``: models, logs, phantom data), never in the bundle folder whose ``models/model.pt`` packaging ships.
Every step goes through MONAI's bundle runner, exactly as a user would type it, so the demo also proves the
commands in the bundle README:

    python tools/run_demo.py                     # CPU- or GPU-sized defaults, chosen at run time
    python tools/run_demo.py --target 0.9        # train longer
    python tools/run_demo.py --resume            # continue a demo that was interrupted (Ctrl-C, kill)

It shows one live progress line while training and prints the measured figures at the end.
"""

from __future__ import annotations

import csv
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import fire

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "bundles" / "spleen-fast-train"
DEMO_ROOT = REPO / "runs" / "demo"

_ITER = re.compile(r"Epoch: (\d+)/(\d+), Iter: (\d+)/(\d+) -- train_loss: ([0-9.eE+-]+)")
_VAL = re.compile(r"Epoch\[(\d+)\] Metrics -- val_mean_dice: ([0-9.eE+-]+)")
_BEST = re.compile(r"Key metric: val_mean_dice best value: ([0-9.eE+-]+) at epoch: (\d+)")
_STOP = re.compile(r"stop: val_mean_dice ([0-9.eE+-]+) reached the target")


class TrainingProgress:
    """Turns the training run's log lines into one progress line (redrawn in place on a terminal, one line per
    validation otherwise) and keeps the figures the summary prints."""

    def __init__(self, target: float | None, live: bool) -> None:
        self.target, self.live = target, live
        self.start = time.perf_counter()
        self.epoch = self.max_epochs = self.iteration = self.epoch_length = 0
        self.loss: float | None = None
        self.val: tuple[int, float] | None = None
        self.best: tuple[float, int] | None = None
        self.reached_at: tuple[int, float] | None = None  # epoch, seconds since the start of training
        self.phase = "preparing data"

    def __call__(self, line: str) -> None:
        if m := _ITER.search(line):
            self.epoch, self.max_epochs, self.iteration, self.epoch_length = map(int, m.groups()[:4])
            self.loss, self.phase = float(m.group(5)), "training"
        elif "SupervisedEvaluator - INFO - Engine run resuming" in line:
            self.phase = "validating"
        elif m := _VAL.search(line):
            self.val, self.phase = (int(m.group(1)), float(m.group(2))), "training"
        elif m := _BEST.search(line):
            self.best = (float(m.group(1)), int(m.group(2)))
            if not self.live:
                print(self.render(), flush=True)
        elif _STOP.search(line):
            self.reached_at = (self.epoch, time.perf_counter() - self.start)
        else:
            return
        if self.live:
            print("\r" + self.render().ljust(110), end="", flush=True)

    def render(self) -> str:
        elapsed = int(time.perf_counter() - self.start)
        parts = [f"{elapsed // 60:02d}:{elapsed % 60:02d}", self.phase]
        if self.max_epochs:
            parts.append(f"epoch {self.epoch}/{self.max_epochs} iter {self.iteration}/{self.epoch_length}"
                         + (f" loss {self.loss:.3f}" if self.loss is not None else ""))
        if self.val:
            parts.append(f"val Dice {self.val[1]:.3f} (epoch {self.val[0]})")
        if self.best:
            parts.append(f"best {self.best[0]:.3f} @ {self.best[1]}")
        if self.target is not None:
            parts.append(f"target {self.target:g}")
        return " | ".join(parts)

    def finish(self) -> None:
        if self.live:
            print(flush=True)


def _run(args: list[str], log: Path, on_line: Callable[[str], None] | None = None) -> float:
    """Run one command, echo it, tee its output to ``log``; return its wall time in seconds.

    With ``on_line`` every output line goes to it (and only to the log); otherwise the lines worth showing are echoed.
    """
    print(f"\n$ {shlex.join(args)}", flush=True)
    start = time.perf_counter()
    with open(log, "a") as f:
        f.write(f"\n$ {shlex.join(args)}\n")
        f.flush()
        proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert proc.stdout is not None
        for line in proc.stdout:
            f.write(line)
            if on_line is not None:
                on_line(line)
            elif _worth_showing(line):
                print(line, end="", flush=True)
        code = proc.wait()
    if code != 0:
        if on_line is not None:
            print(flush=True)
        raise SystemExit(f"command failed with exit code {code}; full log: {log}")
    return time.perf_counter() - start


def _worth_showing(line: str) -> bool:
    # keep the console readable: metrics, data generation and errors
    keys = ("Key metric", "Generating", "Error", "error", "Traceback", "phantom", "%|")
    return any(k in line for k in keys) and "nvimgcodec" not in line


def _config_arg(configs: list[Path]) -> str:
    return "[" + ",".join(f"'{c}'" for c in configs) + "]"


def main(target: float | None = 0.85, epochs: int | None = None, val_interval: int | None = None,
         bundle_root: str = str(DEMO_ROOT), resume: bool = False, extra_config: str | None = None) -> None:
    """Train spleen-fast-train on synthetic phantoms until the validation Dice reaches ``target``, evaluate, export.

    Args:
        target: validation Dice (synthetic phantom, during training: argmax, no largest-component step) at which
            training stops; ``None`` trains all ``epochs``.
        epochs: the epoch cap; default 300 on CUDA, 150 on CPU. The cosine learning-rate decay spans it.
        val_interval: epochs between validations; default 5 on CUDA, 10 on CPU (a whole-volume validation pass
            costs about a minute on two cores).
        bundle_root: where models/, eval/ and data/ are written (default ``runs/demo``); never the bundle folder.
        resume: continue an interrupted demo from ``<bundle_root>/models/latest.pt`` instead of starting over.
        extra_config: a config file layered last on training and evaluation (e.g. the tests' small smoke override,
            for a quick check of the whole job).
    """
    import torch  # deferred: keeps --help fast

    root = Path(bundle_root).resolve()
    if root == BUNDLE.resolve():
        raise SystemExit(f"run_demo: {root} is the bundle folder, whose models/model.pt is what packaging ships; "
                         "choose another --bundle_root")
    cuda = torch.cuda.is_available()
    epochs = epochs if epochs is not None else (300 if cuda else 150)
    val_interval = val_interval if val_interval is not None else (5 if cuda else 10)
    configs = BUNDLE / "configs"
    (root / "eval").mkdir(parents=True, exist_ok=True)
    log = root / "eval" / "demo.log"
    common = ["--bundle_root", str(root), "--logging_file", str(configs / "logging.conf")]
    py = [sys.executable, "-m", "monai.bundle"]
    print(f"spleen-fast-train demo on {'CUDA: ' + torch.cuda.get_device_name(0) if cuda else 'CPU'} "
          f"({os.cpu_count()} cores): until validation Dice {target} or {epochs} epochs, validation every "
          f"{val_interval}; outputs in {root}; log: {log}")

    # On CPU the bundle's CPU override (smaller crops, whole-volume validation window) is layered on train.json;
    # see docs/performance.md for the measurements behind it.
    base = [configs / "train.json"] + ([] if cuda else [configs / "train_cpu.json"])
    extra = [Path(extra_config).resolve()] if extra_config else []
    # the demo folder is the demo's own: a new demo replaces the previous one's model unless it resumes it
    start = ["--resume", "true"] if resume else ["--overwrite", "true"]
    stop = [] if target is None else ["--stop_metric_target", str(target)]
    progress = TrainingProgress(target, live=sys.stdout.isatty())
    t_train = _run(py + ["run", "--config_file", _config_arg(base + extra), "--epochs", str(epochs),
                         "--val_interval", str(val_interval), *start, *stop] + common, log, progress)
    progress.finish()
    t_eval = _run(py + ["run", "--config_file", _config_arg(base + [configs / "evaluate.json"] + extra)] + common, log)
    ts_path = root / "models" / "model.ts"
    t_export = _run(py + ["ckpt_export", "network_def", "--filepath", str(ts_path),
                          "--ckpt_file", str(root / "models" / "model.pt"),
                          "--meta_file", str(configs / "metadata.json"),
                          "--config_file", str(configs / "inference.json"), "--bundle_root", str(root)], log)

    with open(root / "eval" / "val_mean_dice_raw.csv") as f:
        dice = [float(r["mean"]) for r in csv.DictReader(f)]
    mean = sum(dice) / len(dice)
    print("\n=== spleen-fast-train demo (synthetic phantom data) ===")
    if target is None:
        outcome = "no target"
    elif progress.reached_at:
        outcome = (f"validation Dice reached the target {target:g} at epoch {progress.reached_at[0]}, "
                   f"{progress.reached_at[1]:.0f} s into training")
    else:
        outcome = f"validation Dice did NOT reach the target {target:g} within {epochs} epochs"
    best = f"best validation Dice {progress.best[0]:.4f} at epoch {progress.best[1]}" if progress.best else \
        "no validation ran"
    print(f"training: {outcome}; {best} (argmax, during training)")
    print(f"evaluation: mean spleen Dice {mean:.4f} on {len(dice)} held-out synthetic phantoms "
          f"(min {min(dice):.4f}, max {max(dice):.4f}), largest component, original image space")
    print(f"wall time: train {t_train:.0f} s ({progress.epoch} epochs), evaluate {t_eval:.0f} s, "
          f"export {t_export:.0f} s, total {t_train + t_eval + t_export:.0f} s")
    print(f"model:       {root / 'models' / 'model.pt'} (resume checkpoint: {root / 'models' / 'latest.pt'})")
    print(f"TorchScript: {ts_path}")
    print(f"per-case Dice CSV: {root / 'eval' / 'val_mean_dice_raw.csv'}")
    print(f"TensorBoard: tensorboard --logdir {root / 'eval'}")
    print(f"phantom data: {root / 'data' / 'phantom_Task09_Spleen'}")


if __name__ == "__main__":
    fire.Fire(main)
