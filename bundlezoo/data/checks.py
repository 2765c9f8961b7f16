"""Input checks that turn bad data into one clear line naming the file and what is wrong."""

from __future__ import annotations

import logging
import math
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

__all__ = ["InputDataError", "check_image_header", "check_nifti_header", "check_affine", "check_array",
           "check_label_values", "is_dicom_file", "one_line", "one_line_error_in_chain", "OneLineError",
           "set_debug"]

#: Environment variable that, set to 1, makes a run that dies of bad input print the full traceback as well.
DEBUG_ENV = "BUNDLEZOO_DEBUG"
_debug = False


def one_line(text: object, limit: int = 300) -> str:
    """``text`` on one line (whitespace runs collapsed), cut to ``limit`` characters with ``...``."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def set_debug(enabled: bool) -> None:
    """Show full tracebacks for input errors (the default is the one ``InputDataError`` line)."""
    global _debug
    _debug = bool(enabled)


def debug_enabled() -> bool:
    """True when tracebacks are wanted: :func:`set_debug` was called with True, or ``BUNDLEZOO_DEBUG=1``."""
    return _debug or os.environ.get(DEBUG_ENV, "") not in ("", "0")


class OneLineError(Exception):
    """An error whose one-line message is all a user needs: a process that dies of one prints just that line.

    MONAI wraps errors raised inside transforms and component construction in several layers of ``RuntimeError``,
    so the useful line ends up in the middle of a long traceback. Creating a ``OneLineError`` therefore installs
    (once) an exception hook that, when the process dies of an exception whose chain holds one, prints
    ``<ErrorClass>: <message>`` instead of the traceback (the traceback too when :func:`debug_enabled`).
    """

    def __init__(self, message: str) -> None:
        super().__init__(one_line(message, limit=1000))
        _install_excepthook()


class InputDataError(OneLineError, ValueError):
    """Raised for unusable input data; the message is one line: ``<path>: <what is wrong>``."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = str(path)
        self.problem = one_line(problem, limit=1000)
        super().__init__(f"{self.path}: {self.problem}")


