"""End-to-end tests of bundles/spleen-fast-train through the real bundle runner (``python -m monai.bundle run``).

One small training run (smoke override, 6 synthetic phantoms → 4 train / 2 validation) is shared by the checkpoint,
evaluation and inference tests; torchrun, determinism/MLflow and the embedded-default run train on their own.
Bad-input tests live in ``test_spleen_fast_train_inputs.py``.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from scipy import ndimage

from bundle_runner import (
    INFER_OVERRIDES,
    SPLEEN_CONFIGS,
    BundleRun,
    TrainedBundle,
    bundle_env,
    list_files,
    reorient_nifti,
    run_bundle,
    train_configs,
)

pytestmark = pytest.mark.slow

ORIENTATIONS = ["RAS", "LPS", "LAS", "PIR", "SLP"]


# ---------------------------------------------------------------------------------------------------------------------
# helpers

def assert_ok(run: BundleRun) -> None:
    assert run.returncode == 0, run.describe()


def build_network() -> torch.nn.Module:
    """The network exactly as train.json defines it (``network_def``), on the CPU."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(SPLEEN_CONFIGS / "train.json"))
    return parser.get_parsed_content("network_def")


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    """Load a checkpoint the strict way (tensors and plain containers only) and return the model's state dict."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    state = ckpt.get("model", ckpt) if isinstance(ckpt, dict) else ckpt
    assert isinstance(state, dict) and state, f"{path}: no state dict in checkpoint (keys {list(ckpt)})"
    return state


def assert_checkpoint_loads(path: Path) -> dict[str, torch.Tensor]:
    assert path.is_file(), f"{path} was not written; files: {list_files(path.parent)}"
    state = load_weights(path)
    net = build_network()
    # strict: a DDP-wrapped save ("module." prefixes) or a drifting network definition fails here
    net.load_state_dict(state, strict=True)
    return state


def val_dice_history(log_dir: Path) -> list[tuple[int, float]]:
    """(epoch, val_mean_dice) pairs from the TensorBoard event files the training run writes to ``output_dir``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    history: list[tuple[int, float]] = []
    for events in sorted(log_dir.glob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events), size_guidance={"scalars": 0})
        acc.Reload()
        if "val_mean_dice" in acc.Tags().get("scalars", []):
            history += [(e.step, e.value) for e in acc.Scalars("val_mean_dice")]
    return sorted(history)


def no_partial_files(folder: Path) -> list[str]:
    return [f for f in list_files(folder) if ".partial" in f or f.endswith(".tmp") or "/." in f"/{f}"]


# ---------------------------------------------------------------------------------------------------------------------
# train → checkpoint → evaluate → infer

def test_train_smoke_writes_a_weights_only_checkpoint(trained_spleen: TrainedBundle) -> None:
    assert_ok(trained_spleen.run)
    assert_checkpoint_loads(trained_spleen.model)
    # the best model and the resume checkpoint, no temporary leftovers
    assert list_files(trained_spleen.bundle_root / "models") == ["latest.pt", "model.pt"]
    history = val_dice_history(trained_spleen.bundle_root / "eval")
    assert [epoch for epoch, _ in history] == [1, 2], history  # smoke override: 2 epochs, validation every epoch
    assert all(0.0 <= dice <= 1.0 for _, dice in history), history


@pytest.fixture(scope="module")
def evaluation(trained_spleen: TrainedBundle, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, BundleRun]:
    """evaluate.json run on the trained model; returns its output_dir and the run."""
    out = tmp_path_factory.mktemp("spleen_eval") / "eval"
    run = run_bundle([SPLEEN_CONFIGS / "train.json", SPLEEN_CONFIGS / "evaluate.json"] + train_configs()[1:],
                     bundle_root=trained_spleen.bundle_root,
                     overrides={"dataset_dir": str(trained_spleen.dataset_dir), "output_dir": str(out)})
    return out, run


