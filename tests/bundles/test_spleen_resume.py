"""spleen-fast-train's checkpoints through the real bundle runner: resume after a real ``kill -9``, the overwrite
guard, and finetuning that starts from the pretrained weights (smoke override, synthetic phantoms)."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from bundle_runner import (
    REPO,
    SPLEEN_CONFIGS,
    BundleRun,
    TrainedBundle,
    bundle_args,
    bundle_env,
    list_files,
    run_bundle,
    train_configs,
)

pytestmark = pytest.mark.slow


def assert_ok(run: BundleRun) -> None:
    assert run.returncode == 0, run.describe()


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def trained_epochs(output: str) -> list[int]:
    """The epochs a run trained, from StatsHandler's first-iteration lines."""
    return [int(e) for e in re.findall(r"Epoch: (\d+)/\d+, Iter: 1/", output)]


def handler_index(suffix: str) -> int:
    handlers = json.loads((SPLEEN_CONFIGS / "train.json").read_text())["train"]["handlers"]
    return next(i for i, h in enumerate(handlers) if str(h.get("_target_", "")).endswith(suffix))


def test_kill_9_then_resume_continues_to_the_uninterrupted_result(trained_spleen: TrainedBundle,
                                                                   tmp_path: Path) -> None:
    """The same 2-epoch smoke run as ``trained_spleen`` (same data and seed), killed with SIGKILL once its first
    latest.pt appears, then resumed with ``--resume true``: it trains epoch 2 only and ends with the very weights,
    best model and training state of the uninterrupted run."""
    assert_ok(trained_spleen.run)
    overrides = {"dataset_dir": str(trained_spleen.dataset_dir)}
    latest = tmp_path / "models" / "latest.pt"
    with open(tmp_path / "killed.log", "w") as log:
        proc = subprocess.Popen(bundle_args(train_configs(), bundle_root=tmp_path, overrides=overrides), cwd=REPO,
                                env=bundle_env(), stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 300
        while not latest.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=60) == -signal.SIGKILL, (tmp_path / "killed.log").read_text()[-4000:]
    assert load(latest)["trainer"]["epoch"] == 1, "killed too late to leave an epoch to resume"

    run = run_bundle(train_configs(), bundle_root=tmp_path, overrides={**overrides, "resume": True})
    assert_ok(run)
    assert f"resumed from {latest}: 1 epochs done; continuing with epoch 2/2" in run.output, run.describe()
    assert trained_epochs(run.output) == [2], run.describe()

    reference = trained_spleen.bundle_root / "models"
    resumed, uninterrupted = load(latest), load(reference / "latest.pt")
    assert resumed["trainer"] == uninterrupted["trainer"] and resumed["trainer"]["epoch"] == 2
    assert resumed["validator"] == uninterrupted["validator"]
    assert same(resumed["model"], uninterrupted["model"]), "resumed weights differ from the uninterrupted run's"
    assert same(load(tmp_path / "models" / "model.pt"), load(reference / "model.pt"))
    assert list_files(tmp_path / "models") == ["latest.pt", "model.pt"]


def test_a_new_run_refuses_to_overwrite_a_model_it_did_not_write(trained_spleen: TrainedBundle,
                                                                 tmp_path: Path) -> None:
    released = tmp_path / "models" / "model.pt"
    released.parent.mkdir()
    released.write_bytes(trained_spleen.model.read_bytes())
    overrides = {"dataset_dir": str(trained_spleen.dataset_dir), "epochs": 1}

    run = run_bundle(train_configs(), bundle_root=tmp_path, overrides=overrides)
    assert run.returncode != 0, run.describe()
    assert set(run.input_error_lines()) == {f"{released}: exists and this run did not write it: pass --resume true "
                                            "to continue the run that wrote it, --overwrite true to replace it, or "
                                            "choose another --ckpt_dir (or --bundle_root)"}, run.describe()
    assert run.stderr.strip().splitlines()[-1].startswith("InputDataError: "), run.describe()
    assert released.read_bytes() == trained_spleen.model.read_bytes()
    assert list_files(tmp_path / "models") == ["model.pt"]

    inode = released.stat().st_ino
    run = run_bundle(train_configs(), bundle_root=tmp_path, overrides={**overrides, "overwrite": True})
    assert_ok(run)
    assert f"overwrite: this run will replace {released}" in run.output, run.describe()
    assert f"saved {released}: best val_mean_dice" in run.output, run.describe()
    assert released.stat().st_ino != inode  # a new file renamed over the old one


