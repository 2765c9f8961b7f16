"""Tests of the bundle verifier (tools/verify.py over tools/verify_checks/).

The real bundle must pass every check (once through the CLI, exports included); bundles of other kinds
(pretraining-like, classification-like) must pass on the terms they declare; deliberately broken copies must fail
the right check with a message naming the problem. Negative tests run single checks in-process, so they cost
about a second each.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tools.verify_checks import (
    CHECKS,
    EXPORT_CHECKS,
    FAIL,
    PASS,
    SKIP,
    CheckResult,
    default_bundles_root,
    find_bundles,
    verify_bundle,
)
from tools.verify_checks.base import bundle_on_path
from tools.vendoring import config_common_names, sha256_file, vendor_common

sys.path.insert(0, str(Path(__file__).parent))
from minimal_bundle import (  # noqa: E402
    use_trace_only_network,
    write_classification_bundle,
    write_json,
    write_minimal_bundle,
    write_pretraining_bundle,
)

REPO = Path(__file__).resolve().parents[2]
SPLEEN = REPO / "bundles" / "spleen-fast-train"
SCHEMA = Path(os.environ.get("BUNDLE_SCHEMA", REPO.parent / "shared" / "schemas" / "meta_schema_20240725.json"))
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


def declare(bundle: Path, **fields: Any) -> None:
    """Set fields of the bundle's ``verify`` declaration in metadata.json."""
    edit_json(bundle / "configs" / "metadata.json", lambda m: m.setdefault("verify", {}).update(fields))


def run(bundle: Path, *checks: str, schema: Path | str | None = SCHEMA) -> dict[str, CheckResult]:
    """Run the named checks on ``bundle`` in-process; results by check name."""
    return {r.name: r for r in verify_bundle(bundle, schema=schema, checks=list(checks))}


def assert_fails(results: dict[str, CheckResult], name: str, *words: str) -> None:
    """``name`` failed and its message holds every one of ``words``."""
    r = results[name]
    assert r.status == FAIL, f"{name} should fail, got {r.status}: {r.message}"
    for w in words:
        assert w in r.message, f"{name} message lacks {w!r}: {r.message}"


def verify_cli(*args: str, cwd: Path = REPO, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``python -m tools.verify ARGS`` as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "tools.verify", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900
    )


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
    """A minimal valid segmentation bundle (tiny UNet) written from scratch, with no declaration (defaults)."""
    return write_minimal_bundle(tmp_path / "minimal")


@pytest.fixture
def pretraining(tmp_path: Path) -> Path:
    """A pretraining-like bundle: train.json only, tuple-returning ViT autoencoder, encoder checkpoint, no export."""
    return write_pretraining_bundle(tmp_path / "pretraining")


@pytest.fixture
def spleen(tmp_path: Path) -> Path:
    """A copy of the real spleen-fast-train bundle, free to break."""
    assert (SPLEEN / "configs" / "metadata.json").is_file(), f"{SPLEEN} missing"
    return Path(shutil.copytree(SPLEEN, tmp_path / "spleen-fast-train", ignore=COPY_IGNORE))


# ------------------------------------------------------------------------------------------------ passing runs
@needs_schema
def test_real_bundle_passes_every_check_through_the_cli() -> None:
    """The documented command, exports included, on the real bundle (read only)."""
    proc = verify_cli(str(SPLEEN), "--schema", str(SCHEMA))
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    for name in CHECKS:
        assert any(ln.startswith(f"PASS  {name} ") for ln in lines), f"no PASS line for {name}:\n{proc.stdout}"
    assert "all 1 bundles passed" in proc.stdout


def test_spleen_declares_what_applies_to_it() -> None:
    """The spleen bundle's declaration names all its configs and the strict export mode (not the defaults)."""
    declared = load(SPLEEN / "configs" / "metadata.json")["verify"]
    assert set(declared["configs"]) >= {"train.json", "evaluate.json", "inference.json", "multi_gpu_train.json"}
    assert declared["export"]["torchscript"] == "script"


@needs_schema
def test_minimal_bundle_passes_and_is_not_written(minimal: Path) -> None:
    before = tree_snapshot(minimal)
    results = verify_bundle(minimal, schema=SCHEMA, skip_export=True)
    assert [r.name for r in results] == [n for n in CHECKS if n not in EXPORT_CHECKS]
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


