"""Tests of the bundle verifier (tools/verify.py over tools/verifier.py).

The real bundle must pass every check (once through the CLI, exports included); deliberately broken copies
must fail the right check with a message naming the problem. Negative tests run single checks in-process, so
they cost about a second each.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tools import verifier as bundle_checks
from tools.verifier import CHECKS, FAIL, PASS, SKIP, CheckResult, sha256_file, verify_bundle

sys.path.insert(0, str(Path(__file__).parent))
from minimal_bundle import use_trace_only_network, write_json, write_minimal_bundle  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SPLEEN = REPO / "bundles" / "spleen-fast-train"
SCHEMA = Path(os.environ.get("BUNDLE_SCHEMA", REPO.parent / "shared" / "schemas" / "meta_schema_20240725.json"))
VERIFY = REPO / "tools" / "verify.py"
# Run outputs and data never belong in a copy used to test the configs.
COPY_IGNORE = shutil.ignore_patterns("models", "data", "eval", "runs", "logs", "mlruns", "__pycache__")

needs_schema = pytest.mark.skipif(not SCHEMA.is_file(), reason=f"pinned schema not found at {SCHEMA}")


# --------------------------------------------------------------------------------------------------- helpers
def load(path: Path) -> Any:
    return json.loads(path.read_text())


def edit_json(path: Path, change: Callable[[Any], None]) -> None:
    """Apply ``change`` to a JSON file in place."""
    data = load(path)
    change(data)
    write_json(path, data)


def run(bundle: Path, *checks: str, schema: Path | None = SCHEMA) -> dict[str, CheckResult]:
    """Run the named checks on ``bundle`` in-process; results by check name."""
    return {r.name: r for r in verify_bundle(bundle, schema=schema, checks=list(checks))}


def assert_fails(results: dict[str, CheckResult], name: str, *words: str) -> None:
    """``name`` failed and its message holds every one of ``words``."""
    r = results[name]
    assert r.status == FAIL, f"{name} should fail, got {r.status}: {r.message}"
    for w in words:
        assert w in r.message, f"{name} message lacks {w!r}: {r.message}"


def tree_snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root`` with its size and mtime: equal before and after means nothing was written."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


def transforms_of(cfg: dict, where: str) -> list[dict]:
    """The transform list of inference ``preprocessing`` or train ``train#deterministic_transforms``."""
    return cfg["preprocessing"]["transforms"] if where == "inference" else cfg["train"]["deterministic_transforms"]


def find_transform(transforms: list[dict], short_name: str) -> dict:
    """The first transform whose class name ends with ``short_name`` (``Spacingd`` finds ``SafeSpacingd`` too)."""
    return next(t for t in transforms if str(t.get("_target_", "")).rsplit(".", 1)[-1].endswith(short_name))


# -------------------------------------------------------------------------------------------------- fixtures
@pytest.fixture
def minimal(tmp_path: Path) -> Path:
    """A minimal valid bundle (tiny UNet) written from scratch."""
    return write_minimal_bundle(tmp_path / "minimal")


@pytest.fixture
def spleen(tmp_path: Path) -> Path:
    """A copy of the real spleen-fast-train bundle, free to break."""
    assert (SPLEEN / "configs" / "metadata.json").is_file(), f"{SPLEEN} missing"
    return Path(shutil.copytree(SPLEEN, tmp_path / "spleen-fast-train", ignore=COPY_IGNORE))