def one_line_error_in_chain(exc: BaseException | None, kind: type[OneLineError] = OneLineError) -> OneLineError | None:
    """The first ``kind`` error (a :class:`OneLineError` by default) in ``exc``'s causes and contexts, or None."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, kind):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def _install_excepthook() -> None:
    if getattr(sys.excepthook, "_reports_input_errors", False):
        return
    previous = sys.excepthook

    def hook(exc_type: type[BaseException], exc: BaseException, tb: object) -> None:
        found = one_line_error_in_chain(exc)
        if found is None or debug_enabled():
            previous(exc_type, exc, tb)
        if found is not None:
            print(f"{type(found).__name__}: {found}", file=sys.stderr, flush=True)
            # The process is dying of bad input. Leave now with exit status 1: a normal interpreter shutdown can
            # abort (SIGABRT, "terminate called without an active exception") when the error struck while
            # CacheDataset's worker threads were still inside native code. Everything written so far went through
            # temporary names and renames, so nothing half-written is left behind by exiting here.
            # An interactive session (the python prompt also reports through sys.excepthook) carries on instead.
            if not (hasattr(sys, "ps1") or sys.flags.interactive):
                logging.shutdown()
                sys.stdout.flush()
                os._exit(1)

    hook._reports_input_errors = True  # type: ignore[attr-defined]
    sys.excepthook = hook


def check_nifti_header(path: str | Path, *, max_channels: int = 1) -> tuple[int, ...]:
    """Read a NIfTI header only (cheap) and return the spatial shape.

    Catches a missing file, a file that is not NIfTI, a header that cannot be parsed, images with more than
    ``max_channels`` channels, a degenerate affine (:func:`check_affine`) and a truncated uncompressed file, each
    as :class:`InputDataError`.

    Args:
        path: the ``.nii`` / ``.nii.gz`` file.
        max_channels: largest number of channels accepted (a 4th/5th dimension counts as channels).

    Returns:
        The three spatial dimensions.
    """
    import nibabel as nib

    p = Path(path)
    if not p.is_file():
        raise InputDataError(p, "file not found")
    try:
        img = nib.load(str(p))
    except Exception as e:  # nibabel raises several types for bad files
        raise InputDataError(p, f"not a readable NIfTI file ({type(e).__name__}: {e})") from e
    shape = tuple(int(s) for s in img.shape)
    if len(shape) < 3:
        raise InputDataError(p, f"expected a 3D volume, got shape {shape}")
    channels = math.prod(shape[3:]) if len(shape) > 3 else 1
    if channels > max_channels:
        raise InputDataError(p, f"expected a single-channel 3D volume, got shape {shape} ({channels} channels)")
    check_affine(p, img.affine)
    if not p.name.lower().endswith(".gz"):
        # uncompressed: a truncated file is visible from its size (a .gz one only by decompressing it all)
        needed = int(img.dataobj.offset) + math.prod(shape) * img.get_data_dtype().itemsize
        size = p.stat().st_size
        if size < needed:
            raise InputDataError(p, f"truncated: {size} bytes, its header describes {needed}")
    return shape[:3]


def check_affine(path: str | Path, affine: np.ndarray | Sequence[Sequence[float]]) -> None:
    """Check a voxel-to-world affine: finite, every voxel axis with a spacing > 0, axes not collinear.

    A zero column (spacing 0) or collinear axes leave no orientation to resample from; MONAI's ``Orientationd``
    then fails deep inside a transform chain ("Unable to find out axis").
    """
    a = np.asarray(affine, dtype=np.float64)
    if a.shape != (4, 4) or not np.isfinite(a).all():
        raise InputDataError(path, f"affine is not a finite 4x4 matrix: {one_line(a.tolist(), 200)}")
    spacing = np.linalg.norm(a[:3, :3], axis=0)
    zero = [i for i, s in enumerate(spacing) if s <= 0]
    if zero:
        raise InputDataError(path, f"affine gives voxel spacing 0 along voxel axis {zero} (a zero column); "
                                   f"the image has no usable geometry")
    if abs(np.linalg.det(a[:3, :3] / spacing)) < 1e-6:
        raise InputDataError(path, "affine is degenerate (determinant 0: two voxel axes point the same way); "
                                   "the image has no usable geometry")


def check_image_header(path: str | Path) -> tuple[int, ...]:
    """Check an inference input without reading its voxels: a NIfTI file, or a folder holding one DICOM series.

    Readable, 3D, one channel, finite non-degenerate geometry, spacing > 0 (see :func:`check_nifti_header` and
    :func:`bundlezoo.data.dicom.check_dicom_series`).

    Returns:
        The three spatial dimensions.
    """
    p = Path(path)
    if p.is_dir():
        from .dicom import check_dicom_series  # deferred: pydicom is only needed for DICOM inputs

        return check_dicom_series(p)
    return check_nifti_header(p)


def check_array(path: str | Path, array: np.ndarray | object, *, max_channels: int = 1) -> None:
    """Check voxel data: finite values and at most ``max_channels`` channels (channel-first array)."""
    arr = np.asarray(array)
    if arr.ndim == 4 and arr.shape[0] > max_channels:
        raise InputDataError(path, f"expected a single-channel 3D volume, got {arr.shape[0]} channels")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        n_bad = int((~np.isfinite(arr)).sum())
        raise InputDataError(path, f"contains {n_bad} NaN/Inf voxels")


def check_label_values(path: str | Path, label: np.ndarray | object, allowed: Iterable[int]) -> None:
    """Check that a label map holds only the ``allowed`` integer values."""
    arr = np.asarray(label)
    allowed_set = {int(v) for v in allowed}
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all():
            raise InputDataError(path, "label contains NaN/Inf voxels")
        if not np.all(arr == np.round(arr)):
            raise InputDataError(path, "label contains non-integer values")
    values = {int(v) for v in np.unique(arr)}
    extra = sorted(values - allowed_set)
    if extra:
        raise InputDataError(path, f"label values {extra[:10]} outside the allowed set {sorted(allowed_set)}")


def check_same_shape(image_path: str | Path, image_shape: Sequence[int], label_path: str | Path,
                     label_shape: Sequence[int]) -> None:
    """Raise when an image and its label do not share one spatial shape."""
    if tuple(image_shape) != tuple(label_shape):
        raise InputDataError(label_path, f"label shape {tuple(label_shape)} differs from image shape "
                                         f"{tuple(image_shape)} of {image_path}")


def is_dicom_file(path: str | Path) -> bool:
    """True when ``path`` carries the DICOM Part 10 signature (``DICM`` at byte 128)."""
    try:
        with open(path, "rb") as f:
            f.seek(128)
            return f.read(4) == b"DICM"
    except OSError:
        return False
