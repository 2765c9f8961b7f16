"""spleen-fast-train benchmark: the regular recipe against the bundle's fast recipe, side by side, time to Dice.

Both recipes train on the same data (the bundle's own seeded train/validation split, read through the bundle's
``train#datalist`` / ``validate#datalist``), from the same seed, and validate on the same cases every
``val_interval`` epochs (the fast config's value, used for both). They run in one process, interleaved epoch by
epoch (one fast epoch, then one regular epoch, ...), so machine drift and other users' load hit both alike; each
recipe is charged only its own wall time, and the fast recipe's data caching counts for it.

* **regular** — MONAI's spleen segmentation tutorial, written out here: ``Dataset`` + ``DataLoader`` with worker
  processes and no caching, load → channel first → HU window → crop foreground → RAS → spacing → random pos/neg
  crops, batch 2, ``DiceLoss(to_onehot_y, softmax)``, ``Adam`` lr 1e-4, fp32, the bundle's UNet definition,
  sliding-window validation (tutorial defaults).
* **fast** — the bundle itself: ``configs/train.json`` (plus ``configs/train_cpu.json`` when running on CPU, unless
  ``--configs`` says otherwise) parsed with ``monai.bundle.ConfigParser``; ``train#trainer`` and
  ``validate#evaluator`` are run unchanged, only timing handlers are attached.

Usage::

    python tools/bench_spleen.py bench --budget_s 1200 --out runs/bench        # results.json + dice_vs_time.png
    python tools/bench_spleen.py resume --out runs/bench --budget_s 20000      # regular recipe goes on from its state
    python tools/bench_spleen.py regular_errors --out runs/bench               # its misses and false positives, per case
    python tools/bench_spleen.py checkpoints --epochs 150 --stop_epoch 100       # Dice per saved checkpoint, per case
    python tools/bench_spleen.py profile --epochs 2                             # where a fast iteration's time goes
    python tools/bench_spleen.py candidates --iterations 3                      # CPU speed-up candidates, measured
    python tools/bench_spleen.py micro                                          # UNet step: fp32/channels-last/bf16
    python tools/bench_spleen.py report --results R.json --profile_json P.json  # docs/performance.md from the JSONs

The regular recipe is slow enough on CPU that settling a 10x claim takes longer than one sitting. So the benchmark
saves the regular recipe's state (weights, optimizer, random generator, own clock and curve) after each of its
epochs, and writes ``results.json`` as soon as the fast recipe is done and again after every later regular epoch: a
run that is cut off keeps what it measured, and ``resume`` continues the regular recipe alone from its last epoch up
to a new own-time budget. Only the regular recipe's own time is charged, so a pause between sittings costs it nothing;
the resumes are listed in ``results.json``.

``--override '{"roi_size": [64, 64, 64]}'`` applies config overrides to both recipes' shared settings (pixdim,
HU window, crop and validation ROI sizes) and to the fast recipe; ``--fast_override`` to the fast recipe only.
Every number written on the default data is measured on **synthetic phantoms**, not patient data.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple

import fire


from bundlezoo.data.io import atomic_write_bytes

REPO_ROOT = Path(__file__).resolve().parents[1]
BUNDLE = REPO_ROOT / "bundles" / "spleen-fast-train"
THRESHOLDS = (0.80, 0.90, 0.95)
DEFAULT_N_CASES = 32  # the bundle's embedded default: 24 train / 8 validation with the seeded split
# `report` regenerates its performance page above this line and keeps everything from it on (hand-written notes)
NOTES_MARKER = "<!-- hand-written notes below: `bench_spleen.py report` keeps them -->"
# What both recipes do to a validation prediction after the argmax, before Dice. "largest_component" keeps the
# largest connected spleen component, as the bundle's inference.json and evaluate.json do, so the benchmark's Dice is
# the Dice a user of the bundle gets; "none" scores the raw argmax, as the bundle's validation during training does.
POSTPROCESS = {
    "largest_component": "argmax, then keep the largest connected spleen component (as inference.json/evaluate.json)",
    "none": "argmax only (as the bundle's validation during training)",
}


def _largest_component() -> Any:
    """The bundle's largest-component step, on a one-hot (background, spleen) prediction."""
    from monai.transforms import KeepLargestConnectedComponent

    return KeepLargestConnectedComponent(applied_labels=[1], is_onehot=True)


def _fast_validation_postprocessing(postprocess: str) -> dict[str, Any]:
    """Config overrides giving the fast recipe's evaluator the validation postprocessing ``postprocess``."""
    if postprocess not in POSTPROCESS:
        raise ValueError(f"--postprocess must be one of {sorted(POSTPROCESS)}, got {postprocess!r}")
    if postprocess == "none":
        return {}  # train.json validates on the raw argmax already
    # train#postprocessing (softmax, argmax, one-hot pred and label), then the largest-component step on "pred"
    return {
        "validate#postprocessing": "$monai.transforms.Compose([@train#postprocessing, "
        "monai.transforms.KeepLargestConnectedComponentd(keys='pred', applied_labels=[1], is_onehot=True)])"
    }


# ----------------------------------------------------------------------------------------------------------------
# small utilities


class Stopwatch:
    """Accumulates the wall time of the intervals between ``start()`` and ``stop()``."""

    def __init__(self) -> None:
        self.total = 0.0
        self._t0: float | None = None

    def start(self) -> None:
        if self._t0 is None:
            self._t0 = time.perf_counter()

    def stop(self) -> None:
        if self._t0 is not None:
            self.total += time.perf_counter() - self._t0
            self._t0 = None

    @property
    def elapsed(self) -> float:
        """Accumulated time, including the running interval."""
        return self.total + (time.perf_counter() - self._t0 if self._t0 is not None else 0.0)


class MemoryMonitor:
    """Samples the memory of this process and its children and keeps the peak per active label.

    Two sums are kept. RSS counts a page once per process that maps it, so forked DataLoader workers that share the
    parent's pages copy-on-write (the fast recipe's cache, torch's libraries) are counted again for every worker: it
    overstates the footprint. PSS (proportional set size) splits each shared page among the processes that share it,
    so the PSS sum is the memory the process tree actually holds. Both recipes live in one process, so a peak includes
    whatever the other recipe holds at that moment (e.g. the fast recipe's cache while the regular recipe runs);
    DataLoader worker processes count for the recipe that started them. On CUDA the peak allocated tensor memory is
    tracked per recipe as well.
    """

    def __init__(self, interval: float = 0.2) -> None:
        import psutil

        self._proc = psutil.Process()
        self.interval = interval
        self.active: str | None = None
        self.peak_rss: dict[str, float] = {}
        self.peak_pss: dict[str, float] = {}
        self.peak_cuda: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _usage(self) -> tuple[int, int | None]:
        """(RSS sum, PSS sum) over this process and its children; PSS None where the OS does not report it."""
        rss, pss = 0, 0
        for proc in [self._proc] + self._proc.children(recursive=True):
            try:
                info = proc.memory_full_info()  # Linux: reads /proc/PID/smaps_rollup
            except Exception:  # a worker may exit between listing and reading; other OSes may lack the full info
                try:
                    rss, pss = rss + proc.memory_info().rss, None
                except Exception:
                    pass
                continue
            rss += info.rss
            pss = None if pss is None or getattr(info, "pss", None) is None else pss + info.pss
        return rss, pss

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        label = self.active
        if label is None:
            return
        rss, pss = self._usage()
        self.peak_rss[label] = max(self.peak_rss.get(label, 0.0), rss / 2**20)
        if pss is not None:
            self.peak_pss[label] = max(self.peak_pss.get(label, 0.0), pss / 2**20)

    def switch(self, label: str | None) -> None:
        """Make ``label`` the active recipe (``None``: nobody)."""
        import torch

        self.sample()
        if torch.cuda.is_available():
            if self.active is not None:
                mb = torch.cuda.max_memory_allocated() / 2**20
                self.peak_cuda[self.active] = max(self.peak_cuda.get(self.active, 0.0), mb)
            torch.cuda.reset_peak_memory_stats()
        self.active = label
        self.sample()

    def close(self) -> None:
        self.switch(None)
        self._stop.set()


def _atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def _as_dict(value: Any) -> dict[str, Any]:
    """Overrides given on the command line: a dict (fire parses JSON-like text) or a JSON string."""
    if value is None:
        return {}
    if isinstance(value, str):
        value = json.loads(value)
    if not isinstance(value, dict):
        raise ValueError(f"overrides must be a dict of config id -> value, got {value!r}")
    return dict(value)


def _machine() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        import monai

        info["monai"] = monai.__version__
        info["load_average_1_5_15"] = [round(x, 2) for x in os.getloadavg()]
    except (ImportError, OSError):
        pass
    try:
        with open("/proc/cpuinfo") as f:
            names = [ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")]
        if names:
            info["cpu_model"] = names[0]
    except OSError:
        pass
    return info


def _code_version() -> dict[str, Any] | None:
    """The checkout's commit and whether tracked files differ from it, so a result names the code that made it;
    None outside a git checkout."""
    import subprocess

    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                                check=True).stdout.strip()
        changed = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                                 capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return {"commit": commit, "modified": bool(changed)}


# ----------------------------------------------------------------------------------------------------------------
# configuration


def _default_configs(device: str | None) -> list[Path]:
    import torch

    on_cuda = torch.cuda.is_available() if device is None else str(device).startswith("cuda")
    files = [BUNDLE / "configs" / "train.json"]
    cpu = BUNDLE / "configs" / "train_cpu.json"
    if not on_cuda and cpu.is_file():
        files.append(cpu)
    return files


def _config_files(configs: list[str] | None, device: str | None) -> list[Path]:
    """None: the defaults for the device; an empty list: train.json alone; else the files given."""
    if configs is None:
        return _default_configs(device)
    if isinstance(configs, str):
        configs = [configs]
    return [BUNDLE / "configs" / "train.json"] + [Path(c).resolve() for c in configs if Path(c).name != "train.json"]


def _data_overrides(dataset_dir: str | None, n_cases: int | None, resolution: str) -> dict[str, Any]:
    """Point the bundle at the benchmark's data: an existing MSD folder, or phantoms generated on first use."""
    if dataset_dir is not None:
        if n_cases is not None:
            raise ValueError("--n_cases generates phantoms; it cannot be combined with --dataset_dir")
        return {"dataset_dir": str(Path(dataset_dir).resolve())}
    n = DEFAULT_N_CASES if n_cases is None else int(n_cases)
    name = "phantom_Task09_Spleen" if (n, resolution) == (DEFAULT_N_CASES, "scan") else f"phantom_Task09_Spleen_{resolution}_{n}"
    folder = str(BUNDLE / "data" / name)
    return {"embedded_dataset_dir": folder, "dataset_dir": folder, "phantom#n": n, "phantom#resolution": resolution}


