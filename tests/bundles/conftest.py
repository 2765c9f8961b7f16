"""Session fixtures of the bundle tests: a small MSD-layout phantom data set and one trained spleen-fast-train model."""

from __future__ import annotations

from pathlib import Path

import pytest

from bundle_runner import SMOKE_CASES, TrainedBundle, run_bundle, train_configs, write_msd_spleen_small


# ---------------------------------------------------------------------------------------------------------------------
# session fixtures: one small data set (explicit dataset_dir runs) and one trained model (evaluation and inference)

@pytest.fixture(scope="session")
def spleen_msd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 6-case MSD Task09_Spleen-layout folder of synthetic phantoms (read-only for the tests)."""
    return write_msd_spleen_small(tmp_path_factory.mktemp("data") / "Task09_Spleen", SMOKE_CASES, seed=0)


@pytest.fixture(scope="session")
def trained_spleen(tmp_path_factory: pytest.TempPathFactory) -> TrainedBundle:
    """spleen-fast-train trained once with the smoke override and the *default* dataset_dir.

    This is the fresh-clone path: with no ``--dataset_dir`` the run generates the embedded phantom set (6 tiny cases,
    from the smoke override's ``phantom`` section) in ``<bundle_root>/data/phantom_Task09_Spleen``, then trains on it.
    """
    root = tmp_path_factory.mktemp("spleen_train")
    run = run_bundle(train_configs(), bundle_root=root)
    return TrainedBundle(root, root / "data" / "phantom_Task09_Spleen", run)
