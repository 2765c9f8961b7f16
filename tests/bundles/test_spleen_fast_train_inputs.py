"""Bad input to spleen-fast-train: each case is one line ``<path>: <problem>`` naming the file.

Most cases call the bundle's own input checks directly (the data source and the loader exactly as ``train.json``
configures them), which is fast. The rest go through the real bundle runner: training on bad data must stop with the
line on stderr, exit status 1 and nothing half-written in the model folder; inference must report each bad input on
one line, list it in ``failures.json``, still segment the good ones, and exit with status 1.
"""

from __future__ import annotations

import gzip
import json
import shutil
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
import torch

from bundle_runner import (INFER_OVERRIDES, SMOKE_OVERRIDE, SPLEEN_CONFIGS, list_files, run_bundle, train_configs,
                           write_msd_spleen_small)
from bundlezoo.data.checks import InputDataError
from bundlezoo.data.inputs import image_datalist
from bundlezoo.data.msd import msd_datalist


@pytest.fixture(scope="module")
def good_msd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A valid 4-case MSD folder; each test breaks its own copy."""
    return write_msd_spleen_small(tmp_path_factory.mktemp("good") / "Task09_Spleen", 4, seed=1)


@pytest.fixture
def msd(good_msd: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(good_msd, tmp_path / "Task09_Spleen"))


def first_case(root: Path) -> tuple[Path, Path]:
    entry = json.loads((root / "dataset.json").read_text())["training"][0]
    return (root / entry["image"]).resolve(), (root / entry["label"]).resolve()


@cache
def train_config() -> Any:
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(SPLEEN_CONFIGS / "train.json"))
    return parser


def bundle_network() -> torch.nn.Module:
    return train_config().get_parsed_content("network_def", instantiate=True)


@cache
def bundle_loader() -> Any:
    """The first deterministic transform of train.json (the checked loader), built from the config itself."""
    return train_config().get_parsed_content("train#deterministic_transforms#0")


def check_like_training(root: Path) -> None:
    """Run the checks training runs: the datalist (headers, shapes) of every labelled case, then the loader."""
    for case in msd_datalist(root, split="all"):
        bundle_loader()(dict(case))


def assert_input_error(exc: pytest.ExceptionInfo[InputDataError], path: Path, *words: str) -> None:
    message = str(exc.value)
    assert "\n" not in message, message
    assert message.startswith(f"{path.resolve()}: ") or message.startswith(f"{path}: "), message
    for word in words:
        assert word.lower() in message.lower(), message


def save_like(reference: Path, data: np.ndarray, dst: Path) -> None:
    nib.save(nib.Nifti1Image(data, nib.load(reference).affine), dst)


# ---------------------------------------------------------------------------------------------------------------------
# the checks, called directly

def _missing(image: Path, label: Path) -> Path:
    image.unlink()
    return image


def _garbage(image: Path, label: Path) -> Path:
    image.write_bytes(np.random.default_rng(0).bytes(5000))
    return image


def _truncated(image: Path, label: Path) -> Path:
    data = image.read_bytes()
    image.write_bytes(data[: len(data) // 2])
    return image


def _truncated_header(image: Path, label: Path) -> Path:
    image.write_bytes(gzip.compress(gzip.decompress(image.read_bytes())[:200]))
    return image


def _shape_mismatch(image: Path, label: Path) -> Path:
    arr = np.asarray(nib.load(label).dataobj)
    save_like(label, np.ascontiguousarray(arr[:, :, :-2]), label)
    return label


def _two_channels(image: Path, label: Path) -> Path:
    arr = np.asarray(nib.load(image).dataobj)
    save_like(image, np.stack([arr, arr], axis=-1), image)
    return image


def _nan_inf(image: Path, label: Path) -> Path:
    arr = np.asarray(nib.load(image).dataobj).astype(np.float32)
    arr[1, 2, 3], arr[4, 5, 6] = np.nan, np.inf
    save_like(image, arr, image)
    return image


def _label_values(image: Path, label: Path) -> Path:
    arr = np.asarray(nib.load(label).dataobj).copy()
    arr[arr == 1] = 2
    arr[0, 0, 0] = 7
    save_like(label, arr, label)
    return label


BREAKAGES: dict[str, tuple[Callable[[Path, Path], Path], tuple[str, ...]]] = {
    "missing image": (_missing, ("not found",)),
    "corrupt nifti": (_garbage, ("nifti",)),
    "truncated nii.gz": (_truncated, ()),
    "truncated header": (_truncated_header, ()),
    "shape mismatch": (_shape_mismatch, ("shape",)),
    "two channels": (_two_channels, ("channel",)),
    "nan/inf voxels": (_nan_inf, ("nan",)),
    "label values": (_label_values, ("[2, 7]", "[0, 1]")),
}


@pytest.mark.parametrize("breakage", list(BREAKAGES))
def test_bad_case_is_reported_on_one_line_naming_the_file(msd: Path, breakage: str) -> None:
    break_it, words = BREAKAGES[breakage]
    bad = break_it(*first_case(msd))
    with pytest.raises(InputDataError) as exc:
        check_like_training(msd)
    assert_input_error(exc, bad, *words)


def test_the_good_data_set_passes_the_checks(msd: Path) -> None:
    check_like_training(msd)  # the breakages above are what fails, not the data set


def test_empty_data_set(msd: Path) -> None:
    manifest = json.loads((msd / "dataset.json").read_text())
    manifest["training"] = []
    (msd / "dataset.json").write_text(json.dumps(manifest))
    with pytest.raises(InputDataError) as exc:
        msd_datalist(msd, split="train")
    assert_input_error(exc, msd / "dataset.json", "empty")


def parse_train_config(bundle_root: Path, **overrides: Any) -> Any:
    """train.json (+ the smoke override) as the bundle runner parses it, with command-line style overrides."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config([str(SPLEEN_CONFIGS / "train.json"), str(SMOKE_OVERRIDE)])
    parser.update({"bundle_root": str(bundle_root), **overrides})
    return parser