# ------------------------------------------------------------------------------------------------ passing runs
@needs_schema
def test_real_bundle_passes_every_check_through_the_cli() -> None:
    """The documented command, exports included, on the real bundle (read only)."""
    proc = subprocess.run(
        [sys.executable, str(VERIFY), str(SPLEEN), "--schema", str(SCHEMA)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    for name in CHECKS:
        assert any(ln.startswith(f"PASS  {name} ") for ln in lines), f"no PASS line for {name}:\n{proc.stdout}"
    assert "all 1 bundles passed" in proc.stdout


@needs_schema
def test_minimal_bundle_passes_and_is_not_written(minimal: Path) -> None:
    before = tree_snapshot(minimal)
    results = verify_bundle(minimal, schema=SCHEMA, skip_export=True)
    assert [r.name for r in results] == [n for n in CHECKS if n not in bundle_checks.EXPORT_CHECKS]
    assert all(r.status == PASS for r in results), "\n".join(r.line() for r in results)
    assert tree_snapshot(minimal) == before


@needs_schema
def test_verifying_spleen_only_parses_no_data_generated(spleen: Path) -> None:
    """Building the workflows must not run the train config's phantom generation nor write anything."""
    before = tree_snapshot(spleen)
    results = verify_bundle(spleen, schema=SCHEMA, skip_export=True)
    assert all(r.status == PASS for r in results), "\n".join(r.line() for r in results)
    assert tree_snapshot(spleen) == before
    assert not (spleen / "data").exists()


# --------------------------------------------------------------------------------------------- broken copies
@pytest.mark.parametrize("missing", ["LICENSE", "docs/data_license.txt", "configs/logging.conf", "large_files.yml"])
def test_missing_required_file(spleen: Path, missing: str) -> None:
    (spleen / missing).unlink()
    assert_fails(run(spleen, "required_files"), "required_files", "missing", missing)


@needs_schema
def test_schema_invalid_metadata(spleen: Path) -> None:
    def breakit(m: dict) -> None:
        del m["authors"]
        m["network_data_format"]["inputs"]["image"]["num_channels"] = "one"

    edit_json(spleen / "configs" / "metadata.json", breakit)
    r = run(spleen, "metadata_schema")["metadata_schema"]
    assert_fails({r.name: r}, "metadata_schema", "metadata.json invalid", "'authors' is a required property")
    assert "network_data_format/inputs/image" in r.message


def test_version_not_in_changelog(spleen: Path) -> None:
    edit_json(spleen / "configs" / "metadata.json", lambda m: m.update(version="9.9.9"))
    assert_fails(run(spleen, "version_in_changelog"), "version_in_changelog", "9.9.9", "not in changelog")


def test_drifting_network_channels(spleen: Path) -> None:
    edit_json(spleen / "configs" / "inference.json", lambda c: c["network_def"].update(channels=[16, 32, 64, 128, 512]))
    assert_fails(run(spleen, "network_consistency"), "network_consistency", "network_def differs", "channels#4", "512")


def test_drifting_network_through_a_referenced_hyperparameter(minimal: Path) -> None:
    """Same text ``@base_channels`` in both configs, different value: drift all the same."""
    edit_json(minimal / "configs" / "inference.json", lambda c: c.update(base_channels=8))
    assert_fails(run(minimal, "network_consistency"), "network_consistency", "channels#0: 4 != 8")


def test_network_written_with_defaults_and_full_class_path_is_the_same(minimal: Path) -> None:
    def rewrite(c: dict) -> None:
        c["network_def"]["_target_"] = "monai.networks.nets.UNet"
        c["network_def"]["kernel_size"] = 3  # UNet's default
        c["network_def"]["channels"] = "$[@base_channels, 8]"

    edit_json(minimal / "configs" / "inference.json", rewrite)
    assert run(minimal, "network_consistency")["network_consistency"].status == PASS


def test_drifting_preprocessing_spacing(spleen: Path) -> None:
    edit_json(
        spleen / "configs" / "inference.json",
        lambda c: find_transform(transforms_of(c, "inference"), "Spacingd").update(pixdim=[1.0, 1.0, 1.0]),
    )
    assert_fails(run(spleen, "preprocessing_consistency"), "preprocessing_consistency", "drift", "pixdim")


def test_drifting_preprocessing_through_an_expression(minimal: Path) -> None:
    """The intensity window moved in inference's hyper-parameters only."""
    edit_json(
        minimal / "configs" / "inference.json",
        lambda c: find_transform(transforms_of(c, "inference"), "ScaleIntensityRanged").update(a_min="$-50 + 0"),
    )
    assert_fails(run(minimal, "preprocessing_consistency"), "preprocessing_consistency", "a_min", "-57 != -50")


def test_preprocessing_extra_transform_in_inference(minimal: Path) -> None:
    edit_json(
        minimal / "configs" / "inference.json",
        lambda c: transforms_of(c, "inference").insert(4, {"_target_": "NormalizeIntensityd", "keys": "@image_key"}),
    )
    assert_fails(run(minimal, "preprocessing_consistency"), "preprocessing_consistency", "NormalizeIntensityd")


def test_preprocessing_rule_ignores_label_only_and_crop_differences(minimal: Path) -> None:
    """Label interpolation, label-only transforms and the foreground crop are not what the network sees."""

    def train_change(c: dict) -> None:
        ts = transforms_of(c, "train")
        find_transform(ts, "Spacingd")["mode"] = ["bilinear", "bilinear"]
        ts.insert(3, {"_target_": "AsDiscreted", "keys": "@label_key", "threshold": 0.5})

    edit_json(minimal / "configs" / "train.json", train_change)
    edit_json(
        minimal / "configs" / "inference.json",
        lambda c: transforms_of(c, "inference").insert(
            4, {"_target_": "CropForegroundd", "keys": "@image_key", "source_key": "@image_key"}
        ),
    )
    r = run(minimal, "preprocessing_consistency")["preprocessing_consistency"]
    assert r.status == PASS, r.message


def test_preprocessing_image_interpolation_drift(minimal: Path) -> None:
    edit_json(
        minimal / "configs" / "train.json",
        lambda c: find_transform(transforms_of(c, "train"), "Spacingd").update(mode=["nearest", "nearest"]),
    )
    assert_fails(run(minimal, "preprocessing_consistency"), "preprocessing_consistency", "mode", "nearest")


def test_missing_workflow_property(minimal: Path) -> None:
    edit_json(minimal / "configs" / "train.json", lambda c: c["train"].pop("inferer"))
    edit_json(minimal / "configs" / "inference.json", lambda c: c.pop("inferer"))
    r = run(minimal, "workflow_properties_train", "workflow_properties_infer")
    assert_fails(r, "workflow_properties_train", "train_inferer")
    assert_fails(r, "workflow_properties_infer", "inferer")


def test_optional_property_with_wrong_id(minimal: Path) -> None:
    """MONAI's own optional-id check still runs: the trainer must use ``@train#handlers``, not another list."""

    def elsewhere(c: dict) -> None:
        c["other_handlers"] = c["train"]["handlers"]
        c["train"]["trainer"]["train_handlers"] = "@other_handlers"

    edit_json(minimal / "configs" / "train.json", elsewhere)
    assert_fails(run(minimal, "workflow_properties_train"), "workflow_properties_train", "train_handlers")


def test_net_in_out_channel_mismatch(minimal: Path) -> None:
    edit_json(
        minimal / "configs" / "metadata.json",
        lambda m: m["network_data_format"]["outputs"]["pred"].update(num_channels=3),
    )
    assert_fails(run(minimal, "net_in_out"), "net_in_out", "output channel number")


@pytest.mark.slow
def test_torchscript_falls_back_to_tracing(minimal: Path) -> None:
    """A network TorchScript cannot compile is traced at the metadata's input shape and still round-trips."""
    use_trace_only_network(minimal)
    before = tree_snapshot(minimal)
    r = run(minimal, "torchscript_export")["torchscript_export"]
    assert r.status == PASS, r.message
    assert "traced at [1, 1, 16, 16, 16] (script failed: RuntimeError:" in r.message
    assert tree_snapshot(minimal) == before  # no __pycache__ from importing the bundle's scripts


def test_checkpoint_that_does_not_fit_the_network(minimal: Path) -> None:
    import torch

    (minimal / "models").mkdir()
    torch.save({"not_a_unet.weight": torch.zeros(1)}, minimal / "models" / "model.pt")
    assert_fails(run(minimal, "torchscript_export"), "torchscript_export", "models/model.pt does not fit")


def test_large_files_bad_hash(minimal: Path) -> None:
    (minimal / "models").mkdir()
    weights = minimal / "models" / "model.pt"
    weights.write_bytes(b"not the listed weights")
    # listed hash is all zeros: the present file must not match it
    assert_fails(run(minimal, "large_files"), "large_files", "models/model.pt", "sha256 mismatch")
    text = (minimal / "large_files.yml").read_text().replace("0" * 64, sha256_file(weights))
    (minimal / "large_files.yml").write_text(text)
    assert run(minimal, "large_files")["large_files"].status == PASS


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        ('hash_val: "abc"\n    hash_type: "sha256"', ["not a 64-hex sha256"]),
        ('hash_val: "d41d8cd98f00b204e9800998ecf8427e"\n    hash_type: "md5"', ["expected sha256"]),
    ],
)
def test_large_files_without_sha256(minimal: Path, entry: str, words: list[str]) -> None:
    yml = minimal / "large_files.yml"
    yml.write_text(yml.read_text().split("    hash_val")[0] + "    " + entry + "\n")
    assert_fails(run(minimal, "large_files"), "large_files", *words)