def _parser(files: list[Path], overrides: dict[str, Any]) -> Any:
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config([str(f) for f in files])
    parser.update(overrides)  # "a#b" ids reach into nested sections
    return parser


def _run_parser(out_dir: Path, settings: dict[str, Any], *, dataset_dir: str | None, n_cases: int | None,
                resolution: str, configs: list[str] | None, override: Any, device: str | None) -> tuple[list[Path], Any]:
    """The fast recipe's config files and parser for one run writing under ``out_dir``: the benchmark's data,
    ``settings``, then the user's ``override``. The data is generated here, outside any timing."""
    ovr = {**_data_overrides(dataset_dir, n_cases, resolution), "bundle_root": str(BUNDLE),
           "ckpt_dir": str(out_dir / "models"), "output_dir": str(out_dir / "eval"), **settings, **_as_dict(override)}
    if device is not None:
        ovr["device"] = f"$torch.device('{device}')"
    files = _config_files(configs, device)
    parser = _parser(files, ovr)
    parser.get_parsed_content("train#datalist")
    parser.get_parsed_content("validate#datalist")
    return files, parser


def _net_from(parser: Any) -> Any:
    """A fresh network from the bundle's ``network_def`` (the same definition the fast recipe uses)."""
    from monai.bundle import ConfigParser

    return ConfigParser({"net": parser.get("network_def")}).get_parsed_content("net", instantiate=True)


# ----------------------------------------------------------------------------------------------------------------
# the regular recipe (MONAI spleen segmentation tutorial)


class RegularRecipe:
    """MONAI's spleen tutorial training, one epoch at a time, so it can be interleaved with another recipe.

    Args:
        train_files, val_files: ``[{"image": path, "label": path}, ...]``.
        network: the UNet (moved to ``device`` here).
        pixdim, hu_window, roi_size, num_samples: preprocessing and crop settings (shared with the bundle).
        val_roi_size, sw_batch_size: sliding-window validation.
        batch_size, num_workers, lr: the tutorial's loader and optimizer settings.
        largest_component: validate on the largest connected spleen component only (see ``POSTPROCESS``).
        device: torch device.
        seed: seed of the recipe's own random generator, which draws the shuffling and the loader workers' seeds
            (hence the random crops). Being its own, the recipe never draws from torch's global generator once
            built, so the fast recipe interleaved with it sees the same random numbers whether the regular recipe
            is running or has stopped.
    """

    def __init__(
        self,
        train_files: list[dict[str, str]],
        val_files: list[dict[str, str]],
        network: Any,
        *,
        pixdim: list[float],
        hu_window: list[float],
        roi_size: list[int],
        num_samples: int,
        val_roi_size: list[int],
        sw_batch_size: int,
        batch_size: int = 2,
        num_workers: int = 2,
        lr: float = 1e-4,
        largest_component: bool = False,
        device: Any = "cpu",
        seed: int = 0,
    ) -> None:
        import torch
        from monai.data import DataLoader, Dataset
        from monai.losses import DiceLoss
        from monai.metrics import DiceMetric
        from monai.transforms import (
            AsDiscrete,
            Compose,
            CropForegroundd,
            EnsureChannelFirstd,
            LoadImaged,
            Orientationd,
            RandCropByPosNegLabeld,
            ScaleIntensityRanged,
            Spacingd,
        )

        keys = ["image", "label"]
        deterministic = [
            LoadImaged(keys=keys),
            EnsureChannelFirstd(keys=keys),
            ScaleIntensityRanged(keys=["image"], a_min=hu_window[0], a_max=hu_window[1], b_min=0.0, b_max=1.0, clip=True),
            CropForegroundd(keys=keys, source_key="image", allow_smaller=True),
            Orientationd(keys=keys, axcodes="RAS"),
            Spacingd(keys=keys, pixdim=pixdim, mode=("bilinear", "nearest")),
        ]
        train_tf = Compose(
            deterministic
            + [
                RandCropByPosNegLabeld(
                    keys=keys, label_key="label", spatial_size=roi_size, pos=1, neg=1,
                    num_samples=num_samples, image_key="image", image_threshold=0,
                )
            ]
        )
        self.device = torch.device(device)
        self.generator = torch.Generator().manual_seed(int(seed))
        self.train_loader = DataLoader(
            Dataset(train_files, train_tf), batch_size=batch_size, shuffle=True, num_workers=num_workers,
            generator=self.generator,
        )
        self.val_loader = DataLoader(Dataset(val_files, Compose(deterministic)), batch_size=1, num_workers=num_workers,
                                     generator=self.generator)
        self.network = network.to(self.device)
        self.loss = DiceLoss(to_onehot_y=True, softmax=True)
        self.optimizer = torch.optim.Adam(self.network.parameters(), lr)
        self.metric = DiceMetric(include_background=False, reduction="mean")
        self.post_pred = Compose([AsDiscrete(argmax=True, to_onehot=2)] + ([_largest_component()] if largest_component else []))
        self.post_label = Compose([AsDiscrete(to_onehot=2)])
        self.val_roi_size = val_roi_size
        self.sw_batch_size = sw_batch_size
        self.epoch = 0

    def train_epoch(self) -> float:
        """One pass over the training volumes; returns the mean loss."""
        self.network.train()
        total, steps = 0.0, 0
        for batch in self.train_loader:
            x, y = batch["image"].to(self.device), batch["label"].to(self.device)
            self.optimizer.zero_grad()
            loss = self.loss(self.network(x), y)
            loss.backward()
            self.optimizer.step()
            total, steps = total + loss.item(), steps + 1
        self.epoch += 1
        return total / max(steps, 1)

    def validate(self) -> float:
        """Mean foreground Dice over the validation cases (sliding window, tutorial settings)."""
        import torch
        from monai.data import decollate_batch
        from monai.inferers import sliding_window_inference

        self.network.eval()
        with torch.no_grad():
            for batch in self.val_loader:
                x, y = batch["image"].to(self.device), batch["label"].to(self.device)
                out = sliding_window_inference(x, self.val_roi_size, self.sw_batch_size, self.network)
                self.metric(
                    y_pred=[self.post_pred(i) for i in decollate_batch(out)],
                    y=[self.post_label(i) for i in decollate_batch(y)],
                )
        value = float(self.metric.aggregate().item())
        self.metric.reset()
        return value


# ----------------------------------------------------------------------------------------------------------------
# bookkeeping shared by both recipes


class Track:
    """One recipe's clock, budget, validation curve and stopping rule."""

    def __init__(self, name: str, budget_s: float, max_epochs: int, stop_dice: float | None) -> None:
        self.name = name
        self.budget_s = float(budget_s)
        self.max_epochs = int(max_epochs)
        self.stop_dice = stop_dice
        self.clock = Stopwatch()
        self.setup_s = 0.0
        self.epoch_s: list[float] = []
        self.val_s: list[float] = []
        self.curve: list[dict[str, float]] = []
        self.train_loss: list[float | None] = []  # mean training loss per epoch, where the recipe reports it
        self.epochs = 0
        self.stopped: str | None = None

    def record(self, epoch: int, dice: float) -> None:
        self.curve.append({"epoch": epoch, "time_s": round(self.clock.elapsed, 3), "dice": round(float(dice), 5)})
        print(f"[{self.name}] epoch {epoch} val mean Dice {dice:.4f} at {self.clock.elapsed:.1f} s own time", flush=True)

    def should_stop(self, next_validates: bool) -> str | None:
        """Why the next epoch should not start (None: go on). An epoch that would end past the budget is skipped."""
        if self.epochs >= self.max_epochs:
            return "max_epochs"
        if self.stop_dice is not None and self.curve and self.curve[-1]["dice"] >= self.stop_dice:
            return f"reached Dice {self.stop_dice}"
        est = (self.epoch_s[-1] if self.epoch_s else 0.0) + (self.val_s[-1] if next_validates and self.val_s else 0.0)
        if self.clock.elapsed + est > self.budget_s:
            return "budget"
        return None

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for t in THRESHOLDS:
            hit = next((p for p in self.curve if p["dice"] >= t), None)
            out[f"time_to_dice_{t:.2f}_s"] = hit["time_s"] if hit else None
            out[f"epochs_to_dice_{t:.2f}"] = hit["epoch"] if hit else None
        out.update(
            {
                "budget_s": self.budget_s,
                "own_time_s": round(self.clock.total, 2),
                "setup_s": round(self.setup_s, 2),
                "final_dice": self.curve[-1]["dice"] if self.curve else None,
                "best_dice": max((p["dice"] for p in self.curve), default=None),
                "epochs": self.epochs,
                "seconds_per_epoch": round(sum(self.epoch_s) / len(self.epoch_s), 3) if self.epoch_s else None,
                "seconds_per_validation": round(sum(self.val_s) / len(self.val_s), 3) if self.val_s else None,
                "stopped_because": self.stopped,
                "curve": self.curve,
            }
        )
        if self.train_loss:
            out["train_loss_per_epoch"] = [None if x is None else round(x, 6) for x in self.train_loss]
        return out


# ----------------------------------------------------------------------------------------------------------------
# fast recipe helpers


def _build_fast(parser: Any) -> tuple[Any, Any]:
    parser.get_parsed_content("initialize")  # torch threads and determinism, as `monai.bundle run` does
    trainer = parser.get_parsed_content("train#trainer")  # builds (and caches) the data sets
    evaluator = parser.get_parsed_content("validate#evaluator")
    return trainer, evaluator


def _cache_mb(dataset: Any) -> float | None:
    import torch

    cache = getattr(dataset, "_cache", None)
    if not cache:
        return None
    total = 0
    for item in cache:
        if isinstance(item, dict):
            total += sum(v.nbytes for v in item.values() if isinstance(v, torch.Tensor))
            total += sum(v.nbytes for v in item.values() if hasattr(v, "nbytes") and not isinstance(v, torch.Tensor))
    return round(total / 2**20, 1)


def _metric_name(parser: Any) -> str:
    return next(iter(parser.get("validate#key_metric")))


# ----------------------------------------------------------------------------------------------------------------
# commands


def _shared_overrides(dataset_dir: str | None, n_cases: int | None, resolution: str, seed: int, override: Any,
                      device: str | None) -> dict[str, Any]:
    """Overrides that both recipes share: the data, the seed, the user's ``override`` and the device."""
    shared = {**_data_overrides(dataset_dir, n_cases, resolution), "seed": seed, **_as_dict(override)}
    if device is not None:
        shared["device"] = f"$torch.device('{device}')"
    return shared


