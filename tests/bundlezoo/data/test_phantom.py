"""Tests of the synthetic phantom engine (bundlezoo.data.phantom): determinism, anatomy, appearance, difficulty."""

from __future__ import annotations

import functools
import json

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from bundlezoo.data.phantom import BTCV_LABELS, LITERATURE_RANGES, ORIENTATIONS, PHASES, generate_phantom
from bundlezoo.data.phantom.baseline import threshold_lcc_dice

SEEDS = range(8)


@functools.lru_cache(maxsize=None)
def tiny(seed: int, orientation: str | None = None, phase: str | None = None):
    return generate_phantom(seed, resolution="tiny", orientation=orientation, phase=phase)


def world_centroid(ph, lab: int) -> np.ndarray:
    idx = np.argwhere(ph.label == lab).mean(axis=0)
    return (ph.affine @ np.append(idx, 1.0))[:3]


def test_same_seed_identical_arrays():
    a = generate_phantom(11, resolution="tiny", lesions=True)
    b = generate_phantom(11, resolution="tiny", lesions=True)
    assert a.image.dtype == np.int16 and a.label.dtype == np.uint8
    assert np.array_equal(a.image, b.image) and np.array_equal(a.label, b.label)
    assert np.array_equal(a.lesion_label, b.lesion_label) and np.array_equal(a.affine, b.affine)
    assert a.meta == b.meta
    assert json.loads(json.dumps(a.meta)) == a.meta  # plain values only


def test_thread_count_does_not_change_the_output(monkeypatch):
    monkeypatch.setenv("PHANTOM_THREADS", "1")
    a = generate_phantom(12, resolution="tiny")
    monkeypatch.setenv("PHANTOM_THREADS", "3")
    b = generate_phantom(12, resolution="tiny")
    assert np.array_equal(a.image, b.image) and np.array_equal(a.label, b.label)


def test_different_seeds_different_anatomy():
    a, b = tiny(0, "RAS"), tiny(1, "RAS")
    va, vb = a.meta["organ_volumes_ml"], b.meta["organ_volumes_ml"]
    assert abs(va["spleen"] - vb["spleen"]) > 1.0 or abs(va["liver"] - vb["liver"]) > 10.0
    assert a.label.shape != b.label.shape or (a.label != b.label).mean() > 0.01


def test_same_anatomy_at_every_resolution():
    """The seed fixes the patient; the grid only samples it (spleen volume within 15 %)."""
    t, f = generate_phantom(4, resolution="tiny"), generate_phantom(4, resolution="fast")
    vt, vf = t.meta["organ_volumes_ml"]["spleen"], f.meta["organ_volumes_ml"]["spleen"]
    assert abs(vt - vf) / vf < 0.15
    assert np.allclose(world_centroid(t, 1), world_centroid(f, 1), atol=6.0)


@pytest.mark.parametrize("seed", list(SEEDS))
def test_organs_present_connected_and_inside_body(seed):
    ph = tiny(seed, "RAS")
    lab_body, _ = ndimage.label(ph.image > -400)
    sizes = np.bincount(lab_body.ravel())
    sizes[0] = 0
    body = lab_body == np.argmax(sizes)  # the table is a separate component
    for k in range(body.shape[2]):  # the body outline is closed in every axial slice (lungs are inside it)
        body[:, :, k] = ndimage.binary_fill_holes(body[:, :, k])
    for lab, name in BTCV_LABELS.items():
        if lab == 0 or (name == "gallbladder" and ph.meta["organ_volumes_ml"][name] == 0):
            continue  # a few phantoms have had a cholecystectomy
        m = ph.label == lab
        assert m.any(), f"{name} missing"
        assert body[m].mean() > 0.99, f"{name} outside the body"
        if name in ("spleen", "liver", "right_kidney", "left_kidney", "stomach", "aorta"):
            cc, n = ndimage.label(m)
            assert np.bincount(cc.ravel())[1:].max() / m.sum() > 0.85, f"{name} fragmented"