def read_per_case_dice(out: Path) -> dict[str, float]:
    """Case name → Dice from MetricsSaver's ``val_mean_dice_raw.csv``."""
    with open(out / "val_mean_dice_raw.csv") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    assert header[0] == "filename" and "mean" in header, header
    return {case_name(r[0]): float(r[header.index("mean")]) for r in body}


def case_name(path: str | Path) -> str:
    return Path(path).name.split(".")[0]


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(bool), b.astype(bool)
    return float(2 * (a & b).sum() / (a.sum() + b.sum()))


def test_evaluate_reports_dice_per_case_and_mean(trained_spleen: TrainedBundle,
                                                 evaluation: tuple[Path, BundleRun]) -> None:
    from bundlezoo.data.msd import msd_datalist

    out, run = evaluation
    assert_ok(run)
    val_cases = msd_datalist(trained_spleen.dataset_dir, split="validation", seed=0, val_fraction=0.25)
    per_case = read_per_case_dice(out)
    assert sorted(per_case) == sorted(case_name(c["image"]) for c in val_cases), per_case
    assert all(0.0 <= d <= 1.0 for d in per_case.values()), per_case

    metrics = dict(line.split(",") for line in (out / "metrics.csv").read_text().splitlines() if line)
    assert float(metrics["val_mean_dice"]) == pytest.approx(np.mean(list(per_case.values())), abs=1e-4), metrics
    summary = (out / "val_mean_dice_summary.csv").read_text().splitlines()
    assert summary[0].split(",")[:2] == ["class", "mean"], summary


@pytest.fixture(scope="module")
def nifti_inference(trained_spleen: TrainedBundle, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, BundleRun]:
    """inference.json on a NIfTI folder: the validation images as they are, and the first one in several orientations."""
    from bundlezoo.data.msd import msd_datalist

    tmp = tmp_path_factory.mktemp("spleen_infer")
    inputs, outputs = tmp / "in", tmp / "out"
    inputs.mkdir()
    val_cases = msd_datalist(trained_spleen.dataset_dir, split="validation", seed=0, val_fraction=0.25)
    for case in val_cases:
        shutil.copy(case["image"], inputs / Path(case["image"]).name)
    for code in ORIENTATIONS:
        reorient_nifti(val_cases[0]["image"], inputs / f"case_{code}.nii.gz", code)
    run = run_bundle([SPLEEN_CONFIGS / "inference.json"], bundle_root=trained_spleen.bundle_root,
                     overrides={"dataset_dir": str(inputs), "output_dir": str(outputs), **INFER_OVERRIDES})
    return inputs, outputs, run


def test_inference_keeps_each_input_in_its_own_space(nifti_inference: tuple[Path, Path, BundleRun]) -> None:
    inputs, outputs, run = nifti_inference
    assert_ok(run)
    expected = sorted(f"{case_name(p)}_seg.nii.gz" for p in inputs.iterdir())
    assert list_files(outputs) == sorted([*expected, "failures.json"]), list_files(outputs)
    assert json.loads((outputs / "failures.json").read_text()) == []

    for src in sorted(inputs.iterdir()):  # the orientation variants and the validation images (engine orientations)
        img, seg = nib.load(src), nib.load(outputs / f"{case_name(src)}_seg.nii.gz")
        assert seg.shape == img.shape, (src.name, seg.shape, img.shape)
        assert np.allclose(seg.affine, img.affine, atol=1e-4), (src.name, seg.affine, img.affine)
        values = np.unique(np.asarray(seg.dataobj))
        assert set(values.tolist()) <= {0, 1}, (src.name, values)

    in_ras = {code: np.asarray(nib.as_closest_canonical(nib.load(outputs / f"case_{code}_seg.nii.gz")).dataobj)
              for code in ORIENTATIONS}

    # every orientation is brought to RAS before the network, so the labels must agree in world space
    for code in ORIENTATIONS[1:]:
        agree = float(np.mean(in_ras[code] == in_ras["RAS"]))
        assert agree > 0.999, f"{code}: only {agree:.4f} of voxels agree with the RAS input's label"