def _regular_recipe(base: Any, train_files: list, val_files: list, *, workers: int, postprocess: str,
                    device: Any, seed: int) -> RegularRecipe:
    """The regular recipe on the bundle's shared settings (pixdim, HU window, crop and validation window sizes)."""
    return RegularRecipe(
        train_files, val_files, _net_from(base),
        pixdim=list(base.get_parsed_content("pixdim")), hu_window=list(base.get_parsed_content("hu_window")),
        roi_size=list(base.get_parsed_content("roi_size")), num_samples=int(base.get_parsed_content("samples_per_volume")),
        val_roi_size=list(base.get_parsed_content("val_roi_size")), sw_batch_size=int(base.get_parsed_content("sw_batch_size")),
        num_workers=workers, largest_component=postprocess == "largest_component", device=device, seed=seed,
    )


def _save_regular_state(path: Path, reg: RegularRecipe, track: Track) -> None:
    """Everything ``resume`` needs to continue the regular recipe, as tensors and plain containers (atomic write)."""
    import io

    import torch

    buf = io.BytesIO()
    torch.save(
        {
            "network": reg.network.state_dict(),
            "optimizer": reg.optimizer.state_dict(),
            "loader_rng": reg.generator.get_state(),  # shuffling and the worker seeds (the random crops) come from it
            "epochs": track.epochs,
            "own_time_s": track.clock.total,
            "setup_s": track.setup_s,
            "epoch_s": list(track.epoch_s),
            "val_s": list(track.val_s),
            "curve": list(track.curve),
            "train_loss": list(track.train_loss),
        },
        buf,
    )
    atomic_write_bytes(path, buf.getvalue())


def _regular_epoch(reg: RegularRecipe, track: Track, mem: MemoryMonitor, val_interval: int, state_path: Path,
                   after: Callable[[], None] | None = None) -> None:
    """One regular epoch (and its validation when due) on the regular clock, then its state saved and ``after``
    called; no-op once stopped."""
    if track.stopped:
        return
    why = track.should_stop(next_validates=(track.epochs + 1) % val_interval == 0)
    if why:
        track.stopped = why
        return
    mem.switch("regular")
    track.clock.start()
    t0 = time.perf_counter()
    track.train_loss.append(reg.train_epoch())
    track.epochs += 1
    track.epoch_s.append(time.perf_counter() - t0)
    if track.epochs % val_interval == 0:
        t1 = time.perf_counter()
        dice = reg.validate()
        track.val_s.append(time.perf_counter() - t1)
        track.record(track.epochs, dice)
    track.clock.stop()
    _save_regular_state(state_path, reg, track)
    if after is not None:
        after()


REGULAR_STATE = "regular_state.pt"
STILL_RUNNING = "running when this was written (state saved after each epoch; `resume` continues it)"


def bench(
    out: str = "runs/bench_spleen",
    budget_s: float = 1200.0,
    fast_budget_s: float | None = None,
    max_epochs: int = 1000,
    n_cases: int | None = None,
    resolution: str = "scan",
    dataset_dir: str | None = None,
    configs: list[str] | None = None,
    override: Any = None,
    fast_override: Any = None,
    stop_dice: float | None = 0.95,
    postprocess: str = "largest_component",
    regular_workers: int | None = None,
    device: str | None = None,
    seed: int = 0,
) -> None:
    """Train both recipes interleaved and write ``results.json`` and ``dice_vs_time.png`` under ``out``.

    ``results.json`` is first written when the fast recipe is done and rewritten after every later regular
    epoch, so a run cut off while the regular recipe goes on alone keeps its results; ``resume`` continues it.

    Args:
        out: output folder (also holds the fast recipe's checkpoints and TensorBoard logs, and the regular recipe's
            saved state).
        budget_s: own wall-time budget of the regular recipe (and of the fast one unless ``fast_budget_s``).
        fast_budget_s: own wall-time budget of the fast recipe.
        max_epochs: epoch limit of each recipe.
        n_cases: number of phantom cases to generate and split (default 32, the bundle's default data set).
        resolution: phantom grid, "scan" (512² slices, like CT), "fast" or "tiny".
        dataset_dir: an existing MSD task folder instead of phantoms.
        configs: override files layered on train.json for the fast recipe (default: train_cpu.json on CPU, none on
            CUDA; ``[]``: train.json alone).
        override: config overrides applied to both recipes' shared settings and to the fast recipe.
        fast_override: config overrides for the fast recipe only.
        stop_dice: a recipe stops once its validation Dice reaches this (saves time for the other); None: never.
        postprocess: validation postprocessing of both recipes after the argmax: "largest_component" (default, what
            the bundle's inference and evaluation do) or "none" (the raw argmax, as during the bundle's training).
        regular_workers: DataLoader worker processes of the regular recipe (default: CPU count).
        device: "cpu" or "cuda:0"; default CUDA when available.
        seed: seed of both recipes and of the data split.
    """
    import torch
    from ignite.engine import Events
    from monai.utils import set_determinism

    args = {"out": out, "budget_s": budget_s, "fast_budget_s": fast_budget_s, "max_epochs": max_epochs,
            "n_cases": n_cases, "resolution": resolution, "dataset_dir": dataset_dir, "configs": configs,
            "override": _as_dict(override), "fast_override": _as_dict(fast_override), "stop_dice": stop_dice,
            "postprocess": postprocess, "regular_workers": regular_workers, "device": device, "seed": seed}
    out_dir = Path(out).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    shared = _shared_overrides(dataset_dir, n_cases, resolution, seed, override, device)
    files = _config_files(configs, device)
    fast_ovr = {
        **shared,
        **_fast_validation_postprocessing(postprocess),
        "bundle_root": str(BUNDLE),
        "ckpt_dir": str(out_dir / "fast" / "models"),
        "output_dir": str(out_dir / "fast" / "eval"),
        "epochs": int(max_epochs),
        **_as_dict(fast_override),
    }
    base = _parser([BUNDLE / "configs" / "train.json"], {**shared, "bundle_root": str(BUNDLE)})
    fast_parser = _parser(files, fast_ovr)
    val_interval = int(fast_parser.get_parsed_content("val_interval"))
    dev = fast_parser.get_parsed_content("device")
    machine_start = _machine()
    state_path = out_dir / REGULAR_STATE
    state_path.unlink(missing_ok=True)  # a state left by an earlier run in this folder is not this run's

    mem = MemoryMonitor()
    fast = Track("fast", budget_s if fast_budget_s is None else fast_budget_s, max_epochs, stop_dice)
    regular = Track("regular", budget_s, max_epochs, stop_dice)

    # the data (generated on first use, outside both clocks) and the split, from the bundle's own datalists
    train_files = base.get_parsed_content("train#datalist")
    val_files = base.get_parsed_content("validate#datalist")
    print(f"data: {len(train_files)} train / {len(val_files)} validation cases; val every {val_interval} epochs; "
          f"fast configs {[f.name for f in files]}; device {dev}", flush=True)

    # regular recipe setup (cheap: no caching), charged to its clock
    mem.switch("regular")
    regular.clock.start()
    set_determinism(seed=seed)
    workers = int(regular_workers) if regular_workers is not None else (os.cpu_count() or 1)
    reg = _regular_recipe(base, train_files, val_files, workers=workers, postprocess=postprocess, device=dev, seed=seed)
    regular.clock.stop()
    regular.setup_s = regular.clock.total

    # fast recipe: the bundle's trainer and evaluator; caching happens while they are built, on the fast clock
    mem.switch("fast")
    fast.clock.start()
    trainer, evaluator = _build_fast(fast_parser)
    fast.clock.stop()
    fast.setup_s = fast.clock.total
    metric = _metric_name(fast_parser)
    epoch_t0 = {"t": 0.0, "val": 0.0}

    @trainer.on(Events.EPOCH_STARTED)
    def _epoch_started(engine: Any) -> None:
        epoch_t0["t"], epoch_t0["val"] = time.perf_counter(), 0.0

    @evaluator.on(Events.STARTED)
    def _val_started(engine: Any) -> None:
        epoch_t0["v0"] = time.perf_counter()

    @evaluator.on(Events.COMPLETED)
    def _val_completed(engine: Any) -> None:
        dt = time.perf_counter() - epoch_t0["v0"]
        epoch_t0["val"] += dt
        fast.val_s.append(dt)
        fast.record(trainer.state.epoch, engine.state.metrics[metric])

    @trainer.on(Events.EPOCH_COMPLETED)  # attached after the bundle's ValidationHandler, so it runs after validation
    def _epoch_completed(engine: Any) -> None:
        fast.epoch_s.append(time.perf_counter() - epoch_t0["t"] - epoch_t0["val"])
        fast.epochs = engine.state.epoch
        fast.clock.stop()
        why = fast.should_stop(next_validates=(fast.epochs + 1) % val_interval == 0)
        if why:
            fast.stopped = why
            engine.terminate()
        _regular_epoch(reg, regular, mem, val_interval, state_path)  # interleave: one regular epoch after each fast epoch
        mem.switch("fast")
        fast.clock.start()

    @trainer.on(Events.ITERATION_COMPLETED(every=1))
    def _budget_guard(engine: Any) -> None:  # a first epoch far longer than the whole budget still stops
        if fast.clock.elapsed > 2 * fast.budget_s and not fast.epoch_s:
            fast.stopped = "budget (first epoch)"
            engine.terminate()

    if fast.should_stop(next_validates=val_interval == 1) is None:
        fast.clock.start()
        trainer.run()
        fast.clock.stop()
        fast.stopped = fast.stopped or "max_epochs"
    else:
        fast.stopped = fast.should_stop(next_validates=val_interval == 1)

    results = {
        "benchmark": "spleen-fast-train: regular vs fast recipe, validation mean Dice vs own wall time",
        "data": _data_kind(fast_parser.get_parsed_content("dataset_dir")),
        "command": "python " + shlex.join(sys.argv),
        "code": _code_version(),
        "args": args,
        "machine": machine_start,
        "device": str(dev),
        "n_train": len(train_files),
        "n_validation": len(val_files),
        "val_interval_epochs": val_interval,
        "validation_postprocessing": POSTPROCESS[postprocess],
        "thresholds": list(THRESHOLDS),
        "notes": RESULTS_NOTES,
        "recipes": {"regular": None, "fast": _recipe_summary(fast, mem)},
        "resumes": [],
    }
    results["recipes"]["fast"]["recipe"] = "bundle configs: " + " + ".join(
        str(f.relative_to(REPO_ROOT)) if f.is_relative_to(REPO_ROOT) else str(f) for f in files)
    results["recipes"]["fast"]["cache_mb"] = _cache_mb(fast_parser.get_parsed_content("train#dataset"))

    def write() -> None:
        results["recipes"]["regular"] = _recipe_summary(regular, mem, workers)
        _write_results(results, out_dir)

    write()  # the fast recipe is done: from here on a cut-off run keeps its results
    while not regular.stopped:  # the fast recipe is done; the regular one goes on alone within its budget
        _regular_epoch(reg, regular, mem, val_interval, state_path, after=write)
    mem.close()
    write()
    print(json.dumps({k: v for k, v in results.items() if "ratio" in k}, indent=2))
    print(f"wrote {out_dir / 'results.json'} and {out_dir / 'dice_vs_time.png'}")
    return None  # fire would print a returned dict