def test_painting_never_overwrites_a_labelled_organ():
    """Organs are painted only into free tissue, so every label's voxels survive later organs (no overlap)."""
    from bundlezoo.data.phantom import anatomy
    from bundlezoo.data.phantom.canvas import Canvas
    from bundlezoo.data.phantom.geometry import sample_grid

    p = anatomy.sample_patient(np.random.default_rng(3))
    zk, ak, yak, yp = p["cavity_keys"]
    grid = sample_grid(np.random.default_rng(0), "tiny", 2 * ak.max() + 80, yak.max() - yp + 80,
                       (yak.max() + yp) / 2, 40.0, -300.0)
    cv = Canvas(grid.xs, grid.ys, grid.sub_zs, min_radius=2.5)
    seen = {}
    original_paint = cv.paint

    def paint(sl, mask, tissue, label=None, allowed=None, lesion=None):
        before = cv.lab[sl].copy()
        changed = original_paint(sl, mask, tissue, label, allowed, lesion)
        if label is not None:
            overwritten = set(np.unique(before[changed]).tolist()) - {0, label}
            assert not overwritten, f"label {label} painted over {overwritten}"
            seen[label] = True
        return changed

    cv.paint = paint
    anatomy.paint_patient(cv, p)
    assert len(seen) >= 12


@pytest.mark.parametrize("code", ORIENTATIONS)
def test_left_right_in_world_coordinates(code):
    """RAS+: x grows towards the patient's right, so spleen/left kidney/aorta have smaller x than liver/right
    kidney/IVC, whatever the array's axis code."""
    ph = tiny(2, code)
    assert "".join(nib.aff2axcodes(ph.affine)) == code
    x = {lab: world_centroid(ph, lab)[0] for lab in (1, 2, 3, 6, 8, 9)}
    assert x[1] < x[6] - 60, "spleen must be on the patient's left of the liver"
    assert x[3] < x[2] - 60, "left kidney must be on the patient's left"
    assert x[8] < x[9], "aorta left of the IVC"
    body_mid = np.mean([x[8], x[9]])
    assert x[1] < body_mid < x[6]
    zl, zr = world_centroid(ph, 3)[2], world_centroid(ph, 2)[2]
    assert zr < zl, "the right kidney sits lower than the left"
    assert world_centroid(ph, 1)[1] < world_centroid(ph, 7)[1], "spleen posterior to the stomach"


def test_monai_orientationd_recovers_the_same_anatomy(tmp_path):
    """Written as NIfTI in several axis codes and read by the bundles' pipeline (LoadImaged, EnsureChannelFirstd,
    Orientationd("RAS")), every orientation gives the same voxels and affine as the RAS phantom."""
    from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, Orientationd

    from bundlezoo.data.io import save_nifti

    ref = tiny(5, "RAS")
    load = Compose([LoadImaged(["image", "label"]), EnsureChannelFirstd(["image", "label"]),
                    Orientationd(["image", "label"], axcodes="RAS", labels=(("L", "R"), ("P", "A"), ("I", "S")))])
    for code in ("LPS", "SLP", "ASR", "LPI"):
        ph = tiny(5, code)
        assert not np.array_equal(ph.affine, ref.affine)
        save_nifti(tmp_path / f"{code}_img.nii.gz", ph.image, ph.affine)
        save_nifti(tmp_path / f"{code}_lab.nii.gz", ph.label, ph.affine)
        d = load({"image": str(tmp_path / f"{code}_img.nii.gz"), "label": str(tmp_path / f"{code}_lab.nii.gz")})
        assert np.array_equal(d["image"][0].numpy().astype(np.int16), ref.image)
        assert np.array_equal(d["label"][0].numpy().astype(np.uint8), ref.label)
        assert np.allclose(d["image"].affine.numpy(), ref.affine, atol=1e-4)


def test_organ_volumes_in_range():
    ranges = {"spleen": (60, 480), "liver": (900, 2700), "right_kidney": (70, 260), "left_kidney": (70, 260),
              "pancreas": (20, 130), "gallbladder": (0, 100), "right_adrenal_gland": (0.5, 12),
              "left_adrenal_gland": (0.5, 12), "esophagus": (2, 25), "stomach": (100, 1200),
              "portal_and_splenic_veins": (8, 60), "aorta": (20, 160), "inferior_vena_cava": (25, 220)}
    spleens = []
    for s in SEEDS:
        vol = tiny(s).meta["organ_volumes_ml"]
        for name, (lo, hi) in ranges.items():
            assert lo <= vol[name] <= hi, f"seed {s}: {name} {vol[name]} mL outside [{lo}, {hi}]"
        spleens.append(vol["spleen"])
    assert np.std(spleens) > 20, "spleen size must vary between patients"


