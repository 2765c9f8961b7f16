"""Atomic file writes: write to a temporary name in the same folder, then ``os.replace`` (a crash never leaves a
half-written file under the final name)."""

from __future__ import annotations

import gzip
import json
import os
import pathlib
import tempfile

import nibabel as nib
import numpy as np

__all__ = ["atomic_write_bytes", "atomic_write_json", "nifti_bytes", "save_nifti"]


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> pathlib.Path:
    """Write ``data`` to ``path`` atomically; the temporary file is a hidden ``.name.*.tmp`` in the same folder."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_json(path: str | os.PathLike, obj) -> pathlib.Path:
    """Write ``obj`` as indented JSON (4 spaces, stable key order as given) atomically."""
    return atomic_write_bytes(path, (json.dumps(obj, indent=4) + "\n").encode())


def nifti_bytes(array: np.ndarray, affine: np.ndarray) -> bytes:
    """Uncompressed single-file NIfTI-1 bytes with the affine in both qform and sform (code 1, scanner)."""
    img = nib.Nifti1Image(array, np.asarray(affine, dtype=np.float64))
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    img.header.set_xyzt_units("mm", "sec")
    img.header.set_data_dtype(array.dtype)
    return img.to_bytes()


def save_nifti(path: str | os.PathLike, array: np.ndarray, affine: np.ndarray, compresslevel: int = 1) -> pathlib.Path:
    """Save a NIfTI atomically; ``.gz`` paths are gzipped with mtime 0 so one array gives identical bytes.

    Level 1 compression: HU volumes with noise barely compress better at higher levels but take several times longer.
    """
    raw = nifti_bytes(array, affine)
    if str(path).endswith(".gz"):
        raw = gzip.compress(raw, compresslevel=compresslevel, mtime=0)
    return atomic_write_bytes(path, raw)