def test_large_files_path_must_stay_in_bundle(minimal: Path) -> None:
    yml = minimal / "large_files.yml"
    yml.write_text(yml.read_text().replace("models/model.pt", "../outside.pt"))
    assert_fails(run(minimal, "large_files"), "large_files", "inside the bundle")


# ------------------------------------------------------------------------------------------------- schema
@needs_schema
def test_wrong_schema_hash(minimal: Path, tmp_path: Path) -> None:
    tampered = tmp_path / "meta_schema_20240725.json"
    tampered.write_text(SCHEMA.read_text() + "\n")
    assert_fails(run(minimal, "metadata_schema", schema=tampered), "metadata_schema", "md5", "expected 06954cad")


def test_no_schema_and_no_network_says_pass_schema(minimal: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args: Any, **kwargs: Any) -> Any:
        raise urllib.error.URLError("network unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    assert_fails(run(minimal, "metadata_schema", schema=None), "metadata_schema", "could not download", "--schema")


def test_unpinned_schema_name(minimal: Path) -> None:
    edit_json(minimal / "configs" / "metadata.json", lambda m: m.update(schema="https://example.org/meta_schema_x.json"))
    assert_fails(run(minimal, "metadata_schema"), "metadata_schema", "meta_schema_x.json", "no pinned md5")


# ---------------------------------------------------------------------------------------------------- CLI
def test_cli_exit_status_and_lines(minimal: Path, tmp_path: Path) -> None:
    (minimal / "LICENSE").unlink()
    good = write_minimal_bundle(tmp_path / "good")
    proc = subprocess.run(
        [sys.executable, str(VERIFY), str(good), str(minimal), "--checks", "required_files,large_files"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "FAIL  required_files             missing LICENSE" in proc.stdout
    assert f"== {minimal}: FAILED (required_files)" in proc.stdout
    assert f"== {good}: OK" in proc.stdout
    assert "1 of 2 bundles failed" in proc.stdout


def test_cli_usage_errors() -> None:
    nothing = subprocess.run([sys.executable, str(VERIFY)], capture_output=True, text=True, timeout=300)
    assert nothing.returncode == 2 and "--all" in nothing.stderr
    bad = subprocess.run(
        [sys.executable, str(VERIFY), str(SPLEEN), "--checks", "no_such_check"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode == 2 and "unknown checks" in bad.stderr


def test_find_bundles_lists_only_bundles(tmp_path: Path) -> None:
    write_minimal_bundle(tmp_path / "b")
    write_minimal_bundle(tmp_path / "a")
    (tmp_path / "not_a_bundle" / "configs").mkdir(parents=True)
    assert [p.name for p in bundle_checks.find_bundles(tmp_path)] == ["a", "b"]
    assert SPLEEN in bundle_checks.find_bundles()


def test_skip_is_not_a_failure(minimal: Path) -> None:
    (minimal / "configs" / "train.json").unlink()
    r = run(minimal, "workflow_properties_train", "network_consistency")
    assert {x.status for x in r.values()} == {SKIP}
