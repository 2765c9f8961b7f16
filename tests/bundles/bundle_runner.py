"""Shared helpers for the bundle tests: the real bundle runner in a subprocess, and small data sets.

Every bundle run here goes through ``python -m monai.bundle run`` in a child process (as a user would type it), with
``bundle_root`` in a temporary folder so the repository stays clean. Data are small synthetic phantoms written as real
NIfTI files in the MSD ``Task09_Spleen`` layout, by the phantom engine (``common.data.layouts.write_msd_spleen`` with
``resolution="tiny"``) when it is available, else by a small stand-in below that writes the same layout.
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
import numpy as np

REPO = Path(__file__).resolve().parents[2]
SPLEEN = REPO / "bundles" / "spleen-fast-train"
SPLEEN_CONFIGS = SPLEEN / "configs"
SMOKE_OVERRIDE = Path(__file__).resolve().parent / "configs" / "spleen_fast_train_smoke.json"
SMOKE_CASES = 6  # the seeded split (val_fraction 0.25) gives 4 training and 2 validation cases
INPUT_ERROR = "InputDataError: "


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
    if torchrun_nproc:
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                    str(torchrun_nproc), "-m", "monai.bundle"]
    else:
        launcher = [sys.executable, "-m", "monai.bundle"]
    args = [*launcher, "run", "--config_file", _cfg_list(configs), "--bundle_root", str(bundle_root),
            "--logging_file", str(SPLEEN_CONFIGS / "logging.conf")]
    for key, value in (overrides or {}).items():
        args += [f"--{key}", value if isinstance(value, str) else json.dumps(value)]
    args += list(extra_args)
    proc = subprocess.run(args, cwd=REPO, env=env or bundle_env(), capture_output=True, text=True, timeout=timeout)
    return BundleRun(args, proc.returncode, proc.stdout, proc.stderr)


def train_configs(*more: str | Path) -> list[Path]:
    """train.json, then any override configs, then the smoke override (small crops, coarse grid, few epochs)."""
    return [SPLEEN_CONFIGS / "train.json", *[Path(m) for m in more], SMOKE_OVERRIDE]


# ---------------------------------------------------------------------------------------------------------------------
# data

def phantom_engine_available() -> bool:
    try:
        from common.data.layouts import write_msd_spleen  # noqa: F401
    except ImportError:
        return False
    return True


def write_msd_spleen_small(out_dir: Path, n_train: int, *, seed: int = 0) -> Path:
    """Write a small MSD Task09_Spleen-layout folder of ``n_train`` labelled synthetic phantoms."""
    if phantom_engine_available():
        from common.data.layouts import write_msd_spleen

        write_msd_spleen(out_dir, n_train=n_train, n_test=0, seed=seed, resolution="tiny", progress=False)
        return out_dir
    return _write_standin_msd(out_dir, n_train, seed=seed)


def _standin_phantom(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A crude CT-like volume (air, fat rim, soft tissue, one spleen ellipsoid) on a coarse RAS grid.

    Only used until the phantom engine lands; it is just big enough for the smoke override's 32^3 crops at 4 mm.
    """
    rng = np.random.default_rng(seed)
    shape, spacing = (64, 56, 40), np.array([3.5, 3.5, 5.0])
    origin = -np.array(shape) * spacing / 2
    x, y, z = (origin[i] + spacing[i] * np.arange(shape[i]) for i in range(3))
    X, Y, Z = np.meshgrid(x, y, z, indexing="ij")
    body = (X / 100) ** 2 + (Y / 80) ** 2 <= 1
    inner = (X / 88) ** 2 + (Y / 68) ** 2 <= 1
    c = np.array([60, -10, 0]) + rng.uniform(-8, 8, 3)
    r = np.array([35, 25, 45]) * rng.uniform(0.85, 1.15, 3)
    spleen = ((X - c[0]) / r[0]) ** 2 + ((Y - c[1]) / r[1]) ** 2 + ((Z - c[2]) / r[2]) ** 2 <= 1
    hu = np.full(shape, -1000.0)
    hu[body] = -100
    hu[inner] = 45
    hu[spleen & inner] = 120
    hu += rng.normal(0, 12, shape) * body
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = origin
    return hu.astype(np.int16), (spleen & inner).astype(np.uint8), affine


def _write_standin_msd(out_dir: Path, n_train: int, *, seed: int = 0) -> Path:
    (out_dir / "imagesTr").mkdir(parents=True, exist_ok=True)
    (out_dir / "labelsTr").mkdir(parents=True, exist_ok=True)
    training = []
    for i in range(n_train):
        image, label, affine = _standin_phantom(seed * 1000 + i)
        name = f"spleen_{i:03d}.nii.gz"
        nib.save(nib.Nifti1Image(image, affine), out_dir / "imagesTr" / name)
        nib.save(nib.Nifti1Image(label, affine), out_dir / "labelsTr" / name)
        training.append({"image": f"./imagesTr/{name}", "label": f"./labelsTr/{name}"})
    manifest = {"name": "Spleen", "description": "synthetic phantom stand-in", "modality": {"0": "CT"},
                "labels": {"0": "background", "1": "spleen"}, "numTraining": n_train, "numTest": 0,
                "training": training, "test": []}
    (out_dir / "dataset.json").write_text(json.dumps(manifest, indent=4))
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


def write_dicom_series(image_hu: np.ndarray, affine: np.ndarray, out_dir: str | Path) -> Path:
    """Write a 3D HU volume (RAS affine) as a CT DICOM series, one file per slice of the last axis.

    Uses ``common.data.dicom.write_dicom_series`` when the phantom engine provides it; otherwise a minimal pydicom
    writer (CT Image Storage, signed 16-bit, positions and direction cosines in LPS as DICOM requires).
    """
    try:
        from common.data.dicom import write_dicom_series as engine_writer
    except ImportError:
        engine_writer = None
    if engine_writer is not None:
        engine_writer(image_hu, affine, out_dir)
        return Path(out_dir)
    return _standin_dicom_series(image_hu, affine, Path(out_dir))


def _standin_dicom_series(image_hu: np.ndarray, affine: np.ndarray, out_dir: Path) -> Path:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    out_dir.mkdir(parents=True, exist_ok=True)
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ np.asarray(affine, dtype=float)
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    row_cos, col_cos = lps[:3, 0] / spacing[0], lps[:3, 1] / spacing[1]
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    vol = np.asarray(image_hu, dtype=np.int16)
    for k in range(vol.shape[2]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.Modality, ds.PatientID, ds.PatientName, ds.SeriesNumber = "CT", "PHANTOM", "Synthetic^Phantom", 1
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [float(v) for v in lps[:3, :3] @ np.array([0, 0, k]) + lps[:3, 3]]
        ds.ImageOrientationPatient = [float(v) for v in (*row_cos, *col_cos)]
        ds.PixelSpacing = [float(spacing[1]), float(spacing[0])]  # (between rows, between columns)
        ds.SliceThickness = float(spacing[2])
        ds.Rows, ds.Columns = vol.shape[1], vol.shape[0]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope = 0, 1
        ds.PixelData = np.ascontiguousarray(vol[:, :, k].T).tobytes()  # pixel (row r, column c) = voxel (c, r, k)
        ds.save_as(out_dir / f"slice_{k:04d}.dcm", enforce_file_format=True)
    return out_dir
