"""DICOM CT series: check a series folder's headers before reading it, and write a HU volume as a series (tests).

The geometry follows DICOM's patient coordinate system (LPS+): ImageOrientationPatient holds the direction cosines
of the rows and columns, ImagePositionPatient the centre of the first pixel of each slice, PixelSpacing the
(row, column) spacing. Readers (ITK, MONAI's PydicomReader) rebuild the affine from these tags.
"""

from __future__ import annotations

import hashlib
import io
import os
import pathlib

import numpy as np
from nibabel.orientations import apply_orientation, axcodes2ornt, io_orientation, ornt_transform, inv_ornt_aff

from .checks import InputDataError, check_affine, is_dicom_file, one_line
from .io import atomic_write_bytes

__all__ = ["check_dicom_series", "write_dicom_series"]

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
_RAS2LPS = np.diag([-1.0, -1.0, 1.0])


def write_dicom_series(image_hu: np.ndarray, affine: np.ndarray, out_dir: str | os.PathLike, *,
                       series_description: str = "phantom", rescale_intercept: float = -1024.0) -> pathlib.Path:
    """Write ``image_hu`` (HU, any axis order described by the RAS+ ``affine``) as a CT series in ``out_dir``.

    Args:
        image_hu: 3-D array of Hounsfield units (integer or float; rounded to integers).
        affine: 4x4 voxel -> world RAS+ (mm) affine of ``image_hu``, as in NIfTI.
        out_dir: folder for the series (created); files are ``IM_0001.dcm``... in slice order, written atomically.
        series_description: SeriesDescription tag.
        rescale_intercept: stored value = HU - intercept (signed 16 bit), RescaleSlope 1.

    Returns:
        The series folder. UIDs are derived from the pixel data, so one volume gives identical files.
    """
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    arr = np.asarray(image_hu)
    if arr.ndim != 3:
        raise ValueError(f"image_hu must be 3-D, got shape {arr.shape}")
    affine = np.asarray(affine, dtype=np.float64)
    # reorder voxels to L, P, S axes: rows run along +L, columns along +P, slices along +S
    tr = ornt_transform(io_orientation(affine), axcodes2ornt(("L", "P", "S")))
    vol = apply_orientation(arr, tr)
    aff = affine @ inv_ornt_aff(tr, arr.shape)
    lps = _RAS2LPS @ aff[:3, :3]
    spacing = np.sqrt((lps ** 2).sum(axis=0))
    row_cos, col_cos = lps[:, 0] / spacing[0], lps[:, 1] / spacing[1]
    stored = np.rint(vol - rescale_intercept)
    if stored.min() < -32768 or stored.max() > 32767:
        raise ValueError("HU values do not fit signed 16-bit storage with this intercept")
    stored = stored.astype(np.int16)
    digest = hashlib.sha1(stored.tobytes() + affine.tobytes() + series_description.encode()).hexdigest()
    study_uid = generate_uid(entropy_srcs=[digest, "study"])
    series_uid = generate_uid(entropy_srcs=[digest, "series"])
    frame_uid = generate_uid(entropy_srcs=[digest, "frame"])
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for k in range(vol.shape[2]):
        pos = _RAS2LPS @ (aff @ np.array([0.0, 0.0, k, 1.0]))[:3]
        sop_uid = generate_uid(entropy_srcs=[digest, "sop", str(k)])
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CT_IMAGE_STORAGE
        meta.MediaStorageSOPInstanceUID = sop_uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = CT_IMAGE_STORAGE
        ds.SOPInstanceUID = sop_uid
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, frame_uid
        ds.Modality = "CT"
        ds.PatientName = "Synthetic^Phantom"
        ds.PatientID = "PHANTOM-" + digest[:8]
        ds.StudyDescription = "Synthetic phantom CT (not patient data)"
        ds.SeriesDescription = series_description
        ds.SeriesNumber = 1
        ds.InstanceNumber = k + 1
        ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]
        ds.ImageOrientationPatient = [float(f"{v:.6f}") for v in (*row_cos, *col_cos)]
        ds.ImagePositionPatient = [float(f"{v:.4f}") for v in pos]
        ds.SliceLocation = float(f"{pos[2]:.4f}")
        # PixelSpacing is (distance between rows, distance between columns) = (column step, row step)
        ds.PixelSpacing = [float(f"{spacing[1]:.6f}"), float(f"{spacing[0]:.6f}")]
        ds.SliceThickness = float(f"{spacing[2]:.6f}")
        ds.SpacingBetweenSlices = float(f"{spacing[2]:.6f}")
        ds.Rows, ds.Columns = int(vol.shape[1]), int(vol.shape[0])
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
        ds.PixelRepresentation = 1
        ds.RescaleIntercept = float(rescale_intercept)
        ds.RescaleSlope = 1.0
        ds.RescaleType = "HU"
        ds.WindowCenter, ds.WindowWidth = 40, 400
        # rows are indexed by the P axis (j), columns by the L axis (i)
        ds.PixelData = np.ascontiguousarray(stored[:, :, k].T).tobytes()
        buf = io.BytesIO()
        if int(pydicom.__version__.split(".")[0]) >= 3:
            pydicom.dcmwrite(buf, ds, enforce_file_format=True)
        else:  # pydicom 2 (e.g. the MONAI Label environment) takes the encoding from the dataset
            ds.is_little_endian, ds.is_implicit_VR = True, False
            pydicom.dcmwrite(buf, ds, write_like_original=False)
        atomic_write_bytes(out / f"IM_{k + 1:04d}.dcm", buf.getvalue())
    return out