@needs_schema
def test_pretraining_bundle_passes_on_its_own_terms(pretraining: Path) -> None:
    """No inference.json, a network returning a tuple, export none: every check passes or is skipped because
    the declaration says it does not apply, and the declared checks run on train.json and the encoder checkpoint."""
    results = {r.name: r for r in verify_bundle(pretraining, schema=SCHEMA)}
    assert not (pretraining / "configs" / "inference.json").exists()
    assert {n for n, r in results.items() if r.status == SKIP} == {"consistency", "torchscript_export", "onnx_export"}
    assert all(r.status == PASS for n, r in results.items() if r.status != SKIP), "\n".join(
        r.line() for r in results.values()
    )
    assert "declared export#torchscript: none" in results["torchscript_export"].message
    assert "train.json (train)" in results["workflow_properties"].message
    net = results["net_in_out"].message
    assert "models/model.pt" in net and "output 'reconstruction' [1, 1, 16, 16, 16]" in net
    assert "1 present and matching" in results["large_files"].message


@needs_schema
@pytest.mark.slow
def test_classification_bundle_passes_with_exports(tmp_path: Path) -> None:
    """A classifier whose output is a logits vector passes every check, exports and round trips included."""
    bundle = write_classification_bundle(tmp_path / "classifier")
    results = {r.name: r for r in verify_bundle(bundle, schema=SCHEMA)}
    assert all(r.status == PASS for r in results.values()), "\n".join(r.line() for r in results.values())
    assert "output 'pred' [1, 2] torch.float32" in results["net_in_out"].message
    assert results["torchscript_export"].message.startswith("scripted, models/model.pt")


def test_classification_output_rank_is_checked(tmp_path: Path) -> None:
    """Declaring a spatial output for a network that returns a vector fails net_in_out, naming the rank."""
    bundle = write_classification_bundle(tmp_path / "classifier")
    edit_json(
        bundle / "configs" / "metadata.json",
        lambda m: m["network_data_format"]["outputs"]["pred"].update(spatial_shape=[16, 16, 16]),
    )
    assert_fails(run(bundle, "net_in_out"), "net_in_out", "rank 2 != 5")


# ------------------------------------------------------------------------------------------------ declaration
def test_declared_config_missing_fails_with_one_line(pretraining: Path) -> None:
    """A declaration naming a config the bundle lacks fails once, in the files check, naming the file; the
    checks that would read it say so and do the rest, so the run gives one clear FAIL line."""
    declare(pretraining, configs=["train.json", "evaluate.json"],
            workflows={"train.json": "train", "evaluate.json": "infer"})
    proc = verify_cli(str(pretraining), "--checks", "required_files,workflow_properties,large_files")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    fails = [ln for ln in proc.stdout.splitlines() if ln.startswith("FAIL")]
    assert fails == [
        "FAIL  required_files             missing configs/evaluate.json (declared in metadata.json verify)"
    ]
    workflow = next(ln for ln in proc.stdout.splitlines() if "workflow_properties" in ln)
    assert workflow.startswith("PASS") and "train.json (train)" in workflow
    assert "needs configs/evaluate.json" in workflow


def test_declared_config_missing_fails_its_check_when_run_alone(pretraining: Path) -> None:
    declare(pretraining, workflows={"train.json": "train", "evaluate.json": "infer"})
    assert_fails(run(pretraining, "workflow_properties"), "workflow_properties", "missing configs/evaluate.json")


def test_default_configs_are_checked_when_present_only(minimal: Path) -> None:
    """Without a declaration train.json is optional (today's behaviour): absent, its parts are left out."""
    (minimal / "configs" / "train.json").unlink()
    r = run(minimal, "required_files", "workflow_properties", "consistency")
    assert r["required_files"].status == PASS
    assert r["workflow_properties"].status == PASS and "no configs/train.json" in r["workflow_properties"].message
    assert r["consistency"].status == SKIP


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"netwrok": {"id": "net"}}, ["verify#netwrok: unknown field"]),
        ({"export": {"torchscript": "jit"}}, ["verify#export", "'jit'"]),
        ({"checks": ["required_files", "nope"]}, ["verify#checks", "unknown check 'nope'"]),
        ({"workflows": {"train.json": "training-ish"}}, ["verify#workflows", "train.json"]),
    ],
)
def test_invalid_declaration_is_one_line(minimal: Path, fields: dict, words: list[str]) -> None:
    declare(minimal, **fields)
    results = verify_bundle(minimal, schema=SCHEMA)
    assert [r.name for r in results] == ["declaration"]
    assert_fails({r.name: r for r in results}, "declaration", *words)