class SavedRun(NamedTuple):
    """A ``bench`` run's ``results.json``, its regular recipe's saved state, and what the run trained with."""

    results: dict[str, Any]
    args: dict[str, Any]
    state: dict[str, Any]
    base: Any  # the bundle's parser with the run's shared overrides
    train_files: list
    val_files: list
    device: Any
    workers: int


def _saved_run(out_dir: Path) -> SavedRun:
    """Read the run under ``out_dir`` and rebuild its parser, data and device from the recorded ``args``, checking
    that the saved state continues the recorded regular recipe."""
    import torch

    results_path, state_path = out_dir / "results.json", out_dir / REGULAR_STATE
    if not results_path.is_file():
        raise SystemExit(f"{results_path}: not found; give the folder of a `bench` run whose fast recipe finished")
    results = json.loads(results_path.read_text())
    args = results.get("args")
    if not args or not state_path.is_file():
        raise SystemExit(f"{results_path}: no benchmark arguments or no {REGULAR_STATE} beside it; this run was "
                         "written before the regular recipe's state was saved, so it cannot be continued or inspected")
    state = torch.load(state_path, map_location="cpu", weights_only=True)
    before = results["recipes"]["regular"]  # the state may be one epoch ahead (cut off between the two writes)
    if state["epochs"] < before["epochs"] or state["curve"][: len(before["curve"])] != before["curve"]:
        raise SystemExit(f"{state_path}: does not continue the regular recipe of {results_path} (epoch "
                         f"{state['epochs']} against {before['epochs']}, or another curve); they are from different runs")

    base = _parser([BUNDLE / "configs" / "train.json"], {
        **_shared_overrides(args["dataset_dir"], args["n_cases"], args["resolution"], args["seed"],
                            args["override"], args["device"]), "bundle_root": str(BUNDLE)})
    train_files = base.get_parsed_content("train#datalist")
    val_files = base.get_parsed_content("validate#datalist")
    dev = base.get_parsed_content("device")
    workers = int(args["regular_workers"]) if args["regular_workers"] is not None else (os.cpu_count() or 1)
    return SavedRun(results, args, state, base, train_files, val_files, dev, workers)


def resume(out: str = "runs/bench_spleen", budget_s: float = 1200.0, max_epochs: int | None = None) -> None:
    """Continue a benchmark's regular recipe, alone, from its last saved epoch, and rewrite ``results.json`` and
    ``dice_vs_time.png`` under ``out``.

    The data, split, settings and seed are the ones recorded in ``results.json`` (``args``); the regular recipe's
    weights, optimizer, random generator, own clock and validation curve come from ``regular_state.pt``. Only the
    regular recipe's own time counts, so the time between the first run and this one is not charged to it. Epochs and
    validations continue on the same schedule. Shuffling and the DataLoader workers' seeds (hence the random crops)
    come from the saved state of the recipe's own random generator, so a continuation is seeded: two resumes of one
    state give the same numbers.

    Args:
        out: the folder of an earlier ``bench`` (or ``resume``) run.
        budget_s: the regular recipe's new own wall-time budget, in total (the time it already ran included).
        max_epochs: the regular recipe's new epoch limit (default: the one it ran with).
    """
    out_dir = Path(out).resolve()
    results, args, state, base, train_files, val_files, dev, workers = _saved_run(out_dir)
    results_path, state_path, before = out_dir / "results.json", out_dir / REGULAR_STATE, results["recipes"]["regular"]
    val_interval = int(results["val_interval_epochs"])

    mem = MemoryMonitor()
    regular = Track("regular", budget_s, args["max_epochs"] if max_epochs is None else max_epochs, args["stop_dice"])
    regular.epochs, regular.clock.total, regular.setup_s = state["epochs"], state["own_time_s"], state["setup_s"]
    regular.epoch_s, regular.val_s, regular.curve = list(state["epoch_s"]), list(state["val_s"]), list(state["curve"])
    # states saved before the loss was recorded: its earlier epochs are unknown (null)
    regular.train_loss = list(state.get("train_loss", [None] * state["epochs"]))
    reg = _regular_recipe(base, train_files, val_files, workers=workers, postprocess=args["postprocess"], device=dev,
                          seed=args["seed"])
    reg.network.load_state_dict(state["network"])
    reg.optimizer.load_state_dict(state["optimizer"])
    reg.epoch = state["epochs"]
    # states saved before the recipe had its own generator hold torch's global one under "torch_rng": the recipe
    # drew from it then, so it seeds the continuation just as well
    reg.generator.set_state(state["loader_rng"] if "loader_rng" in state else state["torch_rng"])
    print(f"resuming the regular recipe at epoch {regular.epochs}, {regular.clock.total:.1f} s own time, "
          f"budget now {budget_s} s", flush=True)

    entry = {"command": "python " + shlex.join(sys.argv), "code": _code_version(), "machine": _machine(),
             "from_epoch": regular.epochs, "from_own_time_s": round(regular.clock.total, 2)}
    results["resumes"] = results.get("resumes", []) + [entry]

    def write() -> None:
        summary = _recipe_summary(regular, mem, workers)
        for key in ("peak_rss_mb", "peak_pss_mb", "cuda_max_allocated_mb"):  # the peak over every sitting
            summary[key] = max((v for v in (summary[key], before.get(key)) if v is not None), default=None)
        results["recipes"]["regular"] = summary
        entry["to_epoch"] = regular.epochs
        _write_results(results, out_dir)

    while not regular.stopped:
        _regular_epoch(reg, regular, mem, val_interval, state_path, after=write)
    mem.close()
    write()
    print(json.dumps({k: v for k, v in results.items() if "ratio" in k}, indent=2))
    print(f"wrote {results_path} and {out_dir / 'dice_vs_time.png'}")


def regular_errors(out: str = "runs/bench_spleen") -> None:
    """How the regular recipe's saved network labels each whole validation volume, scored as its validation scores
    it: per case the spleen's voxels, the voxels marked as spleen, the share of the spleen covered, false positives,
    and Dice before and after keeping the largest component. Writes ``regular_errors.json`` under ``out``.

    Its validation Dice alone cannot say whether the network misses the spleen or buries it in false positives; this
    says which, from the same weights (those of the last epoch ``regular_state.pt`` holds).

    Args:
        out: the folder of a ``bench`` (or ``resume``) run.
    """
    from monai.inferers import SlidingWindowInferer

    out_dir = Path(out).resolve()
    run = _saved_run(out_dir)
    state, curve = run.state, run.state["curve"]
    reg = _regular_recipe(run.base, run.train_files, run.val_files, workers=run.workers,
                          postprocess=run.args["postprocess"], device=run.device, seed=run.args["seed"])
    reg.network.load_state_dict(state["network"])
    inferer = SlidingWindowInferer(roi_size=reg.val_roi_size, sw_batch_size=reg.sw_batch_size)
    names = [Path(f["image"]).name for f in run.val_files]
    rows = _score_cases(reg.network, reg.val_loader, inferer, reg.device, amp=False, names=names)
    for r in rows:
        covered = r["spleen_voxels"] - r["false_negative_voxels"]
        r["predicted_voxels"] = covered + r["false_positive_voxels"]
        r["spleen_covered"] = round(covered / r["spleen_voxels"], 4) if r["spleen_voxels"] else None
        r["false_positives_per_spleen_voxel"] = (
            round(r["false_positive_voxels"] / r["spleen_voxels"], 2) if r["spleen_voxels"] else None)

    def mean(key: str) -> float | None:
        values = [r[key] for r in rows if r[key] is not None]
        return round(sum(values) / len(values), 4) if values else None

    result = {
        "command": "python " + shlex.join(sys.argv),
        "code": _code_version(),
        "data": run.results["data"],
        "epoch": state["epochs"],
        "own_time_s": round(float(state["own_time_s"]), 2),
        # the validation Dice recorded at this epoch, if it validated: the mean below reproduces it
        "validation_dice_at_epoch": curve[-1]["dice"] if curve and curve[-1]["epoch"] == state["epochs"] else None,
        "validation_postprocessing": run.results["validation_postprocessing"],
        "mean_dice": mean("dice"),
        "mean_dice_largest_component": mean("dice_largest_component"),
        "mean_spleen_covered": mean("spleen_covered"),
        "mean_false_positives_per_spleen_voxel": mean("false_positives_per_spleen_voxel"),
        "cases": rows,
    }
    _atomic_write_text(out_dir / "regular_errors.json", json.dumps(result, indent=2) + "\n")
    print("| case | spleen voxels | marked as spleen | spleen covered | false positives / spleen voxel | Dice | "
          "Dice, largest component |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['case']} | {r['spleen_voxels']} | {r['predicted_voxels']} | {_fmt(r['spleen_covered'], 3)} | "
              f"{_fmt(r['false_positives_per_spleen_voxel'], 1)} | {r['dice']:.3f} | {r['dice_largest_component']:.3f} |")
    print(f"epoch {result['epoch']}, mean Dice (largest component) {result['mean_dice_largest_component']}, "
          f"recorded validation Dice {result['validation_dice_at_epoch']}; wrote {out_dir / 'regular_errors.json'}")


RESULTS_NOTES = (
    "Times are each recipe's own wall time (interleaved epoch by epoch in one process), including the fast "
    "recipe's caching and both recipes' validation. A recipe stops at its budget, its max_epochs or once its "
    "validation Dice reaches stop_dice. The regular recipe may go on in later sittings (`resume`, listed under "
    "resumes); only its own time is counted. peak_pss_mb is the peak proportional set size of the process plus its "
    "worker processes while that recipe ran (the memory the process tree held, each shared page counted "
    "once); peak_rss_mb is the same peak as a sum of resident sizes, which counts pages shared with forked "
    "workers once per worker. Both include what the other recipe kept resident. time_to_dice null: not "
    "reached within own_time_s."
)