@pytest.mark.parametrize("phase", PHASES)
def test_mean_hu_in_literature_range(phase):
    """Parenchymal mean HU (masks eroded by one voxel, away from partial volume) per phase, 'fast' grid."""
    ph = generate_phantom(6, resolution="fast", phase=phase)
    assert ph.meta["phase"] == phase
    names = {v: k for k, v in BTCV_LABELS.items()}
    for name, rng in LITERATURE_RANGES.items():
        lo, hi = rng[PHASES.index(phase)]
        m = ndimage.binary_erosion(ph.label == names[name])
        if m.sum() < 30:
            continue
        mean = float(ph.image[m].mean())
        assert lo <= mean <= hi, f"{phase} {name}: mean {mean:.1f} HU outside [{lo}, {hi}]"


def test_noise_level_in_range():
    ph = tiny(3)
    assert 8.0 <= ph.meta["noise_sigma_hu"] <= 30.0
    sub = ph.image[ph.label == 6].astype(float)  # liver: smooth texture, so the spread is mostly noise
    assert 4.0 < sub.std() < 60.0


def test_threshold_baseline_cannot_find_the_spleen():
    """An oracle HU window + largest connected component must not solve the task (mean Dice < 0.5)."""
    dice = [threshold_lcc_dice(tiny(s).image, tiny(s).label == 1) for s in SEEDS]
    assert np.mean(dice) < 0.5, dice
    assert max(dice) < 0.7, dice


def test_lesions_have_their_own_label_inside_organs():
    ph = generate_phantom(8, resolution="tiny", lesions=True)
    assert ph.lesion_label is not None and ph.lesion_label.shape == ph.label.shape
    assert ph.meta["lesions"]
    les = ph.lesion_label > 0
    assert les.any()
    assert set(np.unique(ph.label[les]).tolist()) <= {1, 2, 3, 6}
    assert generate_phantom(8, resolution="tiny").lesion_label is None


def test_scan_geometry_ranges():
    for s in range(4):
        m = generate_phantom(s, resolution="tiny").meta
        assert m["resolution"] == "tiny" and max(m["shape"]) <= 96
        assert all(4.0 <= v <= 5.0 for v in m["spacing"])


def test_bad_arguments():
    with pytest.raises(ValueError):
        generate_phantom(0, resolution="huge")
    with pytest.raises(ValueError):
        generate_phantom(0, resolution="tiny", phase="delayed")
    with pytest.raises(ValueError):
        generate_phantom(0, resolution="tiny", orientation="XYZ")


def _image_digest(seed: int) -> str:
    import hashlib

    return hashlib.md5(generate_phantom(seed, resolution="tiny").image.tobytes()).hexdigest()


def test_same_output_in_forked_worker():
    """Bundles may generate phantoms in forked DataLoader workers after the parent used the thread pool."""
    import multiprocessing as mp

    parent = _image_digest(13)
    with mp.get_context("fork").Pool(1) as pool:
        child = pool.apply_async(_image_digest, (13,)).get(timeout=120)
    assert child == parent


def test_image_formation_helpers_match_their_references():
    """The fast PSF (shifted block sums along x) equals scipy's Gaussian filter, the 2x upsampling is the linear
    pixel-area interpolation, and the noise table is a unit-variance Gaussian."""
    from bundlezoo.data.phantom.generator import _blur_axis0, _gauss_table, _upsample2

    a = np.random.default_rng(0).normal(size=(23, 9, 4)).astype(np.float32)
    for sigma in (0.5, 0.9, 1.4):
        ref = ndimage.gaussian_filter1d(a, sigma, axis=0, mode="nearest", truncate=3.0)
        assert np.allclose(_blur_axis0(a, sigma), ref, atol=1e-5)
    for axis in (0, 1):
        b = np.moveaxis(a, axis, 0)
        prev, nxt = np.concatenate([b[:1], b[:-1]]), np.concatenate([b[1:], b[-1:]])
        ref = np.empty((2 * b.shape[0],) + b.shape[1:], np.float32)
        ref[0::2], ref[1::2] = 0.75 * b + 0.25 * prev, 0.75 * b + 0.25 * nxt
        up = _upsample2(a, axis)
        assert up.flags.c_contiguous and np.allclose(up, np.moveaxis(ref, 0, axis), atol=1e-6)
    g = _gauss_table()
    assert g.dtype == np.float32 and abs(float(g.mean())) < 1e-6 and abs(float(g.std()) - 1.0) < 1e-5


def test_single_threaded_blas_nests_and_restores():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from bundlezoo.data.phantom.canvas import single_threaded_blas

    def blas_threads():
        return [i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]

    before = blas_threads()
    with single_threaded_blas():
        with single_threaded_blas():
            assert all(n == 1 for n in blas_threads())
        assert all(n == 1 for n in blas_threads())
    assert blas_threads() == before
