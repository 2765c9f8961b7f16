"""Tests of the phantom data-set writers (MSD Task09, BTCV, unlabelled) and the make_phantoms CLI."""

from __future__ import annotations

import hashlib
import json
import pathlib
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from bundlezoo.data import layouts
from bundlezoo.data.layouts import PHANTOM_MANIFEST, NotAPhantomFolderError, write_btcv, write_msd_spleen, write_unlabeled

ROOT = pathlib.Path(__file__).resolve().parents[3]


def digest(folder: pathlib.Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_msd_spleen_layout_and_monai_datalist(tmp_path):
    from monai.data import load_decathlon_datalist

    out = write_msd_spleen(tmp_path / "Task09", 2, 1, seed=3, resolution="tiny", progress=False)
    ds = json.loads((out / "dataset.json").read_text())
    assert ds["tensorImageSize"] == "3D" and ds["modality"] == {"0": "CT"}
    assert ds["labels"] == {"0": "background", "1": "spleen"}
    assert ds["numTraining"] == 2 and ds["numTest"] == 1
    assert ds["training"][0] == {"image": "./imagesTr/spleen_1.nii.gz", "label": "./labelsTr/spleen_1.nii.gz"}
    assert ds["test"] == ["./imagesTs/spleen_3.nii.gz"]
    train = load_decathlon_datalist(out / "dataset.json", True, "training")
    assert len(train) == 2
    for item in train:
        img, lab = nib.load(item["image"]), nib.load(item["label"])
        assert img.get_data_dtype() == np.int16 and lab.get_data_dtype() == np.uint8
        assert img.shape == lab.shape and np.allclose(img.affine, lab.affine)
        assert int(img.header["qform_code"]) == 1 and int(img.header["sform_code"]) == 1
        assert np.allclose(img.get_qform(), img.get_sform())
        assert set(np.unique(np.asarray(lab.dataobj)).tolist()) == {0, 1}
    test = load_decathlon_datalist(out / "dataset.json", False, "test")
    assert pathlib.Path(test[0]["image"]).is_file()
    man = json.loads((out / PHANTOM_MANIFEST).read_text())
    assert man["complete"] and man["task"] == "spleen" and len(man["cases"]) == 3


def test_same_seed_identical_bytes_and_reuse(tmp_path):
    a = write_msd_spleen(tmp_path / "a", 1, seed=7, resolution="tiny", progress=False)
    b = write_msd_spleen(tmp_path / "b", 1, seed=7, resolution="tiny", progress=False)
    c = write_msd_spleen(tmp_path / "c", 1, seed=8, resolution="tiny", progress=False)
    da, db, dc = digest(a), digest(b), digest(c)
    assert da == db
    assert da["imagesTr/spleen_1.nii.gz"] != dc["imagesTr/spleen_1.nii.gz"]
    mtime = (a / "imagesTr/spleen_1.nii.gz").stat().st_mtime_ns
    write_msd_spleen(a, 1, seed=7, resolution="tiny", progress=False)  # complete and identical: reused
    assert (a / "imagesTr/spleen_1.nii.gz").stat().st_mtime_ns == mtime


def test_btcv_layout_and_monai_datalist(tmp_path):
    from monai.data import load_decathlon_datalist

    out = write_btcv(tmp_path / "btcv", 2, 1, seed=1, resolution="tiny", progress=False)
    ds = json.loads((out / "dataset_0.json").read_text())
    assert len(ds["labels"]) == 14 and ds["labels"]["1"] == "spleen" and ds["labels"]["13"] == "lad"
    tr = load_decathlon_datalist(out / "dataset_0.json", True, "training")
    va = load_decathlon_datalist(out / "dataset_0.json", True, "validation")
    assert [pathlib.Path(d["image"]).name for d in tr] == ["img0001.nii.gz", "img0002.nii.gz"]
    assert pathlib.Path(va[0]["label"]).name == "label0003.nii.gz"
    lab = np.asarray(nib.load(tr[0]["label"]).dataobj)
    assert lab.max() <= 13 and len(np.unique(lab)) >= 12


def test_unlabeled_layout(tmp_path):
    from monai.data import load_decathlon_datalist

    out = write_unlabeled(tmp_path / "ssl", 3, n_val=1, seed=2, resolution="tiny", progress=False)
    tr = load_decathlon_datalist(out / "dataset.json", False, "training")
    va = load_decathlon_datalist(out / "dataset.json", False, "validation")
    assert len(tr) == 2 and len(va) == 1 and "label" not in tr[0]
    assert all(pathlib.Path(d["image"]).is_file() for d in tr + va)


def test_refuses_foreign_folder(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(NotAPhantomFolderError):
        write_msd_spleen(tmp_path, 1, resolution="tiny", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_crash_leaves_incomplete_manifest_and_no_half_files(tmp_path, monkeypatch):
    calls = {"n": 0}
    real = layouts.generate_phantom

    def flaky(seed, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("simulated crash")
        return real(seed, **kw)

    monkeypatch.setattr(layouts, "generate_phantom", flaky)
    with pytest.raises(RuntimeError):
        write_msd_spleen(tmp_path / "x", 3, resolution="tiny", progress=False)
    man = json.loads((tmp_path / "x" / PHANTOM_MANIFEST).read_text())
    assert man["complete"] is False
    assert not (tmp_path / "x" / "dataset.json").exists()
    assert not list((tmp_path / "x").rglob(".partial-*"))
    monkeypatch.setattr(layouts, "generate_phantom", real)
    out = write_msd_spleen(tmp_path / "x", 3, resolution="tiny", progress=False)  # our folder: resumable
    assert json.loads((out / PHANTOM_MANIFEST).read_text())["complete"] is True


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "tools" / "make_phantoms.py"), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def test_cli_writes_with_progress_and_refuses_foreign_folder(tmp_path):
    out = tmp_path / "spleen"
    r = run_cli("--task", "spleen", "--n", "2", "--out", str(out), "--seed", "0", "--resolution", "tiny")
    assert r.returncode == 0, r.stderr
    assert "100%" in r.stderr and "2/2" in r.stderr  # tqdm progress bar
    assert (out / "dataset.json").is_file() and len(list((out / "imagesTr").glob("*.nii.gz"))) == 2
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "scan.nii.gz").write_bytes(b"x")
    r = run_cli("--task", "btcv", "--n", "1", "--out", str(foreign), "--resolution", "tiny")
    assert r.returncode == 2
    err = [line for line in r.stderr.strip().splitlines() if line.strip()]
    assert len(err) == 1 and "refusing" in err[0]
    assert sorted(p.name for p in foreign.iterdir()) == ["scan.nii.gz"]
    r = run_cli("--task", "liver", "--n", "1", "--out", str(tmp_path / "z"), "--resolution", "tiny")
    assert r.returncode == 2 and "--task" in r.stderr