def test_dataset_dir_reads_the_real_layout_without_generating_phantoms(msd: Path, tmp_path: Path) -> None:
    """--dataset_dir selects the MSD reader; the phantom component is never touched (nothing under bundle_root)."""
    root = tmp_path / "bundle"
    parser = parse_train_config(root, dataset_dir=str(msd))
    train, val = parser.get_parsed_content("train#datalist"), parser.get_parsed_content("validate#datalist")
    images = sorted(str(p.resolve()) for p in (msd / "imagesTr").glob("*.nii.gz"))
    assert sorted(c["image"] for c in train + val) == images and len(val) == 1, (train, val)
    assert not root.exists(), "a phantom data set was generated although --dataset_dir was given"


def test_default_data_source_is_the_named_phantom_component(tmp_path: Path) -> None:
    """Without --dataset_dir the config's `phantom` component generates its folder, and the reader reads it."""
    root = tmp_path / "bundle"
    parser = parse_train_config(root)
    assert parser["phantom"]["_target_"] == "bundlezoo.data.PhantomMSD"
    train = parser.get_parsed_content("train#datalist")
    assert len(train) == 4 and all(c["image"].startswith(str(root / "data" / "phantom_Task09_Spleen")) for c in train)


def test_other_dataset_dir_without_data_names_the_expected_layout(tmp_path: Path) -> None:
    empty = tmp_path / "my_data"
    empty.mkdir()
    root = tmp_path / "bundle"
    with pytest.raises(InputDataError) as exc:
        parse_train_config(root, dataset_dir=str(empty)).get_parsed_content("data_source").datalist("train")
    assert_input_error(exc, empty / "dataset.json", "dataset.json", "imagesTr", "labelsTr")
    assert not root.exists(), "no phantom set may be generated for a user-given dataset_dir"