def _recipe_summary(track: Track, mem: MemoryMonitor, workers: int | None = None) -> dict[str, Any]:
    """``track``'s summary with its memory peaks; ``workers`` given: the regular recipe, described."""
    s = track.summary()
    s["stopped_because"] = track.stopped or STILL_RUNNING
    s["peak_rss_mb"] = round(mem.peak_rss.get(track.name, 0.0), 1)
    s["peak_pss_mb"] = round(mem.peak_pss[track.name], 1) if track.name in mem.peak_pss else None
    s["cuda_max_allocated_mb"] = round(mem.peak_cuda[track.name], 1) if track.name in mem.peak_cuda else None
    if workers is not None:
        s["recipe"] = (
            f"MONAI spleen tutorial: Dataset + DataLoader ({workers} workers), no caching, DiceLoss(to_onehot_y, "
            "softmax), Adam lr 1e-4, fp32, batch 2, the bundle's UNet"
        )
    return s


def _write_results(results: dict[str, Any], out_dir: Path) -> None:
    """Fill in the ratios and the load average, then write ``results.json`` and the plot (each atomically)."""
    results["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    results.update(_ratios(results["recipes"]["regular"], results["recipes"]["fast"]))
    _atomic_write_text(out_dir / "results.json", json.dumps(results, indent=2) + "\n")
    _plot(results, out_dir / "dice_vs_time.png")


def _ratios(r: dict[str, Any], f: dict[str, Any]) -> dict[str, Any]:
    """regular / fast: time and epochs to each Dice threshold, and seconds per epoch."""
    out: dict[str, Any] = {}
    for t in THRESHOLDS:
        key = f"{t:.2f}"
        tr, tf = r[f"time_to_dice_{key}_s"], f[f"time_to_dice_{key}_s"]
        out[f"ratio_time_to_dice_{key}"] = round(tr / tf, 2) if tr is not None and tf else None
        # the regular recipe ran its whole own time without reaching t: the true ratio is at least this
        out[f"ratio_time_to_dice_{key}_lower_bound"] = (
            round(r["own_time_s"] / tf, 2) if tr is None and tf else out[f"ratio_time_to_dice_{key}"]
        )
        er, ef = r[f"epochs_to_dice_{key}"], f[f"epochs_to_dice_{key}"]
        out[f"ratio_epochs_to_dice_{key}"] = round(er / ef, 2) if er is not None and ef else None
    sr, sf = r["seconds_per_epoch"], f["seconds_per_epoch"]
    out["ratio_seconds_per_epoch"] = round(sr / sf, 2) if sr and sf else None
    return out


def _data_kind(dataset_dir: str) -> str:
    """ "synthetic phantom" for data sets written by the phantom engine, else the folder (e.g. a real MSD task)."""
    try:
        meta = json.loads((Path(dataset_dir) / "dataset.json").read_text())
    except (OSError, ValueError):
        return str(dataset_dir)
    text = f"{meta.get('description', '')} {meta.get('reference', '')}".lower()
    return "synthetic phantom" if "phantom" in text else str(dataset_dir)


def _plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    colours = {"regular": "tab:blue", "fast": "tab:red"}
    for name, rec in results["recipes"].items():
        xs = [p["time_s"] for p in rec["curve"]]
        ys = [p["dice"] for p in rec["curve"]]
        ax.plot(xs, ys, marker="o", ms=3, color=colours.get(name), label=f"{name} ({rec['epochs']} epochs)")
        ax.axvline(rec["own_time_s"], color=colours.get(name), ls=":", lw=0.8)
    for t in results["thresholds"]:
        ax.axhline(t, color="grey", ls="--", lw=0.6)
    r90 = results.get("ratio_time_to_dice_0.90")
    lb90 = results.get("ratio_time_to_dice_0.90_lower_bound")
    ratio = f"{r90}x" if r90 else (f">= {lb90}x" if lb90 else "n/a")
    ax.set_title(f"spleen-fast-train, synthetic phantoms, {results['device']}: time to Dice 0.90 ratio {ratio}", fontsize=9)
    ax.set_xlabel("own wall time (s), caching and validation included")
    ax.set_ylabel("validation mean Dice (spleen)")
    ax.set_ylim(0, 1)
    ax.set_xlim(left=0)
    ax.legend(loc="best", fontsize=8)  # the fast curve rises through the upper left
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".png", dir=path.parent)
    os.close(fd)
    fig.savefig(tmp)
    plt.close(fig)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


class _IterationProfiler:
    """Per-iteration phase times of a MONAI ``SupervisedTrainer`` from its own events.

    data: GET_BATCH_STARTED → GET_BATCH_COMPLETED; forward: → FORWARD_COMPLETED (includes moving the batch to the
    device and zero_grad); loss: → LOSS_COMPLETED; backward: → BACKWARD_COMPLETED; optimizer: → MODEL_COMPLETED;
    post: → ITERATION_COMPLETED (post-transforms, training metric, logging handlers).
    """

    PHASES = ("data", "forward", "loss", "backward", "optimizer", "post")

    def __init__(self, trainer: Any) -> None:
        from ignite.engine import Events
        from monai.engines.utils import IterationEvents

        self.times: dict[str, list[float]] = {p: [] for p in self.PHASES}
        self._t: dict[str, float] = {}
        marks = [
            (Events.GET_BATCH_STARTED, "gs"), (Events.GET_BATCH_COMPLETED, "gc"),
            (IterationEvents.FORWARD_COMPLETED, "fc"), (IterationEvents.LOSS_COMPLETED, "lc"),
            (IterationEvents.BACKWARD_COMPLETED, "bc"), (IterationEvents.MODEL_COMPLETED, "mc"),
            (Events.ITERATION_COMPLETED, "ic"),
        ]
        for event, key in marks:
            trainer.add_event_handler(event, self._mark, key)

    def _mark(self, engine: Any, key: str) -> None:
        self._t[key] = time.perf_counter()
        if key == "ic" and all(k in self._t for k in ("gs", "gc", "fc", "lc", "bc", "mc")):
            t = self._t
            for phase, (a, b) in zip(self.PHASES, [("gs", "gc"), ("gc", "fc"), ("fc", "lc"), ("lc", "bc"), ("bc", "mc"), ("mc", "ic")]):
                self.times[phase].append(t[b] - t[a])
            self._t = {}


def _time_fast(parser: Any, *, epochs: int, train_budget_s: float | None, validate_at_end: bool,
               skip_first: int = 1, iterations: int | None = None) -> dict[str, Any]:
    """Build the fast recipe from ``parser``, train it, and return the phase profile (and the final Dice).

    Training stops after ``train_budget_s`` seconds of iteration time or ``iterations`` iterations, else at the
    configured epochs; the first ``skip_first`` iterations (warm-up) are left out of the per-iteration means.
    """
    from ignite.engine import Events

    t0 = time.perf_counter()
    trainer, evaluator = _build_fast(parser)
    setup_s = time.perf_counter() - t0
    prof = _IterationProfiler(trainer)
    val_times: list[float] = []
    vt: dict[str, float] = {}
    evaluator.add_event_handler(Events.STARTED, lambda e: vt.__setitem__("t", time.perf_counter()))
    evaluator.add_event_handler(Events.COMPLETED, lambda e: val_times.append(time.perf_counter() - vt["t"]))
    clock = {"train": 0.0}

    @trainer.on(Events.ITERATION_COMPLETED)
    def _budget(engine: Any) -> None:
        clock["train"] = sum(sum(v) for v in prof.times.values())
        if train_budget_s is not None and clock["train"] > train_budget_s:
            engine.terminate()
        if iterations is not None and len(prof.times["data"]) >= iterations:
            engine.terminate()

    t1 = time.perf_counter()
    trainer.run()
    run_s = time.perf_counter() - t1
    dice = None
    if validate_at_end:
        evaluator.run()
        dice = float(evaluator.state.metrics[_metric_name(parser)])
    steps = len(prof.times["data"])
    per_it = {p: sum(v[skip_first:]) / max(len(v) - skip_first, 1) for p, v in prof.times.items()}
    it_s = sum(per_it.values())
    crops = int(parser.get_parsed_content("batch_size")) * int(parser.get_parsed_content("samples_per_volume"))
    return {
        "setup_s": round(setup_s, 2),
        "iterations": steps,
        "epochs": trainer.state.epoch,
        "train_s": round(run_s - sum(val_times), 2),
        "seconds_per_iteration": round(it_s, 3),
        "crops_per_iteration": crops,
        "seconds_per_crop": round(it_s / crops, 4),
        "phase_s": {p: round(v, 4) for p, v in per_it.items()},
        "phase_share": {p: round(v / it_s, 3) for p, v in per_it.items()} if it_s else {},
        "validations": len(val_times),
        "seconds_per_validation": round(sum(val_times) / len(val_times), 2) if val_times else None,
        "final_dice": dice,
    }


def profile(
    out: str = "runs/bench_spleen_profile",
    epochs: int = 2,
    n_cases: int | None = None,
    resolution: str = "scan",
    dataset_dir: str | None = None,
    configs: list[str] | None = None,
    override: Any = None,
    device: str | None = None,
) -> None:
    """Where the fast recipe's time goes: per-iteration data / forward / loss / backward / optimizer / post, the
    validation time, and the share of validation in wall time, over ``epochs`` epochs (validating on the last).
    Writes ``profile.json`` under ``out``."""
    out_dir = Path(out).resolve()
    files, parser = _run_parser(out_dir, {"epochs": int(epochs), "val_interval": int(epochs)}, dataset_dir=dataset_dir,
                                n_cases=n_cases, resolution=resolution, configs=configs, override=override, device=device)
    res = _time_fast(parser, epochs=epochs, train_budget_s=None, validate_at_end=False)
    its_per_epoch = res["iterations"] / max(res["epochs"], 1)
    epoch_train_s = res["seconds_per_iteration"] * its_per_epoch
    res["iterations_per_epoch"] = its_per_epoch
    res["configs"] = [f.name for f in files]
    res["overrides"] = _as_dict(override)
    res["machine"] = _machine()
    if res["seconds_per_validation"]:
        res["validation_share_at_val_interval"] = {
            str(k): round(res["seconds_per_validation"] / (k * epoch_train_s + res["seconds_per_validation"]), 3)
            for k in (1, 2, 5)
        }
    _atomic_write_text(out_dir / "profile.json", json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))
    return None


# ----------------------------------------------------------------------------------------------------------------
# checkpoints: is the fast recipe's Dice stable from epoch to epoch, and what goes wrong when it is not?