def check_dicom_series(folder: str | os.PathLike) -> tuple[int, int, int]:
    """Check the headers of the DICOM series in ``folder`` (pixel data are not read) and return its shape.

    One readable series (a folder with two series would be read as one of them, silently), one sample per pixel,
    at least two slices of one size, and a geometry from ImageOrientationPatient, PixelSpacing and the slice
    positions that is finite, with spacing > 0 and distinct slice positions. Non-DICOM files (a DICOMDIR, notes)
    are ignored, as DICOM readers do.

    Raises:
        InputDataError: naming the folder (and the file, where one file is the problem).
    """
    import pydicom

    root = pathlib.Path(folder)
    files = sorted(f for f in root.iterdir() if f.is_file() and (f.suffix.lower() == ".dcm" or is_dicom_file(f)))
    if not files:
        raise InputDataError(root, "holds no DICOM files")
    headers, slices = [], []
    for f in files:
        try:
            h = pydicom.dcmread(f, stop_before_pixels=True)
            slices.append((str(h.SeriesInstanceUID), int(h.Rows), int(h.Columns), int(h.get("SamplesPerPixel", 1)),
                           [float(v) for v in h.ImagePositionPatient]))
            headers.append(h)
        except Exception as e:  # pydicom raises several types for bad files; a missing tag is AttributeError
            raise InputDataError(root, f"{f.name} is not a readable DICOM image "
                                       f"({type(e).__name__}: {one_line(e, 150)})") from e
    series = {s[0] for s in slices}
    if len(series) > 1:
        raise InputDataError(root, f"holds {len(series)} DICOM series; put each series in its own folder")
    if len(headers) < 2:
        raise InputDataError(root, f"holds {len(headers)} slice; a 3D series needs at least 2")
    samples = {s[3] for s in slices}
    sizes = {(s[1], s[2]) for s in slices}
    try:
        positions = np.array([s[4] for s in slices])
        orientation = np.array([float(v) for v in headers[0].ImageOrientationPatient])
        pixel_spacing = np.array([float(v) for v in headers[0].PixelSpacing])
    except (AttributeError, TypeError, ValueError) as e:
        raise InputDataError(root, f"lacks the geometry tags of a CT series ({type(e).__name__}: {one_line(e, 150)})") from e
    if samples != {1}:
        raise InputDataError(root, f"expected a single-channel series, got {sorted(samples)} samples per pixel")
    if len(sizes) > 1:
        raise InputDataError(root, f"slices differ in size: {sorted(sizes)}")
    if orientation.shape != (6,) or pixel_spacing.shape != (2,) or positions.shape[1:] != (3,):
        raise InputDataError(root, "ImageOrientationPatient needs 6 values, PixelSpacing 2, ImagePositionPatient 3")
    row, col = orientation[:3], orientation[3:]
    normal = np.cross(row, col)
    order = np.argsort(positions @ normal) if np.isfinite(normal).all() else np.arange(len(positions))
    steps = np.diff((positions @ normal)[order]) if np.isfinite(normal).all() else np.array([np.nan])
    if np.isfinite(steps).all() and (np.abs(steps) < 1e-6).any():
        raise InputDataError(root, "two slices share one position (slice spacing 0)")
    affine = np.eye(4)
    affine[:3, 0] = row * pixel_spacing[1]
    affine[:3, 1] = col * pixel_spacing[0]
    affine[:3, 2] = positions[order[-1]] - positions[order[0]]
    affine[:3, 3] = positions[order[0]]
    check_affine(root, affine)
    rows, cols = sizes.pop()
    return cols, rows, len(headers)