def test_inference_postprocessing_keeps_only_the_largest_spleen_component(tmp_path: Path) -> None:
    """inference.json's own postprocessing chain (softmax, Invertd, argmax, largest component, atomic save) turns a
    prediction with a spleen and a detached false-positive island into a label holding the spleen alone."""
    from monai.bundle import ConfigParser
    from monai.data import MetaTensor

    hu = np.full((48, 40, 32), -1000.0, dtype=np.float32)
    hu[4:44, 4:36, 2:30] = 40.0  # a box of soft tissue, so CropForeground keeps most of the grid
    image = tmp_path / "case.nii.gz"
    nib.save(nib.Nifti1Image(hu, np.diag([3.0, 3.0, 3.0, 1.0])), str(image))

    parser = ConfigParser()
    parser.read_config(str(SPLEEN_CONFIGS / "inference.json"))
    parser.update({"bundle_root": str(tmp_path), "output_dir": str(tmp_path / "out"), **INFER_OVERRIDES})
    data = parser.get_parsed_content("preprocessing")({"image": str(image)})
    shape = data["image"].shape[1:]
    spleen = torch.zeros(shape, dtype=torch.bool)
    spleen[2:8, 2:8, 2:8] = True
    island = torch.zeros(shape, dtype=torch.bool)
    island[-3:, -3:, -3:] = True
    logits = torch.stack([(~(spleen | island)).float(), (spleen | island).float()]) * 8.0
    data["pred"] = MetaTensor(logits, meta=data["image"].meta, applied_operations=data["image"].applied_operations)
    parser.get_parsed_content("postprocessing")(data)

    written = nib.load(tmp_path / "out" / "case_seg.nii.gz")
    seg = np.asarray(written.dataobj)
    assert seg.shape == hu.shape
    _, n_components = ndimage.label(seg == 1, structure=np.ones((3, 3, 3)))
    assert n_components == 1, f"{n_components} spleen components after postprocessing"
    ras = np.asarray(nib.as_closest_canonical(written).dataobj)
    assert ras[:24, :20, :16].sum() > 0 and ras[24:, 20:, 16:].sum() == 0, "kept the island, not the spleen"


def test_evaluate_dice_is_measured_in_the_original_image_space(
        trained_spleen: TrainedBundle, evaluation: tuple[Path, BundleRun],
        nifti_inference: tuple[Path, Path, BundleRun]) -> None:
    """evaluate.json's per-case Dice equals the Dice of inference.json's output against the original label file."""
    (out, eval_run), (_, outputs, infer_run) = evaluation, nifti_inference
    assert_ok(eval_run)
    assert_ok(infer_run)
    for name, reported in read_per_case_dice(out).items():
        seg = np.asarray(nib.load(outputs / f"{name}_seg.nii.gz").dataobj)
        label = np.asarray(nib.load(trained_spleen.dataset_dir / "labelsTr" / f"{name}.nii.gz").dataobj)
        assert seg.shape == label.shape
        assert dice(seg, label) == pytest.approx(reported, abs=2e-3), name


def test_inference_on_a_dicom_series_folder(trained_spleen: TrainedBundle, tmp_path: Path) -> None:
    from bundlezoo.data.dicom import write_dicom_series

    source_path = sorted((trained_spleen.dataset_dir / "imagesTr").glob("*.nii.gz"))[0]
    source = nib.load(source_path)
    series, outputs = tmp_path / "series", tmp_path / "out"
    write_dicom_series(np.asarray(source.dataobj), source.affine, series)
    run = run_bundle([SPLEEN_CONFIGS / "inference.json"], bundle_root=trained_spleen.bundle_root,
                     overrides={"dataset_dir": str(series), "output_dir": str(outputs), **INFER_OVERRIDES})
    assert_ok(run)

    written = [f for f in list_files(outputs) if f != "failures.json"]
    assert len(written) == 1 and written[0].endswith(".nii.gz"), written
    seg = nib.load(outputs / written[0])
    # the writer stores the volume in L, P, S voxel order (rows along L, columns along P, slices along S), so the
    # series' own grid is the source's grid reoriented to LPS; the label must come back on that grid
    series_grid = reorient_nifti(source_path, tmp_path / "series_grid.nii.gz", "LPS")
    assert seg.shape == series_grid.shape, (seg.shape, series_grid.shape)
    assert np.allclose(seg.affine, series_grid.affine, atol=1e-3), (seg.affine, series_grid.affine)
    assert set(np.unique(np.asarray(seg.dataobj)).tolist()) <= {0, 1}


