"""Tests of the experiment harness (tools/experiments): grids, a real two-arm run on tiny synthetic phantoms, a
kill -9 in the middle of a run and its resume, the report and its drift check, and the no-ratio rule.

Timings on a shared CI machine are never asserted; the curves' losses and metrics are (they are seeded).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from bundlezoo.data.checks import InputDataError
from tools.experiments.plan import load_experiment
from tools.experiments.report import comparisons, insert, load_results, markdown, summarise_curve

REPO = Path(__file__).resolve().parents[2]
BUNDLE = REPO / "bundles" / "spleen-fast-train"
EPOCHS = 3
# coarse grid and small crops: a run's epoch takes about a second on 2 CPU cores
TINY = {"epochs": EPOCHS, "val_interval": 1, "pixdim": [6.0, 6.0, 6.0], "roi_size": [32, 32, 32],
        "val_roi_size": [64, 64, 64], "samples_per_volume": 2, "batch_size": 2, "sw_batch_size": 1,
        "cache_workers": 1, "num_threads": 1, "regular_workers": 0}
RUN_FIELDS = ["arm", "point", "configs", "overrides", "status", "stopped_because", "n_train", "n_validation",
              "own_time_s", "setup_s", "peak_rss_mb", "epochs", "seconds_per_epoch", "seconds_per_validation",
              "best_metric", "best_epoch", "final_metric", "time_to", "curve"]


def _experiment(tmp: Path, data: Path, **extra: Any) -> Path:
    exp = {"name": "tiny", "bundle": str(BUNDLE), "configs": ["configs/train.json"],
           "overrides": {**TINY, "dataset_dir": str(data)},
           "arms": {"fast": {}, "regular": {"configs": ["configs/regular.json"]}},
           "thresholds": [0.5, 0.99], "schedule": "sequential", "compare": [["regular", "fast"]], **extra}
    path = tmp / "tiny.json"
    path.write_text(json.dumps(exp, indent=4))
    return path


def _cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "tools.experiments", *args]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(experiment file, output folder) of one uninterrupted two-arm run on 4 tiny synthetic phantoms."""
    from bundlezoo.data.layouts import write_msd_spleen

    tmp = tmp_path_factory.mktemp("experiments")
    data = write_msd_spleen(tmp / "Task09_Spleen", 4, seed=0, resolution="tiny", progress=False)
    exp = _experiment(tmp, data)
    out = tmp / "out"
    proc = subprocess.run(_cmd("run", str(exp), "--out", str(out)), cwd=REPO, env=_env(), capture_output=True,
                          text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return exp, out


def test_grid_expands_into_one_run_per_arm_and_point(tmp_path: Path) -> None:
    exp = {"bundle": str(BUNDLE), "configs": ["configs/train.json"], "overrides": {"epochs": 5, "seed": 9},
           "arms": {"a": {"overrides": {"epochs": 7, "seed": 5}}, "b": {"configs": ["configs/regular.json"]}},
           "grid": {"seed": [0, 1], "phantom#n": [4, 6, 8]}}
    path = tmp_path / "e.json"
    path.write_text(json.dumps(exp))
    runs = load_experiment(path, override={"val_interval": 3}).runs
    assert len(runs) == 2 * 2 * 3
    assert len({r.name for r in runs}) == 12
    a = next(r for r in runs if r.name == "a[seed=1,phantom#n=6]")
    # bundle_root, the experiment's overrides, then the arm's, then the grid point's, then the command line's
    assert a.overrides == {"bundle_root": str(BUNDLE), "epochs": 7, "seed": 1, "phantom#n": 6, "val_interval": 3}
    b = next(r for r in runs if r.name == "b[seed=0,phantom#n=8]")
    assert [Path(c).name for c in b.configs] == ["train.json", "regular.json"]
    assert b.overrides["epochs"] == 5


@pytest.mark.parametrize("bad, problem", [
    ({"arms": {}}, "'arms'"),
    ({"arms": {"a": {"configs": ["configs/nope.json"]}}}, "nope.json does not exist"),
    ({"arms": {"a": {}}, "grid": {"seed": []}}, "'grid'"),
    ({"arms": {"a": {}}, "compare": [["a", "z"]]}, "'compare'"),
    ({"arms": {"a": {}}, "budget": 3}, "unknown keys"),
])
def test_bad_experiment_files_fail_in_one_line(tmp_path: Path, bad: dict, problem: str) -> None:
    path = tmp_path / "e.json"
    path.write_text(json.dumps({"bundle": str(BUNDLE), "configs": ["configs/train.json"], **bad}))
    with pytest.raises(InputDataError, match=problem) as err:
        load_experiment(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


@pytest.mark.slow
def test_two_arms_run_end_to_end_and_record_every_field(tiny_run: tuple[Path, Path]) -> None:
    _, out = tiny_run
    results = load_results(out)
    assert list(results["runs"]) == ["fast", "regular"]
    assert len(results["sittings"]) == 1 and len(results["sittings"][0]["code"]["commit"]) == 40
    for name, run in results["runs"].items():
        for key in RUN_FIELDS:
            assert key in run, (name, key)
        assert run["status"] == "done" and run["stopped_because"] == "max_epochs"
        assert (run["n_train"], run["n_validation"]) == (3, 1)
        assert [p["epoch"] for p in run["curve"]] == list(range(1, EPOCHS + 1))
        assert all(0.0 <= p["metric"] <= 1.0 and p["loss"] > 0 for p in run["curve"])
        assert run["own_time_s"] >= run["curve"][-1]["time_s"] > run["setup_s"] > 0
        assert run["peak_rss_mb"] > 100
        assert set(run["time_to"]) == {"0.50", "0.99"}
    # each arm is what its configs say: the tutorial's Dice loss starts near 0.7, the fast recipe's Dice+CE above 1
    assert results["runs"]["regular"]["curve"][0]["loss"] < 1.0 < results["runs"]["fast"]["curve"][0]["loss"]
    state = out / "runs" / "fast" / "state.pt"
    import torch

    saved = torch.load(state, weights_only=True)
    assert saved["trainer"]["epoch"] == EPOCHS and saved["lr_scheduler"] is not None


@pytest.mark.slow
def test_kill_9_mid_run_resumes_to_the_same_curves(tiny_run: tuple[Path, Path], tmp_path: Path) -> None:
    exp, reference = tiny_run
    out = tmp_path / "out"
    proc = subprocess.Popen(_cmd("run", str(exp), "--out", str(out)), cwd=REPO, env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = out / "runs" / "regular" / "state.pt"  # the second arm: the first is finished by then
    deadline = time.time() + 600
    while not state.is_file() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert state.is_file(), "the run ended or timed out before the second arm saved its first epoch"
    before = load_results(out)
    assert before["runs"]["fast"]["status"] == "done"
    assert before["runs"].get("regular", {}).get("status") != "done"

    again = subprocess.run(_cmd("run", str(exp), "--out", str(out)), cwd=REPO, env=_env(), capture_output=True,
                           text=True, timeout=240)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "[fast]" not in again.stdout  # the finished arm is skipped
    assert "[regular] resuming after epoch" in again.stdout
    got, want = load_results(out), load_results(reference)
    assert len(got["sittings"]) == 2
    for name in ("fast", "regular"):
        strip = [{k: p[k] for k in ("epoch", "loss", "metric")} for p in got["runs"][name]["curve"]]
        assert strip == [{k: p[k] for k in ("epoch", "loss", "metric")} for p in want["runs"][name]["curve"]], name


@pytest.mark.slow
def test_report_writes_between_markers_and_check_fails_on_drift(tiny_run: tuple[Path, Path], tmp_path: Path) -> None:
    _, out = tiny_run
    doc = tmp_path / "doc.md"
    doc.write_text("# title\n\nkept\n\n<!-- experiment:tiny begin -->\nold\n<!-- experiment:tiny end -->\n\ntail\n")
    png = tmp_path / "curves.png"
    proc = subprocess.run(_cmd("report", str(out), "--doc", str(doc), "--plot", str(png)), cwd=REPO, env=_env(),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = doc.read_text()
    assert text.startswith("# title\n\nkept\n") and text.endswith("<!-- experiment:tiny end -->\n\ntail\n")
    assert "| `regular` | 3 / 1 | 3 |" in text and "old" not in text
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    check = _cmd("report", str(out), "--doc", str(doc), "--check")
    assert subprocess.run(check, cwd=REPO, env=_env(), capture_output=True, timeout=120).returncode == 0
    doc.write_text(text.replace("| `regular` | 3 / 1 | 3 |", "| `regular` | 3 / 1 | 4 |"))
    drift = subprocess.run(check, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=120)
    assert drift.returncode != 0 and "differ" in drift.stderr


def _run(times: dict[float, float | None], own: float, epochs: int, arm: str) -> dict[str, Any]:
    curve = [{"epoch": epochs, "time_s": own, "train_s": 1.0, "val_s": 1.0, "loss": 0.5, "metric": 0.5}]
    s = summarise_curve(curve, list(times))
    s["time_to"] = {f"{t:.2f}": (None if v is None else {"time_s": v, "epoch": 1}) for t, v in times.items()}
    return {**s, "arm": arm, "point": {}, "status": "done", "own_time_s": own, "epochs": epochs}


def test_a_ratio_only_when_both_runs_reached_the_threshold() -> None:
    results = {"thresholds": [0.8, 0.9], "compare": [["regular", "fast"]],
               "runs": {"regular": _run({0.8: 600.0, 0.9: None}, 17482.2, 100, "regular"),
                        "fast": _run({0.8: 100.0, 0.9: 1718.4}, 1718.4, 90, "fast")}}
    c80, c90 = comparisons(results)
    assert c80["ratio_time"] == 6.0 and c80["text"].endswith("regular / fast = 6.0×")
    assert c90["ratio_time"] is None
    assert c90["text"] == ("regular did not reach 0.90 in 17,482 s (100 epochs); fast reached 0.90 at 1,718 s "
                           "(epoch 1): no ratio")


def test_committed_spleen_results_claim_no_ratio() -> None:
    results = load_results(BUNDLE / "docs" / "results.json")
    assert [c["ratio_time"] for c in comparisons(results)] == [None, None, None]  # regular reached no threshold
    assert "regular did not reach 0.80 in 17,482 s (100 epochs)" in markdown(results)


def test_committed_docs_tables_are_what_report_writes() -> None:
    """Every experiment table in a bundle's docs equals what ``report`` writes from the results JSON beside it."""
    found = 0
    for doc in sorted(REPO.glob("bundles/*/docs/*.md")):
        text = doc.read_text()
        names = re.findall(r"<!-- experiment:(\S+) begin -->", text)
        if not names:
            continue
        by_name = {}
        for path in doc.parent.glob("*.json"):
            data = json.loads(path.read_text())
            if isinstance(data, dict) and "experiment" in data and "runs" in data:
                by_name[data["experiment"]] = (path, data)
        for name in names:
            assert name in by_name, f"{doc}: no results JSON for experiment {name!r} in {doc.parent}"
            path, results = by_name[name]
            assert insert(text, name, markdown(results), str(doc)) == text, (
                f"{doc} drifted from {path}: python -m tools.experiments report {path} --doc {doc}")
            found += 1
    assert found >= 2  # spleen-fast-train's README and performance.md


def test_regular_config_is_the_tutorial_recipe() -> None:
    """configs/regular.json on train.json resolves to MONAI's spleen tutorial: no cache, DiceLoss, Adam 1e-4, fp32."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config([str(BUNDLE / "configs" / "train.json"), str(BUNDLE / "configs" / "regular.json")])
    parser["bundle_root"] = str(BUNDLE)
    cfg = parser.get
    assert cfg("train#dataset#_target_") == "Dataset" and cfg("validate#dataset#_target_") == "Dataset"
    assert cfg("loss") == {"_target_": "DiceLoss", "to_onehot_y": True, "softmax": True}
    assert cfg("optimizer#_target_") == "torch.optim.Adam" and cfg("optimizer#lr") == 1e-4
    assert cfg("amp") is False and cfg("batch_size") == 2
    names = [t["_target_"] for t in cfg("train#deterministic_transforms")]
    assert names == ["LoadImaged", "EnsureChannelFirstd", "ScaleIntensityRanged", "CropForegroundd", "Orientationd",
                     "Spacingd"]
    crop = cfg("train#random_transforms")
    assert len(crop) == 1 and crop[0]["_target_"] == "RandCropByPosNegLabeld"
    assert (crop[0]["pos"], crop[0]["neg"], crop[0]["image_threshold"]) == (1, 1, 0)
    assert parser.get_parsed_content("samples_per_volume") == 4
    assert parser.get_parsed_content("roi_size") == [96, 96, 96]
    assert parser.get_parsed_content("pixdim") == [1.5, 1.5, 2.0]
    assert parser.get_parsed_content("hu_window") == [-57, 164]
    inferer = parser.get_parsed_content("validate#inferer")
    assert (tuple(inferer.roi_size), inferer.sw_batch_size, inferer.overlap) == ((160, 160, 160), 4, 0.25)
    sched = parser.get_parsed_content("lr_scheduler")  # train.json's LR handler steps it; the rate never changes
    for _ in range(5):
        sched.optimizer.step()
        sched.step()
    assert sched.get_last_lr() == [1e-4]


def test_a_larger_budget_reopens_only_runs_stopped_by_their_budget() -> None:
    from tools.experiments.plan import RunSpec
    from tools.experiments.runner import _finished

    spec = RunSpec(name="a", arm="a", point={}, configs=[], overrides={}, budget_s=300.0)
    assert not _finished({"status": "done", "stopped_because": "budget", "own_time_s": 181.0}, spec)
    assert _finished({"status": "done", "stopped_because": "budget", "own_time_s": 301.0}, spec)
    assert _finished({"status": "done", "stopped_because": "max_epochs", "own_time_s": 100.0}, spec)
    assert not _finished({"status": "running", "stopped_because": None, "own_time_s": 10.0}, spec)
    assert not _finished(None, spec)
