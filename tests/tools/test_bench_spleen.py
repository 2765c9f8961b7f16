"""Smoke test of tools/bench_spleen.py: a minute-scale benchmark on tiny synthetic phantoms.

Checks the outputs' structure only: timings on a shared CI machine are not asserted.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TOOL = REPO / "tools" / "bench_spleen.py"

# coarse grid and small crops so each recipe's epoch takes seconds on 2 CPU cores
TINY = {"pixdim": [5.0, 5.0, 5.0], "roi_size": [16, 16, 16], "val_roi_size": [32, 32, 32], "sw_batch_size": 2,
        "samples_per_volume": 2, "cache_workers": 1}
PER_RECIPE = ["time_to_dice_0.80_s", "time_to_dice_0.90_s", "time_to_dice_0.95_s", "epochs_to_dice_0.90", "budget_s",
              "own_time_s", "setup_s", "final_dice", "best_dice", "epochs", "seconds_per_epoch",
              "seconds_per_validation", "peak_rss_mb", "cuda_max_allocated_mb", "stopped_because", "curve", "recipe"]
TOP = ["benchmark", "data", "command", "machine", "device", "n_train", "n_validation", "val_interval_epochs",
       "thresholds", "recipes", "ratio_seconds_per_epoch"] + [
    f"ratio_time_to_dice_{t}{s}" for t in ("0.80", "0.90", "0.95") for s in ("", "_lower_bound")]


@pytest.mark.slow
def test_bench_spleen_tiny(tmp_path: Path) -> None:
    from common.data.layouts import write_msd_spleen

    data = write_msd_spleen(tmp_path / "Task09_Spleen", 4, seed=0, resolution="tiny", progress=False)
    out = tmp_path / "bench"
    cmd = [sys.executable, str(TOOL), "bench", "--out", str(out), "--dataset_dir", str(data), "--budget_s", "10",
           "--max_epochs", "1", "--regular_workers", "1", "--device", "cpu", "--configs", "[]",
           "--override", json.dumps(TINY), "--fast_override", json.dumps({"val_interval": 1})]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]

    results = json.loads((out / "results.json").read_text())
    for key in TOP:
        assert key in results, key
    assert results["data"] == "synthetic phantom"
    assert results["n_train"] == 3 and results["n_validation"] == 1
    for name in ("regular", "fast"):
        rec = results["recipes"][name]
        for key in PER_RECIPE:
            assert key in rec, (name, key)
        assert rec["epochs"] == 1
        assert rec["curve"], name  # validated at least once (val_interval 1)
        assert all(0.0 <= p["dice"] <= 1.0 for p in rec["curve"])
        assert rec["peak_rss_mb"] > 0
    assert "cache_mb" in results["recipes"]["fast"]
    png = out / "dice_vs_time.png"
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # no half-written files are left behind
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]