def test_checks_not_declared_are_skipped(minimal: Path) -> None:
    declare(minimal, checks=["required_files"])
    r = run(minimal, "required_files", "version_in_changelog")
    assert r["required_files"].status == PASS
    assert r["version_in_changelog"].status == SKIP and "verify#checks" in r["version_in_changelog"].message


def test_declared_network_and_keys_are_used(pretraining: Path) -> None:
    """The declared output name is looked up in network_data_format: a wrong one fails naming it."""
    declare(pretraining, output="pred")
    assert_fails(run(pretraining, "net_in_out"), "net_in_out", "no tensor 'pred'", "reconstruction")


# --------------------------------------------------------------------------------------------- broken copies
@pytest.mark.parametrize(
    "missing",
    ["LICENSE", "docs/data_license.txt", "configs/logging.conf", "large_files.yml", "configs/multi_gpu_train.json"],
)
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
    assert_fails(
        run(spleen, "consistency"),
        "consistency",
        "train.json#network_def ~ inference.json#network_def: differs",
        "channels#4",
        "512",
    )


def test_drifting_network_through_a_referenced_hyperparameter(minimal: Path) -> None:
    """Same text ``@base_channels`` in both configs, different value: drift all the same."""
    edit_json(minimal / "configs" / "inference.json", lambda c: c.update(base_channels=8))
    assert_fails(run(minimal, "consistency"), "consistency", "channels#0: 4 != 8")


def test_network_written_with_defaults_and_full_class_path_is_the_same(minimal: Path) -> None:
    def rewrite(c: dict) -> None:
        c["network_def"]["_target_"] = "monai.networks.nets.UNet"
        c["network_def"]["kernel_size"] = 3  # UNet's default
        c["network_def"]["channels"] = "$[@base_channels, 8]"

    edit_json(minimal / "configs" / "inference.json", rewrite)
    assert run(minimal, "consistency")["consistency"].status == PASS


def test_consistency_uses_the_declared_ids(minimal: Path) -> None:
    """A declared pair compares the ids it names (here a network defined under another id in inference)."""
    def rename(c: dict) -> None:
        c["net_arch"] = c.pop("network_def")
        c["network"] = "$@net_arch.to(@device)"

    edit_json(minimal / "configs" / "inference.json", rename)
    assert_fails(run(minimal, "consistency"), "consistency", "config id 'network_def' not found in inference.json")
    declare(minimal, consistency=[{"kind": "component", "configs": ["train.json", "inference.json"],
                                   "ids": ["network_def", "net_arch"]}])
    assert run(minimal, "consistency")["consistency"].status == PASS


def test_drifting_preprocessing_spacing(spleen: Path) -> None:
    edit_json(
        spleen / "configs" / "inference.json",
        lambda c: find_transform(transforms_of(c, "inference"), "Spacingd").update(pixdim=[1.0, 1.0, 1.0]),
    )
    assert_fails(run(spleen, "consistency"), "consistency", "drift", "pixdim")


def test_drifting_preprocessing_through_an_expression(minimal: Path) -> None:
    """The intensity window moved in inference's hyper-parameters only."""
    edit_json(
        minimal / "configs" / "inference.json",
        lambda c: find_transform(transforms_of(c, "inference"), "ScaleIntensityRanged").update(a_min="$-50 + 0"),
    )
    assert_fails(run(minimal, "consistency"), "consistency", "a_min", "-57 != -50")


def test_preprocessing_extra_transform_in_inference(minimal: Path) -> None:
    edit_json(
        minimal / "configs" / "inference.json",
        lambda c: transforms_of(c, "inference").insert(4, {"_target_": "NormalizeIntensityd", "keys": "@image_key"}),
    )
    assert_fails(run(minimal, "consistency"), "consistency", "NormalizeIntensityd")


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
    r = run(minimal, "consistency")["consistency"]
    assert r.status == PASS, r.message


def test_preprocessing_image_interpolation_drift(minimal: Path) -> None:
    edit_json(
        minimal / "configs" / "train.json",
        lambda c: find_transform(transforms_of(c, "train"), "Spacingd").update(mode=["nearest", "nearest"]),
    )
    assert_fails(run(minimal, "consistency"), "consistency", "mode", "nearest")


def test_missing_workflow_property(minimal: Path) -> None:
    edit_json(minimal / "configs" / "train.json", lambda c: c["train"].pop("inferer"))
    edit_json(minimal / "configs" / "inference.json", lambda c: c.pop("inferer"))
    r = run(minimal, "workflow_properties")
    assert_fails(r, "workflow_properties", "train.json (train)", "train_inferer", "inference.json (infer)", "inferer")


