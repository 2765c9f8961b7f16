"""The collection's main job: train spleen-fast-train on its embedded synthetic phantoms, evaluate, export.

Every step goes through MONAI's bundle runner, exactly as a user would type it, so the demo also proves the
commands in the bundle README:

    python tools/run_demo.py                 # CPU- or GPU-sized defaults, chosen at run time
    python tools/run_demo.py --epochs 300    # the full fast-training schedule

It prints the validation Dice (synthetic phantom), the wall time of each step and where the outputs are.
"""

from __future__ import annotations

import csv
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import fire

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "bundles" / "spleen-fast-train"


def _run(args: list[str], log: Path) -> float:
    """Run one command, echo it, tee its output to ``log``; return its wall time in seconds."""
    print(f"\n$ {shlex.join(args)}", flush=True)
    start = time.perf_counter()
    with open(log, "a") as f:
        f.write(f"\n$ {shlex.join(args)}\n")
        f.flush()
        proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert proc.stdout is not None
        for line in proc.stdout:
            f.write(line)
            if _worth_showing(line):
                print(line, end="", flush=True)
        code = proc.wait()
    if code != 0:
        raise SystemExit(f"command failed with exit code {code}; full log: {log}")
    return time.perf_counter() - start


def _worth_showing(line: str) -> bool:
    # keep the console readable: epoch summaries, metrics, data generation and errors
    keys = ("Epoch[", "Key metric", "Generating", "Error", "error", "Traceback", "phantom", "%|")
    return any(k in line for k in keys) and "nvimgcodec" not in line


def main(epochs: int | None = None, val_interval: int | None = None, bundle_root: str = str(BUNDLE)) -> None:
    """Train, evaluate and export spleen-fast-train on its embedded synthetic phantom data.

    Args:
        epochs: training epochs; default 300 (the full schedule) on CUDA, 20 on CPU (a short run: the Dice it
            reaches is far from converged; pass more epochs for a real model).
        val_interval: epochs between validations; default 5 on CUDA, 10 on CPU (a whole-volume validation pass
            costs minutes on two cores).
        bundle_root: where models/, eval/ and data/ are written (default: the bundle folder itself).
    """
    import torch  # deferred: keeps --help fast

    cuda = torch.cuda.is_available()
    epochs = epochs if epochs is not None else (300 if cuda else 20)
    val_interval = val_interval if val_interval is not None else (5 if cuda else 10)
    root = Path(bundle_root).resolve()
    configs = BUNDLE / "configs"
    (root / "eval").mkdir(parents=True, exist_ok=True)
    log = root / "eval" / "demo.log"
    common = ["--bundle_root", str(root), "--logging_file", str(configs / "logging.conf")]
    py = [sys.executable, "-m", "monai.bundle"]
    print(f"spleen-fast-train demo on {'CUDA: ' + torch.cuda.get_device_name(0) if cuda else 'CPU'} "
          f"({os.cpu_count()} cores); {epochs} epochs, validation every {val_interval}; log: {log}")

    # On CPU the bundle's CPU override (smaller crops, whole-volume validation window) is layered on train.json;
    # see docs/performance.md for the measurements behind it.
    train_configs = [configs / "train.json"] + ([] if cuda else [configs / "train_cpu.json"])
    config_arg = "[" + ",".join(f"'{c}'" for c in train_configs) + "]"
    t_train = _run(py + ["run", "--config_file", config_arg, "--epochs", str(epochs),
                         "--val_interval", str(val_interval)] + common, log)
    eval_configs = train_configs + [configs / "evaluate.json"]
    t_eval = _run(py + ["run", "--config_file", "[" + ",".join(f"'{c}'" for c in eval_configs) + "]"] + common, log)
    ts_path = root / "models" / "model.ts"
    t_export = _run(py + ["ckpt_export", "network_def", "--filepath", str(ts_path),
                          "--ckpt_file", str(root / "models" / "model.pt"),
                          "--meta_file", str(configs / "metadata.json"),
                          "--config_file", str(configs / "inference.json"), "--bundle_root", str(root)], log)

    rows = list(csv.DictReader(open(root / "eval" / "val_mean_dice_raw.csv")))
    dice = [float(r["mean"]) for r in rows]
    mean = sum(dice) / len(dice)
    print("\n=== spleen-fast-train demo (synthetic phantom data) ===")
    print(f"mean spleen Dice on {len(dice)} held-out synthetic phantoms: {mean:.4f} "
          f"(min {min(dice):.4f}, max {max(dice):.4f}), original image space")
    print(f"wall time: train {t_train:.0f} s ({epochs} epochs), evaluate {t_eval:.0f} s, export {t_export:.0f} s, "
          f"total {t_train + t_eval + t_export:.0f} s")
    print(f"model:       {root / 'models' / 'model.pt'}")
    print(f"TorchScript: {ts_path}")
    print(f"per-case Dice CSV: {root / 'eval' / 'val_mean_dice_raw.csv'}")
    print(f"TensorBoard: tensorboard --logdir {root / 'eval'}")
    print(f"phantom data: {root / 'data' / 'phantom_Task09_Spleen'}")


if __name__ == "__main__":
    fire.Fire(main)