def test_inference_folder_without_images(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("no images here")
    with pytest.raises(InputDataError) as exc:
        image_datalist(tmp_path)
    assert_input_error(exc, tmp_path, "nifti", "dicom")
    with pytest.raises(InputDataError) as exc:
        image_datalist(tmp_path / "missing")
    assert_input_error(exc, tmp_path / "missing", "not found")


# ---------------------------------------------------------------------------------------------------------------------
# through the real bundle runner

def assert_fails_naming(run: Any, path: Path, *words: str) -> None:
    assert run.returncode == 1, run.describe()  # a plain failure, not a crash (e.g. SIGABRT at shutdown)
    lines = run.input_error_lines()
    assert lines, f"no InputDataError line in stderr\n{run.describe()}"
    expected = f"{path.resolve()}: "
    assert any(line.startswith(expected) for line in lines), (expected, lines)
    for word in words:
        assert any(word.lower() in line.lower() for line in lines), (word, lines)


@pytest.mark.slow
@pytest.mark.parametrize("breakage", ["corrupt nifti", "label values"])
def test_training_on_bad_data_fails_cleanly(msd: Path, tmp_path: Path, breakage: str) -> None:
    break_it, words = BREAKAGES[breakage]
    bad = break_it(*first_case(msd))
    before = list_files(msd)
    root = tmp_path / "bundle"
    run = run_bundle(train_configs(), bundle_root=root, overrides={"dataset_dir": str(msd)})
    assert_fails_naming(run, bad, *words)
    assert list_files(root / "models") == [], "training on bad data left files in models/"
    assert not (root / "data").exists(), "a phantom set was generated although --dataset_dir was given"
    assert list_files(msd) == before, "the data set folder was modified"


def bundle_with_model(root: Path) -> Path:
    """A bundle_root whose models/model.pt holds the network's (untrained) weights: enough to run inference."""
    (root / "models").mkdir(parents=True)
    torch.save({"model": bundle_network().state_dict()}, root / "models" / "model.pt")
    return root


def run_inference(root: Path, inputs: Path, out: Path, **overrides: Any) -> Any:
    return run_bundle([SPLEEN_CONFIGS / "inference.json"], bundle_root=root,
                      overrides={"dataset_dir": str(inputs), "output_dir": str(out), **INFER_OVERRIDES, **overrides})


def failures_file(out: Path) -> list[dict[str, str]]:
    return json.loads((out / "failures.json").read_text())


def assert_batch_failed(run: Any, failed: list[Path]) -> None:
    """Exit status 1, one InputDataError line per failed input (each naming it), no traceback by default."""
    assert run.returncode == 1, run.describe()
    lines = run.input_error_lines()
    assert sorted(line.split(": ", 1)[0] for line in lines) == sorted(str(p.resolve()) for p in failed), lines
    assert "Traceback" not in run.stderr, run.describe()


def degenerate_affine(src: Path, dst: Path) -> Path:
    img = nib.load(src)
    affine = img.affine.copy()
    affine[:3, 1] = 0.0  # a zero column: the probe's "Orientationd: Unable to find out axis"
    img.set_sform(affine, code=1)  # the sform wins over the (still valid) qform, in nibabel and in MONAI
    nib.save(img, dst)
    return dst


@pytest.mark.slow
def test_batch_inference_keeps_going_past_a_bad_file(good_msd: Path, tmp_path: Path) -> None:
    """Good, truncated, good: both good inputs are segmented, the truncated one is one line and one failures entry."""
    images = sorted((good_msd / "imagesTr").glob("*.nii.gz"))
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    shutil.copy(images[0], inputs / "a_good.nii.gz")
    _truncated(shutil.copy(images[1], inputs / "b_truncated.nii.gz"), Path())
    shutil.copy(images[2], inputs / "c_good.nii.gz")
    run = run_inference(bundle_with_model(tmp_path / "bundle"), inputs, out)
    assert_batch_failed(run, [inputs / "b_truncated.nii.gz"])
    assert list_files(out) == ["a_good_seg.nii.gz", "c_good_seg.nii.gz", "failures.json"], run.describe()
    assert [f["input"] for f in failures_file(out)] == [str((inputs / "b_truncated.nii.gz").resolve())]
    for name in ("a_good", "c_good"):  # in the input's own space
        seg, src = nib.load(out / f"{name}_seg.nii.gz"), nib.load(inputs / f"{name}.nii.gz")
        assert seg.shape == src.shape and np.allclose(seg.affine, src.affine, atol=1e-4)


@pytest.mark.slow
def test_header_problems_are_found_before_any_compute(good_msd: Path, tmp_path: Path) -> None:
    """A degenerate affine and two inputs that would share one output name: one line each, no model even loaded."""
    images = sorted((good_msd / "imagesTr").glob("*.nii.gz"))
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    degenerate_affine(images[0], inputs / "flat.nii.gz")
    shutil.copy(images[1], inputs / "case.nii.gz")
    (inputs / "case.nii").write_bytes(gzip.decompress(images[2].read_bytes()))
    root = tmp_path / "bundle"
    root.mkdir()  # no models/model.pt: were it needed, the run would fail on it instead
    run = run_inference(root, inputs, out)
    assert_batch_failed(run, [inputs / "flat.nii.gz", inputs / "case.nii", inputs / "case.nii.gz"])
    lines = run.input_error_lines()
    assert any("flat.nii.gz: affine" in line and "spacing 0" in line for line in lines), lines
    assert sum("same name (case_seg)" in line for line in lines) == 2, lines
    assert list_files(out) == ["failures.json"] and len(failures_file(out)) == 3


@pytest.mark.slow
def test_a_bad_model_file_is_named(good_msd: Path, tmp_path: Path) -> None:
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    shutil.copy(sorted((good_msd / "imagesTr").glob("*.nii.gz"))[0], inputs / "a.nii.gz")
    root = bundle_with_model(tmp_path / "bundle")
    model = root / "models" / "model.pt"
    model.write_bytes(model.read_bytes()[:1000])
    run = run_inference(root, inputs, out)
    assert run.returncode == 1, run.describe()
    assert [line.split(": ", 1)[0] for line in run.input_error_lines()] == [str(model)], run.describe()
    assert "Traceback" not in run.stderr, run.describe()
    assert list_files(out) == []


@pytest.mark.slow
def test_an_output_folder_in_use_is_refused(good_msd: Path, tmp_path: Path) -> None:
    from bundlezoo.data.locks import FolderLock

    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    shutil.copy(sorted((good_msd / "imagesTr").glob("*.nii.gz"))[0], inputs / "a.nii.gz")
    with FolderLock(out):  # this test process is the other run
        run = run_inference(bundle_with_model(tmp_path / "bundle"), inputs, out)
    assert run.returncode == 1, run.describe()
    assert run.stderr.strip().splitlines()[-1].startswith(f"LockedError: {out}: in use by another run (pid "), run.describe()
    assert "Traceback" not in run.stderr and list_files(out) == [], run.describe()


@pytest.mark.slow
def test_inference_on_an_unreadable_dicom_folder_fails_cleanly(tmp_path: Path) -> None:
    series, out = tmp_path / "series", tmp_path / "out"
    series.mkdir()
    rng = np.random.default_rng(0)
    for k in range(3):
        (series / f"IM{k:04d}.dcm").write_bytes(rng.bytes(2048))
    run = run_inference(bundle_with_model(tmp_path / "bundle"), series, out)
    assert_fails_naming(run, series)
    assert list_files(out) == ["failures.json"], "inference on bad input left files in the output folder"