def test_optional_property_with_wrong_id(minimal: Path) -> None:
    """MONAI's own optional-id check still runs: the trainer must use ``@train#handlers``, not another list."""

    def elsewhere(c: dict) -> None:
        c["other_handlers"] = c["train"]["handlers"]
        c["train"]["trainer"]["train_handlers"] = "@other_handlers"

    edit_json(minimal / "configs" / "train.json", elsewhere)
    assert_fails(run(minimal, "workflow_properties"), "workflow_properties", "train_handlers")


def test_net_in_out_channel_mismatch(minimal: Path) -> None:
    edit_json(
        minimal / "configs" / "metadata.json",
        lambda m: m["network_data_format"]["outputs"]["pred"].update(num_channels=3),
    )
    assert_fails(run(minimal, "net_in_out"), "net_in_out", "channels (2,) != num_channels 3")


@pytest.mark.slow
def test_torchscript_falls_back_to_tracing(minimal: Path) -> None:
    """A network TorchScript cannot compile is traced at the metadata's input shape and still round-trips."""
    use_trace_only_network(minimal)
    before = tree_snapshot(minimal)
    r = run(minimal, "torchscript_export")["torchscript_export"]
    assert r.status == PASS, r.message
    assert "traced at [1, 1, 16, 16, 16] (script failed: RuntimeError:" in r.message
    assert tree_snapshot(minimal) == before  # no __pycache__ from importing the bundle's scripts


def test_declared_script_mode_refuses_the_trace_fallback(minimal: Path) -> None:
    """``torchscript: script`` means the network must script: a trace-only network fails instead of tracing."""
    use_trace_only_network(minimal)
    declare(minimal, export={"torchscript": "script"})
    assert_fails(run(minimal, "torchscript_export"), "torchscript_export", "declared export#torchscript: script")


def test_checkpoint_that_does_not_fit_the_network(minimal: Path) -> None:
    import torch

    (minimal / "models").mkdir()
    torch.save({"not_a_unet.weight": torch.zeros(1)}, minimal / "models" / "model.pt")
    r = run(minimal, "net_in_out", "torchscript_export")
    assert_fails(r, "net_in_out", "models/model.pt does not fit network_def")
    assert_fails(r, "torchscript_export", "models/model.pt does not fit network_def")


def test_tampered_large_file_fails_naming_it(pretraining: Path) -> None:
    """The encoder checkpoint is re-hashed on every run: replaced by other (still loadable) weights, it fails
    large_files by name, although the network would load it without complaint."""
    import torch

    assert run(pretraining, "large_files")["large_files"].status == PASS
    weights = pretraining / "models" / "model.pt"
    state = torch.load(weights, weights_only=True)
    torch.save({k: v + 1e-3 if v.is_floating_point() else v for k, v in state.items()}, weights)
    r = run(pretraining, "large_files", "net_in_out")
    assert_fails(r, "large_files", "models/model.pt: sha256 mismatch")
    assert r["net_in_out"].status == PASS


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


def test_large_file_without_url_needs_the_file(pretraining: Path) -> None:
    """A file shipped in the bundle (a local release zip) needs no url; an absent one must say where it lives."""
    yml = pretraining / "large_files.yml"
    yml.write_text("\n".join(ln for ln in yml.read_text().splitlines() if "url:" not in ln) + "\n")
    assert run(pretraining, "large_files")["large_files"].status == PASS
    (pretraining / "models" / "model.pt").unlink()
    assert_fails(run(pretraining, "large_files"), "large_files", "models/model.pt", "no url")


# ------------------------------------------------------------------------------------------------- schema
@needs_schema
def test_wrong_schema_hash(minimal: Path, tmp_path: Path) -> None:
    tampered = tmp_path / "meta_schema_20240725.json"
    tampered.write_text(SCHEMA.read_text() + "\n")
    assert_fails(run(minimal, "metadata_schema", schema=tampered), "metadata_schema", "md5", "expected 06954cad")


def test_no_schema_downloads_nothing_and_says_pass_schema(minimal: Path) -> None:
    assert_fails(run(minimal, "metadata_schema", schema=None), "metadata_schema", "no schema given", "--schema")


