"""Header checks of inference inputs: every problem is one InputDataError naming the file, found without reading
voxels. Real NIfTI files and real DICOM series (bundlezoo.data.dicom writes them)."""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from bundlezoo.data.checks import InputDataError, check_image_header
from bundlezoo.data.dicom import write_dicom_series

AFFINE = np.diag([1.5, 1.5, 2.0, 1.0])


def nifti(path: Path, affine: np.ndarray = AFFINE, shape: tuple[int, ...] = (8, 9, 10)) -> Path:
    img = nib.Nifti1Image(np.zeros(shape, np.int16), AFFINE)
    img.set_sform(affine, code=1)  # nibabel cannot store a degenerate qform; the sform is what readers use
    nib.save(img, path)
    return path


def problem(path: Path) -> str:
    with pytest.raises(InputDataError) as exc:
        check_image_header(path)
    message = str(exc.value)
    assert message.startswith(f"{path}: ") and "\n" not in message, message
    return message


def test_good_nifti_and_series_pass(tmp_path: Path) -> None:
    assert check_image_header(nifti(tmp_path / "a.nii.gz")) == (8, 9, 10)
    assert check_image_header(write_dicom_series(np.zeros((8, 9, 10)), AFFINE, tmp_path / "s")) == (8, 9, 10)


@pytest.mark.parametrize("column", [0, 1, 2])
def test_zero_affine_column(tmp_path: Path, column: int) -> None:
    affine = AFFINE.copy()
    affine[:3, column] = 0.0
    assert f"spacing 0 along voxel axis [{column}]" in problem(nifti(tmp_path / "a.nii.gz", affine))


def test_collinear_axes(tmp_path: Path) -> None:
    affine = AFFINE.copy()
    affine[:3, 2] = affine[:3, 0]
    assert "degenerate" in problem(nifti(tmp_path / "a.nii.gz", affine))


def test_non_finite_affine(tmp_path: Path) -> None:
    affine = AFFINE.copy()
    affine[0, 3] = np.nan
    assert "not a finite" in problem(nifti(tmp_path / "a.nii.gz", affine))


def test_two_dimensional_image(tmp_path: Path) -> None:
    assert "3D" in problem(nifti(tmp_path / "a.nii", shape=(8, 9)))


def test_truncated_uncompressed_nifti(tmp_path: Path) -> None:
    path = nifti(tmp_path / "a.nii")
    path.write_bytes(path.read_bytes()[:-100])
    assert "truncated" in problem(path)


def series(tmp_path: Path, name: str = "s") -> Path:
    return write_dicom_series(np.zeros((8, 9, 4)), AFFINE, tmp_path / name)


def test_two_series_in_one_folder(tmp_path: Path) -> None:
    folder = series(tmp_path)
    other = write_dicom_series(np.ones((8, 9, 4)), AFFINE, tmp_path / "other")
    for f in other.iterdir():
        shutil.copy(f, folder / f"other_{f.name}")
    assert "2 DICOM series" in problem(folder)


def test_duplicate_slice_positions(tmp_path: Path) -> None:
    folder = series(tmp_path)
    files = sorted(folder.iterdir())
    first = pydicom.dcmread(files[0])
    for f in files[1:2]:
        ds = pydicom.dcmread(f)
        ds.ImagePositionPatient = first.ImagePositionPatient
        ds.save_as(f)
    assert "share one position" in problem(folder)


def test_single_slice(tmp_path: Path) -> None:
    folder = series(tmp_path)
    for f in sorted(folder.iterdir())[1:]:
        f.unlink()
    assert "at least 2" in problem(folder)


def test_unreadable_file_in_series_is_named(tmp_path: Path) -> None:
    folder = series(tmp_path)
    (folder / "IM_0002.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"garbage")
    assert "IM_0002.dcm is not a readable DICOM image" in problem(folder)
