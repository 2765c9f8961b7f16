"""Tests of tools/bench_spleen.py: a minute-scale benchmark on tiny synthetic phantoms, and its validation
postprocessing.

The smoke run checks the outputs' structure only: timings on a shared CI machine are not asserted.
"""

from __future__ import annotations

import importlib.util
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
              "seconds_per_validation", "peak_rss_mb", "peak_pss_mb", "cuda_max_allocated_mb", "stopped_because", "curve", "recipe"]
TOP = ["benchmark", "data", "command", "machine", "device", "n_train", "n_validation", "val_interval_epochs",
       "validation_postprocessing", "thresholds", "recipes", "ratio_seconds_per_epoch"] + [
    f"ratio_time_to_dice_{t}{s}" for t in ("0.80", "0.90", "0.95") for s in ("", "_lower_bound")]


@pytest.mark.slow
def test_bench_spleen_tiny(tmp_path: Path) -> None:
    from bundlezoo.data.layouts import write_msd_spleen

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
    assert len(results["code"]["commit"]) == 40 and isinstance(results["code"]["modified"], bool)  # the code that ran
    assert "largest connected" in results["validation_postprocessing"]  # the default, as evaluate.json scores
    assert results["n_train"] == 3 and results["n_validation"] == 1
    for name in ("regular", "fast"):
        rec = results["recipes"][name]
        for key in PER_RECIPE:
            assert key in rec, (name, key)
        assert rec["epochs"] == 1
        assert rec["curve"], name  # validated at least once (val_interval 1)
        assert all(0.0 <= p["dice"] <= 1.0 for p in rec["curve"])
        assert rec["peak_rss_mb"] > 0
        assert 0 < rec["peak_pss_mb"] <= rec["peak_rss_mb"]  # PSS shares out the pages RSS counts per process
    assert "cache_mb" in results["recipes"]["fast"]
    png = out / "dice_vs_time.png"
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # no half-written files are left behind
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]
    assert results["args"]["max_epochs"] == 1 and results["resumes"] == []
    assert (out / "regular_state.pt").is_file()  # saved after the regular epoch, for `resume`

    _check_resume(tmp_path, out, results)
    _check_regular_errors(tmp_path, out, results)

    # the performance page: regenerated from results.json, hand-written notes below the marker kept
    tool = _load_tool()
    page = tmp_path / "performance.md"
    page.write_text("# stale tables\n\n" + tool.NOTES_MARKER + "\n\n## Findings\n\nhand-written text\n")
    replot = tmp_path / "replot.png"
    proc = subprocess.run([sys.executable, str(TOOL), "report", "--results", str(out / "results.json"), "--out", str(page),
                           "--plot", str(replot)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert replot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # the plot redrawn from results.json alone
    text = page.read_text()
    assert "stale tables" not in text and "hand-written text" in text
    assert text.index("## Time to Dice") < text.index(tool.NOTES_MARKER)
    assert "peak PSS (MB)" in text and "largest connected" in text
    assert f"Code: the first sitting at commit `{results['code']['commit'][:12]}`" in text


def _check_resume(tmp_path: Path, out: Path, first: dict) -> None:
    """``resume`` continues the regular recipe alone from its saved state: one more epoch, its clock and curve go on,
    the fast recipe's results stay as they were, and the continuation is seeded by the recipe's saved random
    generator: two resumes of one state train alike, a state with another generator trains otherwise. That last
    state is written the way states were before the recipe had its own generator (torch's global one, under
    ``torch_rng``), so such states still resume, from their own random numbers."""
    import shutil

    import torch

    runs = []
    for name in ("resume_a", "resume_b", "resume_other_rng"):
        folder = tmp_path / name
        shutil.copytree(out, folder)
        if name == "resume_other_rng":
            state = torch.load(folder / "regular_state.pt", weights_only=True)
            del state["loader_rng"]
            state["torch_rng"] = torch.Generator().manual_seed(12345).get_state()
            torch.save(state, folder / "regular_state.pt")
        proc = subprocess.run([sys.executable, str(TOOL), "resume", "--out", str(folder), "--budget_s", "600",
                               "--max_epochs", "2"], cwd=REPO, capture_output=True, text=True, timeout=240)
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs.append(json.loads((folder / "results.json").read_text()))
    for res in runs:
        reg = res["recipes"]["regular"]
        assert reg["epochs"] == 2 and reg["stopped_because"] == "max_epochs"
        assert [p["epoch"] for p in reg["curve"]] == [1, 2]
        assert reg["curve"][0] == first["recipes"]["regular"]["curve"][0]  # the first sitting's curve is kept
        assert reg["own_time_s"] > first["recipes"]["regular"]["own_time_s"]
        assert reg["budget_s"] == 600
        assert res["recipes"]["fast"] == first["recipes"]["fast"]
        assert res["command"] == first["command"]
        assert len(res["resumes"]) == 1 and res["resumes"][0]["from_epoch"] == 1 and res["resumes"][0]["to_epoch"] == 2
        assert len(res["resumes"][0]["code"]["commit"]) == 40
        for key in TOP:
            assert key in res, key
    losses = [res["recipes"]["regular"]["train_loss_per_epoch"] for res in runs]
    assert all(len(x) == 2 and x[0] == first["recipes"]["regular"]["train_loss_per_epoch"][0] for x in losses)
    assert losses[0][1] == losses[1][1]  # one state, one continuation
    assert losses[2][1] != losses[0][1]  # the crops come from the saved RNG
    assert runs[0]["recipes"]["regular"]["curve"][1]["dice"] == runs[1]["recipes"]["regular"]["curve"][1]["dice"]

    # a folder without a saved state: one clear line naming the file, nothing written
    (tmp_path / "resume_a" / "regular_state.pt").unlink()
    before = (tmp_path / "resume_a" / "results.json").read_bytes()
    proc = subprocess.run([sys.executable, str(TOOL), "resume", "--out", str(tmp_path / "resume_a")], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "results.json" in proc.stderr and "regular_state.pt" in proc.stderr
    assert (tmp_path / "resume_a" / "results.json").read_bytes() == before


def _check_regular_errors(tmp_path: Path, out: Path, results: dict) -> None:
    """``regular_errors`` scores the saved regular network case by case, as its validation scored it: the mean of its
    per-case Dice reproduces the Dice the run recorded at that epoch, and the voxel counts add up."""
    proc = subprocess.run([sys.executable, str(TOOL), "regular_errors", "--out", str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    errors = json.loads((out / "regular_errors.json").read_text())
    recorded = results["recipes"]["regular"]["curve"][-1]
    assert errors["epoch"] == recorded["epoch"] == 1 and errors["validation_dice_at_epoch"] == recorded["dice"]
    assert errors["mean_dice_largest_component"] == pytest.approx(recorded["dice"], abs=1e-3)
    assert len(errors["cases"]) == results["n_validation"] and errors["data"] == "synthetic phantom"
    for case in errors["cases"]:
        covered = case["spleen_voxels"] - case["false_negative_voxels"]
        assert case["predicted_voxels"] == covered + case["false_positive_voxels"]
        assert case["spleen_covered"] == pytest.approx(covered / case["spleen_voxels"], abs=1e-4)
        assert case["case"].endswith(".nii.gz")
    assert f"wrote {out / 'regular_errors.json'}" in proc.stdout
    # a folder whose regular state is gone (removed by _check_resume): one clear line naming the files
    proc = subprocess.run([sys.executable, str(TOOL), "regular_errors", "--out", str(tmp_path / "resume_a")],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "regular_state.pt" in proc.stderr
    assert not (tmp_path / "resume_a" / "regular_errors.json").exists()


@pytest.mark.slow
def test_regular_recipe_draws_only_from_its_own_generator(tmp_path: Path) -> None:
    """The regular recipe's shuffling and crops come from its own seeded generator, never from torch's global one:
    otherwise the fast recipe interleaved with it would train on other random numbers once the regular one stops,
    and a benchmark's fast curve would depend on the regular recipe's budget."""
    import torch
    from monai.networks.nets import UNet

    from bundlezoo.data.layouts import write_msd_spleen

    data = write_msd_spleen(tmp_path / "Task09_Spleen", 3, seed=0, resolution="tiny", progress=False)
    files = [{"image": str(data / c["image"]), "label": str(data / c["label"])}
             for c in json.loads((data / "dataset.json").read_text())["training"]]
    tool = _load_tool()

    def recipe(seed: int):
        torch.manual_seed(0)  # one initial network for every recipe below
        net = UNet(spatial_dims=3, in_channels=1, out_channels=2, channels=(4, 8), strides=(2,), num_res_units=0)
        return tool.RegularRecipe(files[:2], files[2:], net, pixdim=TINY["pixdim"], hu_window=[-57.0, 164.0],
                                  roi_size=TINY["roi_size"], num_samples=2, val_roi_size=TINY["val_roi_size"],
                                  sw_batch_size=2, num_workers=1, seed=seed)

    first = recipe(seed=0)
    global_state = torch.get_rng_state()
    losses = [first.train_epoch(), first.train_epoch()]
    first.validate()
    assert torch.equal(torch.get_rng_state(), global_state)  # the global generator was not drawn from

    again = recipe(seed=0)
    torch.manual_seed(123)  # whatever the global generator holds, the recipe trains alike
    assert [again.train_epoch(), again.train_epoch()] == losses
    other = recipe(seed=1)
    assert [other.train_epoch(), other.train_epoch()] != losses


def _load_tool():
    spec = importlib.util.spec_from_file_location("bench_spleen", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _spleen_with_island():
    """Two-class logits (1, 2, 24, 24, 24) whose argmax is a 6-voxel-wide spleen block plus a detached 2³ island."""
    import torch

    fg = torch.zeros(24, 24, 24)
    fg[4:10, 4:10, 4:10] = 1.0
    fg[18:20, 18:20, 18:20] = 1.0
    logits = torch.stack([1.0 - fg, fg])[None] * 4.0 - 2.0
    label = torch.zeros(1, 1, 24, 24, 24)
    label[0, 0, 4:10, 4:10, 4:10] = 1.0
    return logits, label


def _n_components(mask) -> int:
    from scipy import ndimage

    return int(ndimage.label(mask.numpy() > 0)[1])


@pytest.mark.parametrize("postprocess,components", [("largest_component", 1), ("none", 2)])
def test_both_recipes_validate_with_the_chosen_postprocessing(postprocess: str, components: int) -> None:
    """The fast recipe's evaluator (the bundle's config plus the tool's override) and the regular recipe both keep only
    the largest spleen component when asked, and both keep the island when not."""
    import torch
    from monai.bundle import ConfigParser

    tool = _load_tool()
    logits, label = _spleen_with_island()

    parser = ConfigParser()
    parser.read_config(str(tool.BUNDLE / "configs" / "train.json"))
    parser.update(tool._fast_validation_postprocessing(postprocess))
    post = parser.get_parsed_content("validate#postprocessing")
    fast_pred = post({"pred": logits[0], "label": label[0]})["pred"]
    assert fast_pred.shape[0] == 2  # one-hot, as MeanDice takes it
    assert _n_components(fast_pred[1]) == components

    regular = tool.RegularRecipe(
        [{"image": "unused.nii.gz", "label": "unused.nii.gz"}], [{"image": "unused.nii.gz", "label": "unused.nii.gz"}],
        torch.nn.Conv3d(1, 2, 1), pixdim=[1.0, 1.0, 1.0], hu_window=[-57.0, 164.0], roi_size=[16, 16, 16],
        num_samples=1, val_roi_size=[24, 24, 24], sw_batch_size=1, num_workers=0,
        largest_component=postprocess == "largest_component",
    )
    regular_pred = regular.post_pred(logits[0])
    assert _n_components(regular_pred[1]) == components
    assert torch.equal(torch.as_tensor(regular_pred), torch.as_tensor(fast_pred))  # the two recipes score alike


def test_unknown_postprocessing_is_refused() -> None:
    with pytest.raises(ValueError, match="--postprocess must be one of"):
        _load_tool()._fast_validation_postprocessing("biggest")


DOCS = REPO / "bundles" / "spleen-fast-train" / "docs"


def test_committed_results_have_every_field_and_ratio() -> None:
    """The full run committed under the bundle's docs is a complete bench output: every field, every ratio."""
    results = json.loads((DOCS / "results.json").read_text())
    for key in TOP:
        assert key in results, key
    assert results["data"] == "synthetic phantom"
    for name in ("regular", "fast"):
        for key in PER_RECIPE:
            assert key in results["recipes"][name], (name, key)
    assert (DOCS / "dice_vs_time.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_committed_regular_errors_belong_to_the_committed_run() -> None:
    """``regular_errors.json`` scores the committed run's last regular weights: same epoch, and its mean Dice is the
    validation Dice that run recorded there."""
    results = json.loads((DOCS / "results.json").read_text())
    errors = json.loads((DOCS / "regular_errors.json").read_text())
    regular = results["recipes"]["regular"]
    assert errors["epoch"] == regular["epochs"] == regular["curve"][-1]["epoch"]
    assert errors["validation_dice_at_epoch"] == regular["curve"][-1]["dice"]
    assert errors["mean_dice_largest_component"] == pytest.approx(regular["curve"][-1]["dice"], abs=1e-3)
    assert len(errors["cases"]) == results["n_validation"] and errors["data"] == "synthetic phantom"
    assert errors["command"] == f"python tools/bench_spleen.py regular_errors --out {results['args']['out']}"
    assert errors["code"]["modified"] is False


def test_committed_checkpoint_curves_are_complete() -> None:
    """Each per-checkpoint run committed under the docs is a whole `checkpoints` output on the phantoms."""
    files = sorted(DOCS.glob("checkpoints_*.json"))
    assert files
    for path in files:
        c = json.loads(path.read_text())
        assert c["data"] == "synthetic phantom", path.name
        assert c["command"].startswith("python tools/bench_spleen.py checkpoints"), path.name
        assert c["checkpoints"] and all(len(r["cases"]) == 8 for r in c["checkpoints"]), path.name


def test_committed_performance_page_is_what_report_writes(tmp_path: Path) -> None:
    """performance.md's generated tables come from the committed JSON files: `report` rewrites the page unchanged."""
    page = tmp_path / "performance.md"
    committed = (DOCS / "performance.md").read_text()
    page.write_text(committed)
    cmd = [sys.executable, str(TOOL), "report", "--results", str(DOCS / "results.json"), "--out", str(page),
           "--profile_json", str(DOCS / "profile.json"),
           "--checkpoints_json", json.dumps([str(p) for p in sorted(DOCS.glob("checkpoints_*.json"))])]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert page.read_text() == committed, "performance.md differs from `bench_spleen.py report` on the committed JSON"


class _ThresholdNet(__import__("torch").nn.Module):
    """Background/spleen logits straight from the image: spleen where the image is above 0.5."""

    def forward(self, x):
        return __import__("torch").cat([0.5 - x, x - 0.5], dim=1)


def test_score_cases_counts_components_false_positives_and_keeps_the_largest() -> None:
    """Per-case scoring: the raw argmax pays for a detached island, the largest component does not."""
    import torch
    from monai.inferers import SimpleInferer

    tool = _load_tool()
    logits, label = _spleen_with_island()
    image = (logits[:, 1:] > 0).float()  # spleen block + island, as the network predicts it
    rows = tool._score_cases(_ThresholdNet(), [{"image": image, "label": label}], SimpleInferer(),
                             torch.device("cpu"), amp=False, names=["spleen_1.nii.gz"])
    (row,) = rows
    assert row["case"] == "spleen_1.nii.gz"
    assert row["components"] == 2
    assert row["false_positive_voxels"] == 8 and row["false_negative_voxels"] == 0 and row["spleen_voxels"] == 216
    assert row["dice"] == round(2 * 216 / (224 + 216), 4)
    assert row["dice_largest_component"] == 1.0


def test_recompute_bn_averages_the_training_batches_and_leaves_the_network_alone() -> None:
    import torch

    tool = _load_tool()
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv3d(1, 1, 1, bias=False), torch.nn.BatchNorm3d(1))
    net[0].weight.data.fill_(1.0)
    net[1].running_mean.fill_(7.0)
    batches = [{"image": torch.full((2, 1, 4, 4, 4), v)} for v in (1.0, 2.0, 6.0)]
    fresh = tool._recompute_bn(net, batches, torch.device("cpu"), seed=0)
    assert torch.allclose(fresh[1].running_mean, torch.tensor([3.0]))  # (1 + 2 + 6) / 3, not an exponential average
    assert not fresh.training
    assert net[1].running_mean.item() == 7.0  # the scored checkpoint itself is untouched


@pytest.mark.slow
def test_checkpoints_tiny(tmp_path: Path) -> None:
    """Train two epochs on tiny phantoms saving each, score both (as saved and with BN recomputed), then rescore
    from the saved files alone and get the same numbers."""
    import torch
    from bundlezoo.data.layouts import write_msd_spleen

    data = write_msd_spleen(tmp_path / "Task09_Spleen", 4, seed=0, resolution="tiny", progress=False)
    out = tmp_path / "ckpt"
    base = [sys.executable, str(TOOL), "checkpoints", "--out", str(out), "--dataset_dir", str(data), "--epochs", "3",
            "--stop_epoch", "2", "--save_every", "1", "--device", "cpu", "--configs", "[]",
            "--override", json.dumps(TINY)]
    proc = subprocess.run(base, cwd=REPO, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    first = json.loads((out / "checkpoints.json").read_text())
    assert first["data"] == "synthetic phantom"
    assert first["schedule_epochs"] == 3 and first["trained_epochs"] == 2
    assert [(r["epoch"], r["weights"]) for r in first["checkpoints"]] == [
        (1, "as saved"), (1, "BN recomputed"), (2, "as saved"), (2, "BN recomputed")]
    for row in first["checkpoints"]:
        assert row["train_time_s"] > 0
        (case,) = row["cases"]  # 4 cases: 3 train / 1 validation
        assert case["case"].endswith(".nii.gz")
        assert 0.0 <= case["dice"] <= 1.0 and 0.0 <= case["dice_largest_component"] <= 1.0
        assert case["spleen_voxels"] > 0 and case["false_positive_voxels"] >= 0 and case["components"] >= 0
    assert "as saved: stable_from_epoch_dice_0.90" in first["summary"]
    state = torch.load(out / "checkpoints" / "epoch_0002.pt", weights_only=True)
    assert state["epoch"] == 2 and "model" in state
    assert not [p.name for p in (out / "checkpoints").iterdir() if p.name.startswith(".")]

    proc = subprocess.run(base + ["--score_only", "True"], cwd=REPO, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    again = json.loads((out / "checkpoints.json").read_text())
    assert again["checkpoints"] == first["checkpoints"]  # scoring is deterministic, BN recomputation included
    assert again["train_loss_per_epoch"] == first["train_loss_per_epoch"]

    page = tmp_path / "performance.md"
    proc = subprocess.run([sys.executable, str(TOOL), "report", "--results", str(DOCS / "results.json"), "--out",
                           str(page), "--checkpoints_json", json.dumps([str(out / "checkpoints.json")])],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = page.read_text()
    assert "## Dice per checkpoint" in text and "| 2 | BN recomputed |" in text


def test_stability_needs_every_later_checkpoint_and_more_than_the_last() -> None:
    stability = _load_tool()._stability

    def rows(*dice):
        return [{"epoch": 10 * (i + 1), "weights": "as saved", "mean_dice_largest_component": d} for i, d in enumerate(dice)]

    swinging = stability(rows(0.91, 0.5, 0.91))
    assert swinging["as saved: first_epoch_dice_0.90"] == 10
    assert swinging["as saved: stable_from_epoch_dice_0.90"] is None  # the last checkpoint alone proves nothing
    assert stability(rows(0.5, 0.91, 0.92))["as saved: stable_from_epoch_dice_0.90"] == 20
    assert stability(rows(0.5, 0.91, 0.92))["as saved: first_epoch_dice_0.95"] is None