@needs_schema
def test_schema_url_is_downloaded_and_hash_checked(minimal: Path, tmp_path: Path) -> None:
    """Only a URL the user passes is fetched (a file:// URL here: the same urllib route, no network)."""
    assert run(minimal, "metadata_schema", schema=SCHEMA.as_uri())["metadata_schema"].status == PASS
    tampered = tmp_path / "meta_schema_20240725.json"
    tampered.write_text(SCHEMA.read_text() + "\n")
    assert_fails(run(minimal, "metadata_schema", schema=tampered.as_uri()), "metadata_schema", "md5")


def test_unreachable_schema_url_says_pass_a_path(minimal: Path) -> None:
    r = run(minimal, "metadata_schema", schema="http://127.0.0.1:9/meta_schema_20240725.json")
    assert_fails(r, "metadata_schema", "could not download", "--schema PATH")


def test_unpinned_schema_name(minimal: Path) -> None:
    unpinned = "https://example.org/meta_schema_x.json"
    edit_json(minimal / "configs" / "metadata.json", lambda m: m.update(schema=unpinned))
    assert_fails(run(minimal, "metadata_schema"), "metadata_schema", "meta_schema_x.json", "no pinned md5")


# ---------------------------------------------------------------------------------- layout and staged copies
def test_bundle_code_is_imported_from_the_bundle_first(tmp_path: Path) -> None:
    """A bundle's own ``bundlezoo`` (vendored in a release) serves its configs while they are parsed, and the
    verifier's own copy is back afterwards."""
    import bundlezoo

    bundle = write_minimal_bundle(tmp_path / "staged")
    (bundle / "bundlezoo").mkdir()
    (bundle / "bundlezoo" / "__init__.py").write_text('__version__ = "vendored"\n')
    with bundle_on_path(bundle):
        import bundlezoo as inside

        assert inside.__version__ == "vendored"
    import bundlezoo as after

    assert after is bundlezoo and after.__version__ != "vendored"


@needs_schema
def test_staged_release_outside_the_repo_verifies_from_anywhere(tmp_path: Path) -> None:
    """A staged copy with a vendored bundlezoo/, verified from a folder outside the checkout (``--all`` with
    ``--bundles_root``, as for a folder of unzipped releases): no repository layout is assumed."""
    stage = tmp_path / "releases" / SPLEEN.name
    shutil.copytree(SPLEEN, stage, ignore=COPY_IGNORE)
    vendor_common(config_common_names(sorted((stage / "configs").glob("*.json"))), stage)
    env = dict(os.environ, PYTHONPATH=str(REPO))  # only so that `-m tools.verify` is found
    proc = verify_cli("--all", "--bundles_root", str(tmp_path / "releases"), "--skip_export", "--schema", str(SCHEMA),
                      cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    assert f"== {stage}: OK" in proc.stdout and "all 1 bundles passed" in proc.stdout


def test_find_bundles_lists_only_bundles(tmp_path: Path) -> None:
    write_minimal_bundle(tmp_path / "b")
    write_minimal_bundle(tmp_path / "a")
    (tmp_path / "not_a_bundle" / "configs").mkdir(parents=True)
    assert [p.name for p in find_bundles(tmp_path)] == ["a", "b"]


def test_all_finds_the_bundles_folder_of_the_working_folder(tmp_path: Path) -> None:
    assert default_bundles_root(SPLEEN / "docs") == REPO / "bundles"
    assert SPLEEN in find_bundles(default_bundles_root(REPO / "tools"))
    assert default_bundles_root(tmp_path) is None


# ---------------------------------------------------------------------------------------------------- CLI
def test_cli_exit_status_and_lines(minimal: Path, tmp_path: Path) -> None:
    (minimal / "LICENSE").unlink()
    good = write_minimal_bundle(tmp_path / "good")
    proc = verify_cli(str(good), str(minimal), "--checks", "required_files,large_files")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "FAIL  required_files             missing LICENSE" in proc.stdout
    assert f"== {minimal}: FAILED (required_files)" in proc.stdout
    assert f"== {good}: OK" in proc.stdout
    assert "1 of 2 bundles failed" in proc.stdout


def test_cli_usage_errors(tmp_path: Path) -> None:
    nothing = verify_cli()
    assert nothing.returncode == 2 and "--all" in nothing.stderr
    bad = verify_cli(str(SPLEEN), "--checks", "no_such_check")
    assert bad.returncode == 2 and "unknown checks" in bad.stderr
    nowhere = verify_cli("--all", cwd=tmp_path, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert nowhere.returncode == 2 and "--bundles_root" in nowhere.stderr
