"""Atomic file writes: write to a temporary name in the same folder, then ``os.replace`` (a crash never leaves a
half-written file under the final name)."""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import pathlib
import tempfile
from collections.abc import Iterator
from typing import Any

import nibabel as nib
import numpy as np

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_json", "atomic_write_text", "nifti_bytes", "save_nifti"]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[pathlib.Path]:
    """Yield a temporary path beside ``path`` to write to; on success it is synced and renamed to ``path``.

    The temporary name is hidden (``.partial-<random>-<name>``) and keeps the full name, so writers that choose a
    format from the suffix (``.nii.gz``) still do. On an exception it is removed and ``path`` is left as it was.

    Example::

        with atomic_path(out / "case_seg.nii.gz") as tmp:
            nib.save(img, tmp)
    """
    final = pathlib.Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=".partial-", suffix=f"-{final.name}", dir=final.parent)
    os.close(fd)
    tmp = pathlib.Path(name)
    try:
        yield tmp
        with open(tmp, "rb") as f:  # the data must be on disk before the rename makes them visible
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> pathlib.Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return pathlib.Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> pathlib.Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode())


def atomic_write_json(path: str | os.PathLike, obj: Any) -> pathlib.Path:
    """Write ``obj`` as indented JSON (4 spaces, stable key order as given) atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=4) + "\n")


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