def _recompute_bn(network: Any, loader: Any, device: Any, seed: int) -> Any:
    """A copy of ``network`` whose batch-norm running statistics are the plain average over one pass of ``loader``
    (the training crops), instead of the exponential average of the last few training batches."""
    import copy

    import torch
    from monai.utils import set_determinism

    net = copy.deepcopy(network)
    bns = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return net
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: every batch of the pass weighs the same
    set_determinism(seed=seed)  # the same crops for every checkpoint: the shuffle (torch) and the random crops
    transform = getattr(getattr(loader, "dataset", None), "transform", None)
    if hasattr(transform, "set_random_state"):
        transform.set_random_state(seed=seed)
    net.train()
    with torch.no_grad():
        for batch in loader:
            net(batch["image"].to(device))
    return net.eval()


def _score_cases(network: Any, loader: Any, inferer: Any, device: Any, amp: bool, names: list[str]) -> list[dict[str, Any]]:
    """Per validation case: Dice of the raw argmax and of its largest connected spleen component (what the bundle's
    inference and evaluation keep), the raw prediction's connected components and false-positive voxels."""
    import numpy as np
    import torch
    from monai.transforms import KeepLargestConnectedComponent
    from scipy import ndimage

    largest = KeepLargestConnectedComponent(applied_labels=[1])  # full connectivity, as in the bundle's configs
    structure = ndimage.generate_binary_structure(3, 3)

    def dice(a: np.ndarray, b: np.ndarray) -> float:
        denom = a.sum() + b.sum()
        return float(2.0 * np.logical_and(a, b).sum() / denom) if denom else 1.0

    rows = []
    network.eval()
    with torch.no_grad():
        for i, batch in enumerate(loader):
            image = batch["image"].to(device)
            with torch.autocast("cuda", enabled=amp and device.type == "cuda"):
                logits = inferer(image, network)
            pred = torch.argmax(logits, dim=1, keepdim=True)[0].cpu()  # (1, H, W, D) label map
            label = torch.as_tensor(batch["label"])[0, 0].cpu().numpy() > 0.5
            raw = pred[0].numpy() > 0
            kept = np.asarray(largest(pred))[0] > 0
            rows.append({
                "case": names[i] if i < len(names) else f"case {i}",
                "dice": round(dice(raw, label), 4),
                "dice_largest_component": round(dice(kept, label), 4),
                "components": int(ndimage.label(raw, structure=structure)[1]),
                "false_positive_voxels": int(np.logical_and(raw, ~label).sum()),
                "false_negative_voxels": int(np.logical_and(~raw, label).sum()),
                "spleen_voxels": int(label.sum()),
            })
    return rows


