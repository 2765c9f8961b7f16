"""Shared helpers for the bundle tests: the real bundle runner in a subprocess, and small data sets.

Every bundle run here goes through ``python -m monai.bundle run`` in a child process (as a user would type it), with
``bundle_root`` in a temporary folder so the repository stays clean. Data are small synthetic phantoms written as real
NIfTI files in the MSD ``Task09_Spleen`` layout, written by the phantom engine (``bundlezoo.data.layouts.write_msd_spleen``
with ``resolution="tiny"``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib

REPO = Path(__file__).resolve().parents[2]
SPLEEN = REPO / "bundles" / "spleen-fast-train"
SPLEEN_CONFIGS = SPLEEN / "configs"
SMOKE_OVERRIDE = Path(__file__).resolve().parent / "configs" / "spleen_fast_train_smoke.json"
SMOKE_CASES = 6  # the seeded split (val_fraction 0.25) gives 4 training and 2 validation cases
INPUT_ERROR = "InputDataError: "
#: inference.json overrides matching the smoke override's grid and crop sizes (its defaults are the full recipe's)
INFER_OVERRIDES = {"pixdim": [6.0, 6.0, 6.0], "roi_size": [64, 64, 64], "sw_batch_size": 1, "num_threads": 1}


def _cfg_list(configs: Sequence[str | Path]) -> str:
    """A config list as the bundle CLI takes it: ``"['a.json','b.json']"``."""
    return "[" + ",".join(repr(str(c)) for c in configs) + "]"


def bundle_env(**extra: str) -> dict[str, str]:
    """Environment of a child bundle run: the repository importable, few threads, no GPU, no network."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.setdefault("OMP_NUM_THREADS", "2")
    env["CUDA_VISIBLE_DEVICES"] = ""  # the CPU path is the one under test; it is also what CI has
    env["MLFLOW_TRACKING_URI"] = ""  # never reach a tracking server from the user's environment
    env.update(extra)
    return env


@dataclass
class BundleRun:
    """The result of one child bundle run."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + "\n" + self.stderr

    def describe(self, tail: int = 6000) -> str:
        """The command and the end of its output, for assertion messages."""
        return f"$ {' '.join(self.args)}\n(exit {self.returncode})\n--- output tail ---\n{self.output[-tail:]}"

    def input_error_lines(self) -> list[str]:
        """The ``InputDataError: <path>: <problem>`` lines of the run's stderr, without the exception prefix."""
        return [line.split(INPUT_ERROR, 1)[1] for line in self.stderr.splitlines() if INPUT_ERROR in line]


@dataclass
class TrainedBundle:
    """A bundle_root holding a trained model, the data it was trained on and the training run."""

    bundle_root: Path
    dataset_dir: Path
    run: BundleRun

    @property
    def model(self) -> Path:
        return self.bundle_root / "models" / "model.pt"


def run_bundle(
    configs: Sequence[str | Path],
    *,
    bundle_root: str | Path,
    overrides: dict[str, Any] | None = None,
    torchrun_nproc: int | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 600,
    extra_args: Sequence[str] = (),
) -> BundleRun:
    """Run ``python -m monai.bundle run`` (or under ``torch.distributed.run``) on ``configs``; never raises on failure.

    ``overrides`` become ``--key value`` arguments; non-string values are JSON-encoded (what the CLI parses back).
    """
    args = bundle_args(configs, bundle_root=bundle_root, overrides=overrides, torchrun_nproc=torchrun_nproc,
                       extra_args=extra_args)
    proc = subprocess.run(args, cwd=REPO, env=env or bundle_env(), capture_output=True, text=True, timeout=timeout)
    return BundleRun(args, proc.returncode, proc.stdout, proc.stderr)


def bundle_args(
    configs: Sequence[str | Path],
    *,
    bundle_root: str | Path,
    overrides: dict[str, Any] | None = None,
    torchrun_nproc: int | None = None,
    extra_args: Sequence[str] = (),
) -> list[str]:
    """The command line :func:`run_bundle` runs (for a test that starts the process itself, e.g. to kill it)."""
    if torchrun_nproc:
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                    str(torchrun_nproc), "-m", "monai.bundle"]
    else:
        launcher = [sys.executable, "-m", "monai.bundle"]
    args = [*launcher, "run", "--config_file", _cfg_list(configs), "--bundle_root", str(bundle_root),
            "--logging_file", str(SPLEEN_CONFIGS / "logging.conf")]
    for key, value in (overrides or {}).items():
        args += [f"--{key}", value if isinstance(value, str) else json.dumps(value)]
    return args + list(extra_args)


def train_configs(*more: str | Path) -> list[Path]:
    """train.json, then any override configs, then the smoke override (small crops, coarse grid, few epochs)."""
    return [SPLEEN_CONFIGS / "train.json", *[Path(m) for m in more], SMOKE_OVERRIDE]


# ---------------------------------------------------------------------------------------------------------------------
# data

def write_msd_spleen_small(out_dir: Path, n_train: int, *, seed: int = 0) -> Path:
    """Write a small MSD Task09_Spleen-layout folder of ``n_train`` labelled synthetic phantoms (``tiny`` grid)."""
    from bundlezoo.data.layouts import write_msd_spleen

    write_msd_spleen(out_dir, n_train=n_train, n_test=0, seed=seed, resolution="tiny", progress=False)
    return out_dir


def reorient_nifti(src: str | Path, dst: str | Path, axcodes: str) -> nib.Nifti1Image:
    """Write ``src`` with its voxel axes permuted/flipped to ``axcodes`` (same world content, new affine)."""
    from nibabel.orientations import axcodes2ornt, io_orientation, ornt_transform

    img = nib.load(str(src))
    out = img.as_reoriented(ornt_transform(io_orientation(img.affine), axcodes2ornt(tuple(axcodes))))
    nib.save(out, str(dst))
    assert "".join(nib.aff2axcodes(out.affine)) == axcodes
    return out


def list_files(folder: Path) -> list[str]:
    """All files below ``folder`` (relative paths, hidden ones included), [] when it does not exist."""
    if not folder.exists():
        return []
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())