def test_finetune_starts_from_the_pretrained_weights(trained_spleen: TrainedBundle, tmp_path: Path) -> None:
    """``--finetune true --finetune_model_path``: a validation before the first step (``exec_at_start``) makes the
    best-model saver write the network as it enters training; with no other validation in the 1-epoch run that file
    is exactly the pretrained model, while the trained weights (latest.pt) have moved on."""
    pretrained = load(trained_spleen.model)
    validation = handler_index("ValidationHandler")
    run = run_bundle(train_configs(), bundle_root=tmp_path, overrides={
        "dataset_dir": str(trained_spleen.dataset_dir), "epochs": 1, "val_interval": 2, "finetune": True,
        "finetune_model_path": str(trained_spleen.model), f"train#handlers#{validation}#exec_at_start": True})
    assert_ok(run)
    assert f"finetune from {trained_spleen.model}: loaded {len(pretrained)}/{len(pretrained)} tensors, 100.0%" \
        in run.output, run.describe()
    assert same(load(tmp_path / "models" / "model.pt"), pretrained)
    assert not same(load(tmp_path / "models" / "latest.pt")["model"], pretrained), "no training step happened"


def test_finetune_with_a_key_map_that_fits_nothing_fails_in_one_line(trained_spleen: TrainedBundle,
                                                                      tmp_path: Path) -> None:
    run = run_bundle(train_configs(), bundle_root=tmp_path, overrides={
        "dataset_dir": str(trained_spleen.dataset_dir), "epochs": 1, "finetune": True,
        "finetune_model_path": str(trained_spleen.model), "finetune_key_map": {"model.": "backbone.model."}})
    assert run.returncode != 0, run.describe()
    lines = set(run.input_error_lines())
    assert len(lines) == 1, run.describe()
    line = lines.pop()
    assert line.startswith(f"{trained_spleen.model}: finetune loaded 0/") and "below min_loaded_fraction 0.9" in line
    assert list_files(tmp_path / "models") == []


def test_torchrun_stop_at_target_then_resume_on_every_rank(spleen_msd: Path, tmp_path: Path) -> None:
    """multi_gpu_train.json: a 2-epoch run with a target every Dice reaches stops after epoch 1 on both processes
    (a rank that went on would hang in DDP); rank 0 alone wrote the checkpoints; ``--resume true`` then restores
    latest.pt in both processes and trains epoch 2."""
    configs = train_configs(SPLEEN_CONFIGS / "multi_gpu_train.json")
    env = bundle_env(OMP_NUM_THREADS="1")
    data = {"dataset_dir": str(spleen_msd)}
    first = run_bundle(configs, bundle_root=tmp_path, overrides={**data, "stop_metric_target": 0.0},
                       torchrun_nproc=2, env=env, timeout=300)
    assert_ok(first)
    assert first.output.count("reached the target 0 at epoch 1/2") == 2, first.describe()
    assert trained_epochs(first.output) == [1], first.describe()
    assert list_files(tmp_path / "models") == ["latest.pt", "model.pt"]

    run = run_bundle(configs, bundle_root=tmp_path, overrides={**data, "resume": True}, torchrun_nproc=2, env=env,
                     timeout=300)
    assert_ok(run)
    assert run.output.count("1 epochs done; continuing with epoch 2/2") == 2, run.describe()
    assert trained_epochs(run.output) == [2], run.describe()
    latest = load(tmp_path / "models" / "latest.pt")
    assert latest["trainer"]["epoch"] == 2
    assert not any(k.startswith("module.") for k in latest["model"])  # saved unwrapped from DDP
