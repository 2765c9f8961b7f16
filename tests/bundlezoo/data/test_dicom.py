"""DICOM series writer round trip through MONAI's ITKReader and PydicomReader."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
import torch

from bundlezoo.data.dicom import write_dicom_series
from bundlezoo.data.phantom import generate_phantom


@pytest.fixture(scope="module")
def phantom():
    return generate_phantom(3, resolution="tiny", orientation="SLP")


def canonical(arr: np.ndarray, affine: np.ndarray):
    from monai.data import MetaTensor
    from monai.transforms import Orientation

    mt = MetaTensor(torch.as_tensor(np.asarray(arr))[None], affine=torch.as_tensor(affine))
    out = Orientation(axcodes="RAS", labels=(("L", "R"), ("P", "A"), ("I", "S")))(mt)
    return out[0].numpy(), out.affine.numpy()


@pytest.mark.parametrize("reader", ["ITKReader", "PydicomReader"])
def test_round_trip_same_hu_and_geometry(tmp_path, phantom, reader):
    from monai.transforms import LoadImage

    series = write_dicom_series(phantom.image, phantom.affine, tmp_path / "series")
    files = sorted(series.glob("*.dcm"))
    assert len(files) == phantom.image.shape[0]  # "SLP": the S axis comes first
    ds = pydicom.dcmread(files[0])
    assert ds.Modality == "CT" and float(ds.RescaleSlope) == 1.0 and float(ds.RescaleIntercept) == -1024.0
    img = LoadImage(reader=reader, image_only=True)(str(series))
    got, got_aff = canonical(img, img.affine)
    want, want_aff = canonical(phantom.image, phantom.affine)
    assert got.shape == want.shape
    assert np.array_equal(np.rint(got).astype(np.int16), want)
    assert np.allclose(got_aff, want_aff, atol=1e-3)


def test_identical_files_for_one_volume(tmp_path, phantom):
    a = write_dicom_series(phantom.image, phantom.affine, tmp_path / "a")
    b = write_dicom_series(phantom.image, phantom.affine, tmp_path / "b")
    fa, fb = sorted(a.glob("*.dcm")), sorted(b.glob("*.dcm"))
    assert [f.read_bytes() for f in fa] == [f.read_bytes() for f in fb]