# ---------------------------------------------------------------------------------------------------------------------
# distributed, determinism, tracking, embedded default

def test_torchrun_two_process_gloo(spleen_msd: Path, tmp_path: Path) -> None:
    run = run_bundle(train_configs(SPLEEN_CONFIGS / "multi_gpu_train.json"), bundle_root=tmp_path,
                     overrides={"dataset_dir": str(spleen_msd)}, torchrun_nproc=2,
                     env=bundle_env(OMP_NUM_THREADS="1"))
    assert_ok(run)
    assert_checkpoint_loads(tmp_path / "models" / "model.pt")
    assert val_dice_history(tmp_path / "eval"), "rank 0 logged no validation Dice"


@pytest.fixture(scope="module")
def second_run_with_mlflow(trained_spleen: TrainedBundle, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, BundleRun]:
    """A second training run on ``trained_spleen``'s data with its seed, tracked with MONAI's ``--tracking mlflow``.

    The data set is passed explicitly (not regenerated) so this compares training alone; the phantom engine's own
    tests cover the determinism of generation.
    """
    root = tmp_path_factory.mktemp("spleen_train_again")
    run = run_bundle(train_configs(), bundle_root=root, overrides={"dataset_dir": str(trained_spleen.dataset_dir)},
                     extra_args=["--tracking", "mlflow"])
    return root, run


def test_two_cpu_runs_with_one_seed_give_identical_dice(trained_spleen: TrainedBundle,
                                                        second_run_with_mlflow: tuple[Path, BundleRun]) -> None:
    root, run = second_run_with_mlflow
    assert_ok(trained_spleen.run)
    assert_ok(run)
    first, second = val_dice_history(trained_spleen.bundle_root / "eval"), val_dice_history(root / "eval")
    assert first and first == second, (first, second)
    a, b = load_weights(trained_spleen.model), load_weights(root / "models" / "model.pt")
    assert a.keys() == b.keys()
    differing = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differing, f"weights differ between two seeded runs: {differing[:5]}"


def test_mlflow_tracking_records_metrics(second_run_with_mlflow: tuple[Path, BundleRun]) -> None:
    import mlflow

    root, run = second_run_with_mlflow
    assert_ok(run)
    db = root / "eval" / "mlruns.db"  # MONAI's default tracking_uri: a SQLite store under output_dir
    assert db.is_file(), list_files(root / "eval")
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{db}")
    runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
    assert runs, "no MLflow run recorded"
    metrics = {k for r in runs for k in r.data.metrics}
    assert "train_loss" in metrics, metrics
    history = client.get_metric_history(runs[0].info.run_id, "train_loss")
    assert history and all(np.isfinite(m.value) for m in history)


def test_default_dataset_dir_generates_the_phantom_set(trained_spleen: TrainedBundle) -> None:
    """With no --dataset_dir the training run generated the embedded phantom set under its own bundle_root."""
    assert_ok(trained_spleen.run)
    data = trained_spleen.dataset_dir
    assert data == trained_spleen.bundle_root / "data" / "phantom_Task09_Spleen"
    assert (data / "dataset.json").is_file(), list_files(trained_spleen.bundle_root)
    images = sorted(p.name for p in (data / "imagesTr").glob("*.nii.gz"))
    labels = sorted(p.name for p in (data / "labelsTr").glob("*.nii.gz"))
    assert len(images) == 6 and images == labels, (images, labels)  # phantom#n of the smoke override
    assert [p.name for p in data.parent.iterdir()] == [data.name], "a partial data folder was left behind"
    assert "synthetic phantom" in trained_spleen.run.output.lower()  # the run says what it trains on