def _stability(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per weights variant and threshold: the first scored epoch whose mean largest-component Dice reaches it, and the
    first from which every later scored checkpoint stays at or above it (at least one later; the last alone proves
    nothing)."""
    summary: dict[str, Any] = {}
    for weights in sorted({r["weights"] for r in rows}):
        curve = [r for r in rows if r["weights"] == weights]
        for t in THRESHOLDS:
            first = next((r["epoch"] for r in curve if r["mean_dice_largest_component"] >= t), None)
            stable = next((r["epoch"] for i, r in enumerate(curve[:-1])
                           if all(q["mean_dice_largest_component"] >= t for q in curve[i:])), None)
            summary[f"{weights}: first_epoch_dice_{t:.2f}"] = first
            summary[f"{weights}: stable_from_epoch_dice_{t:.2f}"] = stable
    return summary


def checkpoints(
    out: str = "runs/bench_spleen_checkpoints",
    epochs: int = 150,
    stop_epoch: int | None = None,
    save_every: int = 10,
    score_from: int = 0,
    recompute_bn: bool = True,
    score_only: bool = False,
    n_cases: int | None = None,
    resolution: str = "scan",
    dataset_dir: str | None = None,
    configs: list[str] | None = None,
    override: Any = None,
    device: str | None = None,
    seed: int = 0,
) -> None:
    """Train the fast recipe without validating, save its weights every ``save_every`` epochs, then score every saved
    checkpoint on each validation case. Writes ``checkpoints.json`` under ``out``.

    Validation Dice of the CPU fast recipe can swing between neighbouring validations; this separates what the
    weights do from what one validation happens to catch. Each checkpoint is scored as saved and, with
    ``recompute_bn``, again after its batch-norm statistics are recomputed over one pass of the training crops.

    Args:
        out: output folder (``checkpoints/epoch_NNNN.pt``, ``training.json``, ``checkpoints.json``).
        epochs: the training schedule's length (the cosine learning-rate schedule's ``T_max``).
        stop_epoch: stop training after this epoch, with the schedule still ``epochs`` long (default: ``epochs``).
        save_every: save the weights every this many epochs (and after the last epoch).
        score_from: score only checkpoints from this epoch on.
        recompute_bn: also score each checkpoint with recomputed batch-norm statistics.
        score_only: skip training; score the checkpoints already under ``out``.
        n_cases, resolution, dataset_dir, configs, override, device, seed: as for ``bench``.
    """
    import io

    import torch
    from ignite.engine import Events
    from monai.handlers import from_engine

    out_dir = Path(out).resolve()
    ckpt_dir = out_dir / "checkpoints"
    epochs = int(epochs)
    last = epochs if stop_epoch is None else min(int(stop_epoch), epochs)
    files, parser = _run_parser(out_dir, {"seed": seed, "epochs": epochs, "val_interval": epochs + 1},  # no validation
                                dataset_dir=dataset_dir, n_cases=n_cases, resolution=resolution, configs=configs,
                                override=override, device=device)
    dev = parser.get_parsed_content("device")
    t0 = time.perf_counter()
    trainer, _ = _build_fast(parser)
    network = parser.get_parsed_content("network")
    training_json = out_dir / "training.json"

    if not score_only:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        log: dict[str, Any] = {"setup_s": round(time.perf_counter() - t0, 2), "epoch_s": [], "loss": [], "saved": {}}
        clock = {"t": 0.0, "losses": []}

        @trainer.on(Events.EPOCH_STARTED)
        def _started(engine: Any) -> None:
            clock["t"], clock["losses"] = time.perf_counter(), []

        @trainer.on(Events.ITERATION_COMPLETED)
        def _loss(engine: Any) -> None:
            clock["losses"].append(float(from_engine(["loss"], first=True)(engine.state.output)))

        @trainer.on(Events.EPOCH_COMPLETED)
        def _save(engine: Any) -> None:
            log["epoch_s"].append(round(time.perf_counter() - clock["t"], 3))
            log["loss"].append(round(sum(clock["losses"]) / max(len(clock["losses"]), 1), 5))
            epoch = engine.state.epoch
            if epoch % int(save_every) == 0 or epoch >= last:
                buf = io.BytesIO()
                torch.save({"model": network.state_dict(), "epoch": epoch}, buf)
                atomic_write_bytes(ckpt_dir / f"epoch_{epoch:04d}.pt", buf.getvalue())
                log["saved"][str(epoch)] = round(log["setup_s"] + sum(log["epoch_s"]), 2)
                print(f"epoch {epoch}: saved, {log['saved'][str(epoch)]:.0f} s of training incl. setup, "
                      f"loss {log['loss'][-1]:.4f}", flush=True)
            if epoch >= last:
                engine.terminate()

        trainer.run()
        _atomic_write_text(training_json, json.dumps(log, indent=2) + "\n")
    if not training_json.is_file():
        raise FileNotFoundError(f"{training_json}: no training log; run without --score_only first")
    log = json.loads(training_json.read_text())
    paths = sorted(p for p in ckpt_dir.glob("epoch_*.pt") if int(p.stem.split("_")[1]) >= int(score_from))
    if not paths:
        raise FileNotFoundError(f"{ckpt_dir}: no checkpoints from epoch {score_from} on")

    loader = parser.get_parsed_content("validate#dataloader")
    inferer = parser.get_parsed_content("validate#inferer")
    train_loader = parser.get_parsed_content("train#dataloader")
    amp = bool(parser.get_parsed_content("amp"))
    names = [Path(d["image"]).name for d in parser.get_parsed_content("validate#datalist")]  # the loader's order
    rows = []
    for path in paths:
        state = torch.load(path, map_location=dev, weights_only=True)
        network.load_state_dict(state["model"])
        epoch = int(state["epoch"])
        variants = [("as saved", network)]
        if recompute_bn:
            variants.append(("BN recomputed", _recompute_bn(network, train_loader, dev, seed)))
        for weights, net in variants:
            cases = _score_cases(net, loader, inferer, dev, amp, names)
            row = {"epoch": epoch, "train_time_s": log["saved"].get(str(epoch)), "weights": weights,
                   "mean_dice": round(sum(c["dice"] for c in cases) / len(cases), 4),
                   "mean_dice_largest_component": round(sum(c["dice_largest_component"] for c in cases) / len(cases), 4),
                   "min_dice_largest_component": min(c["dice_largest_component"] for c in cases),
                   "mean_components": round(sum(c["components"] for c in cases) / len(cases), 1),
                   "cases": cases}
            rows.append(row)
            print(f"epoch {epoch} {weights}: Dice {row['mean_dice']:.3f}, largest component "
                  f"{row['mean_dice_largest_component']:.3f} (min {row['min_dice_largest_component']:.3f}), "
                  f"{row['mean_components']} components per case", flush=True)

    summary = _stability(rows)
    result = {
        "benchmark": "spleen-fast-train fast recipe: per-checkpoint validation Dice, per case",
        "data": _data_kind(parser.get_parsed_content("dataset_dir")),
        "command": "python " + shlex.join(sys.argv),
        "machine": _machine(),
        "device": str(dev),
        "configs": [f.name for f in files],
        "overrides": _as_dict(override),
        "schedule_epochs": epochs,
        "trained_epochs": len(log["epoch_s"]),
        "setup_s": log["setup_s"],
        "seconds_per_epoch": round(sum(log["epoch_s"]) / len(log["epoch_s"]), 3) if log["epoch_s"] else None,
        "train_loss_per_epoch": log["loss"],
        "notes": ("train_time_s: setup (caching) plus training epochs up to that checkpoint, no validation. Dice per "
                  "case on the bundle's validation pipeline and sliding-window inferer; largest component as the "
                  "bundle's inference.json/evaluate.json keep it. BN recomputed: batch-norm running statistics "
                  "replaced by their plain average over one pass of the training crops."),
        "summary": summary,
        "checkpoints": rows,
    }
    _atomic_write_text(out_dir / "checkpoints.json", json.dumps(result, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    print(f"wrote {out_dir / 'checkpoints.json'}")


_CHANNELS_LAST = {"network": "$@network_def.to(@device, memory_format=torch.channels_last_3d)"}
CPU_BASE = {"roi_size": [64, 64, 64], "batch_size": 2, "samples_per_volume": 2, **_CHANNELS_LAST}

WHOLE_VOLUME_VAL = {"val_roi_size": [240, 192, 192], "sw_batch_size": 1, "validate#inferer#overlap": 0.25}

# name -> (mode, overrides of train.json). throughput: seconds per iteration (no validation); validation: one
# validation pass after one iteration; convergence: train for budget_s seconds, then validate (the Dice reached).
CANDIDATES: dict[str, tuple[str, dict[str, Any]]] = {
    "train.json defaults (crop 96^3, batch 4 x 4 crops)": ("throughput", {}),
    "crop 64^3, batch 2 x 2 crops": ("throughput", {"roi_size": [64, 64, 64], "batch_size": 2, "samples_per_volume": 2}),
    "CPU base: crop 64^3, batch 2 x 2 crops, channels-last": ("throughput", CPU_BASE),
    "CPU base + track_meta true (MetaTensor cache)": ("throughput", {**CPU_BASE, "_meta_cache": True}),
    "CPU base + 1 torch thread": ("throughput", {**CPU_BASE, "num_threads": 1}),
    "CPU base + DataLoader 2 workers instead of ThreadDataLoader": (
        "throughput", {**CPU_BASE, "train#dataloader#_target_": "DataLoader", "train#dataloader#num_workers": 2}),
    "CPU base + no caching (cache_rate 0)": ("throughput", {**CPU_BASE, "train#dataset#cache_rate": 0.0}),
    "validation ROI 160^3 overlap 0.5 (train.json)": ("validation", CPU_BASE),
    "validation ROI 240x192x192 overlap 0.25, sw_batch 1": ("validation", {**CPU_BASE, **WHOLE_VOLUME_VAL}),
    "convergence: CPU base, Novograd lr 0.002 (train.json)": ("convergence", {**CPU_BASE, **WHOLE_VOLUME_VAL}),
    "convergence: CPU base, Novograd lr 0.01": ("convergence", {**CPU_BASE, **WHOLE_VOLUME_VAL, "learning_rate": 0.01}),
    "convergence: CPU base, SGD lr 0.05 nesterov": ("convergence", {**CPU_BASE, **WHOLE_VOLUME_VAL, "optimizer": {
        "_target_": "torch.optim.SGD", "params": "$@network.parameters()", "lr": 0.05, "momentum": 0.9, "nesterov": True}}),
    "convergence: CPU base, Adam lr 1e-3": ("convergence", {**CPU_BASE, **WHOLE_VOLUME_VAL, "optimizer": {
        "_target_": "torch.optim.Adam", "params": "$@network.parameters()", "lr": 0.001}}),
}


def _to_meta_cache(dataset: Any) -> Any:
    """A shallow copy of a CacheDataset whose cached tensors are MetaTensors (what ``track_meta=True`` caches)."""
    import copy

    from monai.data import MetaTensor

    ds = copy.copy(dataset)
    ds._cache = [{k: MetaTensor(v) if hasattr(v, "shape") and k in ("image", "label") else v for k, v in item.items()}
                 for item in dataset._cache]
    return ds


def candidates(
    out: str = "runs/bench_spleen_candidates",
    names: list[str] | None = None,
    budget_s: float = 90.0,
    iterations: int = 3,
    n_cases: int | None = None,
    resolution: str = "scan",
    dataset_dir: str | None = None,
    override: Any = None,
    device: str | None = None,
    conv_iterations: int | None = None,
) -> None:
    """Measure CPU speed-up candidates on the fast recipe (train.json + one override set each, see CANDIDATES).

    throughput candidates run ``iterations`` iterations (the first is warm-up) and report seconds per iteration and
    per crop with the phase split; validation candidates time one validation pass; convergence candidates train for
    ``budget_s`` seconds of iteration time (or ``conv_iterations`` iterations: the same compute for candidates that
    share a crop configuration, independent of the machine's load) from the same seed and report the validation
    Dice reached. The
    deterministic part is cached once and shared by all candidates (except "no caching"), so ``setup_s`` is a caching
    time only for the first and for "no caching". Writes ``candidates.json`` under ``out``.
    """
    import copy

    out_dir = Path(out).resolve()
    if isinstance(names, str):
        names = [names]
    chosen = list(CANDIDATES) if not names else [n for n in CANDIDATES if any(k in n for k in names)]
    base = {**_data_overrides(dataset_dir, n_cases, resolution), "bundle_root": str(BUNDLE),
            "ckpt_dir": str(out_dir / "models"), "output_dir": str(out_dir / "eval"), "val_interval": 10**9,
            "epochs": 10**6, **_as_dict(override)}
    if device is not None:
        base["device"] = f"$torch.device('{device}')"
    train_json = [BUNDLE / "configs" / "train.json"]
    _parser(train_json, base).get_parsed_content("validate#datalist")  # data generated outside the timings
    rows: dict[str, Any] = {}
    shared_cache: dict[str, Any] = {}
    for name in chosen:
        mode, cand = CANDIDATES[name]
        cand = dict(cand)
        meta = cand.pop("_meta_cache", False)
        parser = _parser(train_json, dict(base) | cand)
        fresh = any(k.startswith("train#dataset") for k in cand)
        if shared_cache and not fresh:
            for key in ("train", "validate"):  # the same cached items under this candidate's random transforms
                ds = _to_meta_cache(shared_cache[key]) if meta else copy.copy(shared_cache[key])
                ds.transform = parser.get_parsed_content(f"{key}#preprocessing")
                parser[f"{key}#dataset"] = ds
        print(f"--- candidate: {name} ({mode})", flush=True)
        res = _time_fast(
            parser, epochs=10**6,
            train_budget_s=budget_s if mode == "convergence" and conv_iterations is None else None,
            iterations=conv_iterations if mode == "convergence" else (1 if mode == "validation" else iterations),
            validate_at_end=mode != "throughput",
        )
        if not shared_cache and not fresh:
            shared_cache = {k: parser.get_parsed_content(f"{k}#dataset") for k in ("train", "validate")}
        res["mode"] = mode
        res["overrides"] = CANDIDATES[name][1]
        res["load_average_1_5_15"] = [round(x, 2) for x in os.getloadavg()]
        rows[name] = res
        print(json.dumps({k: res[k] for k in ("setup_s", "seconds_per_iteration", "seconds_per_crop", "iterations",
                                              "phase_share", "seconds_per_validation", "final_dice")}), flush=True)
        _atomic_write_text(out_dir / "candidates.json", json.dumps(
            {"budget_s": budget_s, "iterations": iterations, "conv_iterations": conv_iterations, "machine": _machine(), "rows": rows}, indent=2) + "\n")
    return None


def micro(
    out: str = "runs/bench_spleen_micro",
    sizes: list[int] | tuple[int, ...] = (64, 96),
    batch: int = 4,
    steps: int = 3,
    threads: list[int] | tuple[int, ...] | None = None,
) -> None:
    """Train-step and inference micro-benchmark of the bundle's UNet on random tensors (no data): fp32 against
    channels-last and bf16 autocast on CPU, for each crop size and torch thread count. Writes ``micro.json``."""
    import torch

    parser = _parser([BUNDLE / "configs" / "train.json"], {"bundle_root": str(BUNDLE)})
    threads = list(threads) if threads else sorted({1, os.cpu_count() or 1})
    rows = []
    for n_threads in threads:
        torch.set_num_threads(int(n_threads))
        for size in sizes:
            for variant in ("fp32", "channels_last_3d", "bf16_autocast"):
                torch.manual_seed(0)
                net = _net_from(parser)
                x = torch.rand(batch, 1, size, size, size)
                y = (torch.rand(batch, 1, size, size, size) > 0.9).long()
                if variant == "channels_last_3d":
                    net = net.to(memory_format=torch.channels_last_3d)
                    x = x.contiguous(memory_format=torch.channels_last_3d)
                loss_fn = parser.get_parsed_content("loss", instantiate=True)
                opt = torch.optim.SGD(net.parameters(), lr=0.01)
                ctx = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if variant == "bf16_autocast" else torch.enable_grad

                def step() -> None:
                    opt.zero_grad()
                    with ctx():
                        loss = loss_fn(net(x), y)
                    loss.float().backward()
                    opt.step()

                def infer() -> None:
                    net.eval()
                    with torch.no_grad(), ctx():
                        net(x)
                    net.train()

                res: dict[str, Any] = {"threads": n_threads, "crop": size, "batch": batch, "variant": variant}
                for name, fn in (("train_step_s", step), ("inference_s", infer)):
                    fn()  # warm-up
                    t0 = time.perf_counter()
                    for _ in range(steps):
                        fn()
                    res[name] = round((time.perf_counter() - t0) / steps, 3)
                rows.append(res)
                print(json.dumps(res), flush=True)
                _atomic_write_text(Path(out).resolve() / "micro.json",  # after each row: a partial run still counts
                                   json.dumps({"machine": _machine(), "rows": rows}, indent=2) + "\n")


def _code_lines(res: dict[str, Any]) -> list[str]:
    """Which commit of the repository ran each sitting (recorded since 2026-12-03; none for older results)."""
    sittings = [("the first sitting", res.get("code"))] + [
        (f"sitting {i + 2}", r.get("code")) for i, r in enumerate(res.get("resumes", []))]
    named = [f"{name} at commit `{c['commit'][:12]}`" + (" with uncommitted changes" if c["modified"] else "")
             for name, c in sittings if c]
    return [f"Code: {'; '.join(named)}.", ""] if named else []


def _fmt(v: Any, nd: int = 1, unit: str = "", none: str = "—") -> str:
    if v is None:
        return none
    if isinstance(v, float):
        return f"{v:.{nd}f}{unit}"
    return f"{v}{unit}"


def _checkpoints_section(c: dict[str, Any]) -> list[str]:
    """A markdown table of one ``checkpoints.json``: a row per scored checkpoint, every case's Dice in it."""
    lines = [
        f"## Dice per checkpoint: {', '.join(c['configs'])} + overrides `{json.dumps(c['overrides'])}` ({c['data']})",
        "",
        f"`{c['command']}` — {c['trained_epochs']} epochs of a {c['schedule_epochs']}-epoch cosine schedule, "
        f"{c['seconds_per_epoch']} s per epoch, setup {c['setup_s']} s, on {c['device']} "
        f"({c['machine'].get('cpu_count')}-core CPU" + (f", GPU {c['machine']['cuda']}" if c["machine"].get("cuda") else "")
        + "); no validation during training. Each checkpoint is scored on every validation case with the bundle's "
        "validation pipeline and sliding-window inferer; \"BN recomputed\": its batch-norm statistics replaced by "
        "their plain average over one pass of the training crops.",
        "",
        "| epoch | weights | training time (s) | mean Dice | mean Dice, largest component | min | components per case (mean) | per case, largest component |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in c["checkpoints"]:
        cases = " ".join(f"{x['dice_largest_component']:.2f}" for x in r["cases"])
        lines.append(
            f"| {r['epoch']} | {r['weights']} | {_fmt(r['train_time_s'], 0)} | {r['mean_dice']:.3f} | "
            f"**{r['mean_dice_largest_component']:.3f}** | {r['min_dice_largest_component']:.2f} | {r['mean_components']} | {cases} |"
        )
    stable = {k: v for k, v in _stability(c["checkpoints"]).items() if "0.90" in k}
    lines += ["", "Epochs (largest component, scored checkpoints only; \"stable from\": every later scored checkpoint "
              "stays at or above, and at least one does): "
              + "; ".join(f"{k.replace('_', ' ')} = {v if v is not None else 'not reached'}" for k, v in stable.items()), ""]
    return lines


def report(
    results: str = "bundles/spleen-fast-train/docs/results.json",
    out: str = "bundles/spleen-fast-train/docs/performance.md",
    profile_json: str | None = None,
    candidates_json: str | None = None,
    micro_json: str | None = None,
    checkpoints_json: list[str] | None = None,
    notes: str | None = None,
    plot: str | None = None,
) -> None:
    """Write the performance page (markdown) from the JSON files the other subcommands wrote, so every number in
    it comes from a command. ``checkpoints_json``: one or more ``checkpoints.json`` files (a table each). ``notes``: a markdown file inserted after the tables (findings, proposals). If ``out``
    exists and holds the line ``NOTES_MARKER``, everything from that line on (hand-written sections) is kept below the
    regenerated tables. ``plot``: also redraw the Dice-vs-time plot of ``results`` there (as ``bench`` draws it)."""
    res = json.loads(Path(results).read_text())
    kept = ""
    if Path(out).is_file():
        old = Path(out).read_text()
        if NOTES_MARKER in old:
            kept = old[old.index(NOTES_MARKER):]
    m = res["machine"]
    lines = [
        "# spleen-fast-train: regular vs fast recipe (synthetic phantoms)",
        "",
        "Every number on this page is measured on **synthetic phantoms** (the bundle's phantom spleen data set, not "
        "patient data). `python tools/bench_spleen.py report` wrote the sections down to the hand-written notes from "
        "the JSON files of `tools/bench_spleen.py`; the notes below them give the command behind each of their numbers.",
        "",
        f"**Machine:** {m.get('cpu_count')}-core CPU ({m.get('cpu_model', m.get('processor'))}), "
        + (f"GPU {m['cuda']}" if m.get("cuda") else "no GPU")
        + f" (device `{res['device']}`), torch {m.get('torch')}, MONAI {m.get('monai')}. Load average (1, 5, 15 min) "
        f"{m.get('load_average_1_5_15')} at the start and {res.get('load_average_at_end')} at the end, on "
        f"{m.get('cpu_count')} cores; the benchmark itself keeps about two busy (the regular recipe's DataLoader "
        "workers, the fast recipe's threads). The recipes were interleaved epoch by epoch, so any other load hit both "
        "alike."
        + ("" if m.get("cuda") else " The GPU goal (Dice >= 0.95 in <= 45 s) is unmeasured: no GPU was available to "
           "this run."),
        "",
        "**Command:**",
        "",
        "```bash",
        res["command"],
        *[r["command"] + f"   # sitting {i + 2}: regular epochs {r['from_epoch']} -> {r.get('to_epoch')}"
          for i, r in enumerate(res.get("resumes", []))],
        "```",
        "",
        *_code_lines(res),
        f"Data: {res['data']}, {res['n_train']} training / {res['n_validation']} validation cases (the bundle's seeded "
        f"split), validation every {res['val_interval_epochs']} epochs for both recipes, scored after the same "
        f"postprocessing: {res.get('validation_postprocessing', POSTPROCESS['none'])}. Times are each recipe's own "
        "wall time, including the fast recipe's caching and both recipes' validation.",
        "",
        "## Time to Dice (synthetic phantom)",
        "",
        "| recipe | time to Dice 0.80 (s) | 0.90 (s) | 0.95 (s) | final Dice | best Dice | epochs | s / epoch | "
        "s / validation | setup (s) | own time (s) / budget | peak PSS (MB) | peak RSS (MB) | stopped because |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in ("regular", "fast"):
        r = res["recipes"][name]
        lines.append(
            f"| {name} | {_fmt(r['time_to_dice_0.80_s'], none='not reached')} | "
            f"{_fmt(r['time_to_dice_0.90_s'], none='not reached')} | {_fmt(r['time_to_dice_0.95_s'], none='not reached')} | {_fmt(r['final_dice'], 3)} | {_fmt(r['best_dice'], 3)} | {r['epochs']} | "
            f"{_fmt(r['seconds_per_epoch'])} | {_fmt(r['seconds_per_validation'])} | {_fmt(r['setup_s'])} | "
            f"{_fmt(r['own_time_s'], 0)} / {_fmt(r['budget_s'], 0)} | {_fmt(r.get('peak_pss_mb'), 0)} | "
            f"{_fmt(r['peak_rss_mb'], 0)} | {r['stopped_because']} |"
        )
    lines += ["", "Peak PSS is the memory the process and its DataLoader workers held (shared pages split among them); "
              "peak RSS counts pages shared with forked workers once per worker, so it overstates the footprint. "
              "Both include what the other recipe kept resident at the time (e.g. the fast recipe's cache).",
              "", "Recipes:", ""]
    for name in ("regular", "fast"):
        lines.append(f"- **{name}**: {res['recipes'][name]['recipe']}")
    lines += ["", "Ratios regular / fast (synthetic phantom; `_lower_bound`: the regular recipe had not reached the "
              "threshold when its budget ran out, so the true ratio is at least this; n/a: the fast recipe did not "
              "reach the threshold either, so no ratio can be stated):", "",
              "| ratio | value |", "|---|---|"]
    for k, v in res.items():
        if "ratio" in k:
            lines.append(f"| `{k}` | {_fmt(v, 2, none='n/a')} |")
    lines += ["", "![validation Dice vs own wall time](dice_vs_time.png)", ""]
    if profile_json and Path(profile_json).is_file():
        p = json.loads(Path(profile_json).read_text())
        lines += [
            "## Profile of the fast recipe (synthetic phantom)",
            "",
            f"`python tools/bench_spleen.py profile` — configs {p['configs']}, overrides `{json.dumps(p['overrides'])}`, "
            f"{p['iterations']} iterations ({p['crops_per_iteration']} crops each), first left out as warm-up; load "
            f"average {p['machine'].get('load_average_1_5_15')}.",
            "",
            "| phase | s / iteration | share |",
            "|---|---|---|",
        ]
        for ph, v in p["phase_s"].items():
            lines.append(f"| {ph} | {v:.3f} | {100 * p['phase_share'].get(ph, 0):.1f}% |")
        lines.append(f"| **iteration** | {p['seconds_per_iteration']:.3f} | 100% |")
        lines += ["", f"Setup (caching the training and validation volumes): {p['setup_s']} s. One validation pass: "
                  f"{p['seconds_per_validation']} s. Validation share of wall time at val_interval 1 / 2 / 5 epochs: "
                  f"{p.get('validation_share_at_val_interval')}.", ""]
    if candidates_json and Path(candidates_json).is_file():
        c = json.loads(Path(candidates_json).read_text())
        lines += [
            "## CPU candidates (synthetic phantom)",
            "",
            f"`python tools/bench_spleen.py candidates` — each row is train.json plus the overrides shown, measured "
            f"one after another on the same cached data (throughput: {c['iterations']} iterations, first left out"
            + ("; convergence: the same training from one seed, then one validation"
               if any(r["mode"] == "convergence" for r in c["rows"].values()) else "")
            + "). Single runs on a shared VM: differences under ~20% are within the noise.",
            "",
            "| candidate | mode | s / iteration | s / crop | data share | s / validation | Dice after budget | load avg (1 min) | overrides |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for name, r in c["rows"].items():
            share = r["phase_share"].get("data") if r.get("phase_share") else None
            lines.append(
                f"| {name} | {r['mode']} | {_fmt(r['seconds_per_iteration'] or None, 2)} | "
                f"{_fmt(r['seconds_per_crop'] or None, 3)} | {_fmt(None if share is None else 100 * share, 1, '%')} | "
                f"{_fmt(r['seconds_per_validation'])} | {_fmt(r['final_dice'], 3)} | {r['load_average_1_5_15'][0]} | "
                f"`{json.dumps(r['overrides'])}` |"
            )
        lines.append("")
    for path in [checkpoints_json] if isinstance(checkpoints_json, str) else (checkpoints_json or []):
        lines += _checkpoints_section(json.loads(Path(path).read_text()))
    if micro_json and Path(micro_json).is_file():
        mi = json.loads(Path(micro_json).read_text())
        lines += [
            "## UNet micro-benchmark on random tensors (no data)",
            "",
            "`python tools/bench_spleen.py micro` — one training step (forward, DiceCE loss, backward, SGD step) and one "
            "inference forward of the bundle's UNet, batch 4; bf16 autocast is CPU autocast (the trainer's `amp` "
            "flag is CUDA-only).",
            "",
            "| torch threads | crop | variant | train step (s) | inference (s) |",
            "|---|---|---|---|---|",
        ]
        for r in mi["rows"]:
            lines.append(f"| {r['threads']} | {r['crop']}^3 | {r['variant']} | {r['train_step_s']} | {r['inference_s']} |")
        lines.append("")
    if notes and Path(notes).is_file():
        lines += [Path(notes).read_text().rstrip(), ""]
    text = "\n".join(lines) + "\n"
    if kept:
        text += "\n" + kept.rstrip() + "\n"
    _atomic_write_text(Path(out), text)
    print(f"wrote {out}")
    if plot:
        _plot(res, Path(plot))
        print(f"wrote {plot}")


if __name__ == "__main__":
    fire.Fire({"bench": bench, "resume": resume, "regular_errors": regular_errors, "checkpoints": checkpoints, "profile": profile, "candidates": candidates, "micro": micro, "report": report})
