"""Inference inputs: a folder of NIfTI files, a folder holding one DICOM series, or a folder of series folders."""

from __future__ import annotations

from pathlib import Path

from .checks import InputDataError, is_dicom_file

__all__ = ["INPUT_LAYOUT", "image_datalist"]

INPUT_LAYOUT = "a folder of NIfTI files (*.nii, *.nii.gz), a folder holding one DICOM series, or a folder of DICOM series folders"
NIFTI_SUFFIXES = (".nii", ".nii.gz")


def _is_nifti(p: Path) -> bool:
    return p.is_file() and p.name.lower().endswith(NIFTI_SUFFIXES) and not p.name.startswith(".")


def _holds_dicom(folder: Path) -> bool:
    return any(f.is_file() and (f.suffix.lower() == ".dcm" or is_dicom_file(f)) for f in folder.iterdir())


def image_datalist(dataset_dir: str | Path) -> list[dict[str, str]]:
    """List the images to segment in ``dataset_dir`` as ``[{"image": path}, ...]``, sorted by name.

    A NIfTI entry is a file; a DICOM entry is the series folder (MONAI's ``LoadImage`` reads a folder as a series).

    Raises:
        InputDataError: the folder is missing or holds neither NIfTI files nor DICOM series.
    """
    root = Path(dataset_dir).expanduser()
    if not root.is_dir():
        raise InputDataError(root, f"input folder not found; expected {INPUT_LAYOUT}")
    niftis = sorted(p for p in root.iterdir() if _is_nifti(p))
    if niftis:
        return [{"image": str(p.resolve())} for p in niftis]
    if _holds_dicom(root):
        return [{"image": str(root.resolve())}]
    series = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".") and _holds_dicom(d))
    if series:
        return [{"image": str(d.resolve())} for d in series]
    raise InputDataError(root, f"holds no input images; expected {INPUT_LAYOUT}")
