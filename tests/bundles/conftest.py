"""Session fixtures of the bundle tests: one small phantom data set and one trained spleen-fast-train model."""

from __future__ import annotations

from pathlib import Path

import pytest

from bundle_runner import SMOKE_CASES, TrainedBundle, run_bundle, train_configs, write_msd_spleen_small


# ---------------------------------------------------------------------------------------------------------------------
# session fixtures: one small data set and one trained model, shared by the smoke, evaluation and inference tests

@pytest.fixture(scope="session")
def spleen_msd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 6-case MSD Task09_Spleen-layout folder of synthetic phantoms (read-only for the tests)."""
    return write_msd_spleen_small(tmp_path_factory.mktemp("data") / "Task09_Spleen", SMOKE_CASES, seed=0)


@pytest.fixture(scope="session")
def trained_spleen(tmp_path_factory: pytest.TempPathFactory, spleen_msd: Path) -> TrainedBundle:
    """spleen-fast-train trained once with the smoke override on ``spleen_msd``."""
    root = tmp_path_factory.mktemp("spleen_train")
    run = run_bundle(train_configs(), bundle_root=root, overrides={"dataset_dir": str(spleen_msd)})
    return TrainedBundle(root, spleen_msd, run)
