"""Reuse of a released spleen-fast-train: package, sha256-verified download (file://) and MONAI's download (loopback
HTTP), hash-checked weights, and inference / export / finetuning in a Python that has MONAI but not this repository.

The commands here are the ones ``bundles/spleen-fast-train/docs/README.md`` shows (plus the small override that
keeps them fast on CPU). Numbers are on synthetic phantoms.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
import yaml

from bundle_runner import SMOKE_OVERRIDE, BundleRun, _cfg_list
from release_helpers import (
    FAST_TRAIN,
    RELEASE_EPOCHS,
    NAME,
    Release,
    build_release,
    env_without_repo,
    epoch_losses,
    first_val_dice,
    loopback_http_server,
    overrides_args,
    python_without_repo,
    run_cli,
    verified_download_script,
)
from tools.vendoring import vendored_package_name

pytestmark = pytest.mark.slow

#: inference at the smoke override's grid (4 mm) with a window that covers a tiny phantom in a few steps
SMALL_INFER = {"pixdim": [4.0, 4.0, 4.0], "roi_size": [64, 64, 64], "sw_batch_size": 1, "num_threads": 1}


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Release:
    return build_release(tmp_path_factory.mktemp("release"))


@pytest.fixture(scope="module")
def nopy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return python_without_repo(tmp_path_factory.mktemp("nopy"))


def verified_download(nopy: Path, url: str, sha256: str, cwd: Path) -> BundleRun:
    """The docs' verified download script (``python - URL SHA256 NAME bundles``), run in the Python without the repo."""
    script = cwd / "verified_download.py"
    script.write_text(verified_download_script())
    return run_cli(nopy, [script, url, sha256, NAME, "bundles"], cwd=cwd, env=env_without_repo())


@pytest.fixture(scope="module")
def downloaded(release: Release, nopy: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The release downloaded from its file:// URL with the docs' verified download script (sha256 checked), in the
    Python without the repo; the tests below run this copy."""
    user = tmp_path_factory.mktemp("user_file")
    run = verified_download(nopy, release.zip_path.as_uri(), release.sha256, user)
    assert run.returncode == 0, run.describe()
    assert run.stdout.strip().splitlines()[-1] == f"bundles/{NAME}: sha256 {release.sha256} verified", run.describe()
    assert sorted(p.name for p in (user / "bundles").iterdir()) == [NAME]  # no zip, no temporary folder
    return user / "bundles" / NAME


def fresh_copy(bundle: Path, dest: Path) -> Path:
    """A private copy of a downloaded bundle for a test that writes into it."""
    return Path(shutil.copytree(bundle, dest / bundle.name))


# ------------------------------------------------------------------------------------------------------ package
def test_release_zip_layout(release: Release) -> None:
    """One top folder named like the bundle; configs, docs, weights, a vendored bundlezoo and hashed large files."""
    with zipfile.ZipFile(release.zip_path) as zf:
        names = set(zf.namelist())
        large = yaml.safe_load(zf.read(f"{NAME}/large_files.yml"))
        members = {n: zf.read(n) for n in (f"{NAME}/models/model.pt", f"{NAME}/models/model.ts")}
    assert {n.split("/")[0] for n in names} == {NAME}
    pkg = vendored_package_name(NAME, release.version)
    for need in ("LICENSE", "configs/train.json", "configs/inference.json", "configs/metadata.json",
                 "configs/logging.conf", "docs/README.md", "models/model.pt", "models/model.ts",
                 f"{pkg}/__init__.py", f"{pkg}/transforms/compat.py", f"{pkg}/data/msd.py", f"{pkg}/data/layouts.py"):
        assert f"{NAME}/{need}" in names, need
    # the vendored copy has the release's own name, and the configs name only that one
    assert not [n for n in names if n.startswith(f"{NAME}/bundlezoo/")]
    with zipfile.ZipFile(release.zip_path) as zf:
        inference = zf.read(f"{NAME}/configs/inference.json").decode()
    assert f'"{pkg}.transforms.SafeSpacingd"' in inference and '"bundlezoo.' not in inference
    # only what the configs use: no verifier, no packaging helpers, no run outputs, data, hidden files or caches
    assert not [n for n in names if n.endswith(("verifier.py", "vendoring.py")) or "/data/phantom_" in n
                or "/eval/" in n or "__pycache__" in n or "/." in n]
    # the published digest matches the zip, in sha256sum format
    digest = hashlib.sha256(release.zip_path.read_bytes()).hexdigest()
    assert release.sha256_file.read_text() == f"{digest}  {release.zip_path.name}\n"
    entries = {e["path"]: e for e in large["large_files"]}
    assert set(entries) == {"models/model.pt", "models/model.ts"}
    for path, e in entries.items():
        assert e["hash_type"] == "sha256"
        assert e["hash_val"] == hashlib.sha256(members[f"{NAME}/{path}"]).hexdigest(), path
        assert e["url"].startswith(release.dist.as_uri()) and (release.dist / e["url"].rsplit("/", 1)[1]).is_file()


# ----------------------------------------------------------------------------------------------------- download
def test_verified_download_refuses_tampered_zip_and_existing_folder(release: Release, nopy: Path, downloaded: Path,
                                                                    tmp_path: Path) -> None:
    """The docs' script refuses a zip whose sha256 is not the published one (nothing extracted, no temporary folder
    left), and never reuses an existing folder (it may be the remains of an interrupted download)."""
    tampered = tmp_path / "mirror" / release.zip_path.name
    tampered.parent.mkdir()
    data = bytearray(release.zip_path.read_bytes())
    data[len(data) // 2] ^= 1
    tampered.write_bytes(bytes(data))
    run = verified_download(nopy, tampered.as_uri(), release.sha256, tmp_path)
    assert run.returncode == 1, run.describe()
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith(f"refused {tampered.as_uri()}: HashCheckError: "), run.describe()
    assert list((tmp_path / "bundles").iterdir()) == []

    run = verified_download(nopy, release.zip_path.as_uri(), release.sha256, downloaded.parent.parent)
    assert run.returncode == 1, run.describe()
    assert run.stderr.strip().splitlines()[-1] == f"bundles/{NAME} exists: remove it and rerun", run.describe()


def test_download_over_loopback_http(release: Release, nopy: Path, downloaded: Path, tmp_path: Path) -> None:
    """MONAI's own ``monai.bundle download --url http://…`` (no hash check) gives the same bundle as the verified
    download."""
    with loopback_http_server(release.dist) as base:
        run = run_cli(nopy, ["-m", "monai.bundle", "download", "--name", NAME, "--bundle_dir", "bundles",
                             "--url", f"{base}/{release.zip_path.name}"], cwd=tmp_path, env=env_without_repo())
    assert run.returncode == 0, run.describe()
    got = tmp_path / "bundles" / NAME
    files = lambda root: sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())  # noqa: E731
    assert files(got) == files(downloaded)
    assert (got / "models" / "model.pt").read_bytes() == (downloaded / "models" / "model.pt").read_bytes()


def test_download_large_files_checks_sha256(release: Release, nopy: Path, downloaded: Path, tmp_path: Path) -> None:
    """MONAI's download_large_files fetches the weights by their large_files.yml URL and refuses a wrong file."""
    bundle = fresh_copy(downloaded, tmp_path)
    for f in ("model.pt", "model.ts"):
        (bundle / "models" / f).unlink()
    cmd = ["-m", "monai.bundle", "download_large_files", "--bundle_path", str(bundle)]
    run = run_cli(nopy, cmd, cwd=tmp_path, env=env_without_repo())
    assert run.returncode == 0, run.describe()
    assert (bundle / "models" / "model.pt").read_bytes() == (downloaded / "models" / "model.pt").read_bytes()

    # a tampered asset on the "server": same URL, different bytes -> refused, nothing written
    (bundle / "models" / "model.ts").unlink()
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    large = yaml.safe_load((bundle / "large_files.yml").read_text())
    for e in large["large_files"]:
        asset = e["url"].rsplit("/", 1)[1]
        data = (release.dist / asset).read_bytes()
        (mirror / asset).write_bytes(data[:-1] + bytes([data[-1] ^ 1]) if e["path"].endswith(".ts") else data)
        e["url"] = (mirror / asset).as_uri()
    (bundle / "large_files.yml").write_text(yaml.safe_dump(large, sort_keys=False))
    run = run_cli(nopy, cmd, cwd=tmp_path, env=env_without_repo())
    assert run.returncode != 0, run.describe()
    assert "HashCheckError" in run.stderr and "sha256" in run.stderr, run.describe()
    assert not (bundle / "models" / "model.ts").exists()


# -------------------------------------------------------------------------------------------- without the repo
def test_no_repo_python_cannot_import_common(nopy: Path, tmp_path: Path) -> None:
    """The child Python does not see this repository's bundlezoo package (that it has MONAI, the runs below show)."""
    run = run_cli(nopy, ["-c", "import importlib.util; print(importlib.util.find_spec('bundlezoo'))"], cwd=tmp_path,
                  env=env_without_repo())
    assert run.returncode == 0, run.describe()
    assert run.stdout.strip().splitlines()[-1] == "None", run.describe()


def test_inference_and_export_without_repo(release: Release, nopy: Path, downloaded: Path, tmp_path: Path) -> None:
    """Inference of the downloaded bundle writes one label per input in the input's space; ckpt_export works."""
    bundle = fresh_copy(downloaded, tmp_path)
    inputs = tmp_path / "cts"
    inputs.mkdir()
    for img in release.phantom_images[:2]:
        shutil.copy2(img, inputs / img.name)
    run = run_cli(nopy, ["-m", "monai.bundle", "run", "--config_file", f"{NAME}/configs/inference.json",
                         "--bundle_root", NAME, "--logging_file", f"{NAME}/configs/logging.conf",
                         "--dataset_dir", "cts", "--output_dir", "labels", *overrides_args(SMALL_INFER)],
                  cwd=tmp_path, env=env_without_repo())
    assert run.returncode == 0, run.describe()
    for img in sorted(inputs.glob("*.nii.gz")):
        out = tmp_path / "labels" / img.name.replace(".nii.gz", "_seg.nii.gz")
        assert out.is_file(), (sorted(p.name for p in (tmp_path / "labels").iterdir()), run.describe())
        a, b = nib.load(img), nib.load(out)
        assert a.shape == b.shape[: len(a.shape)] and np.allclose(a.affine, b.affine, atol=1e-4), img.name
        assert set(np.unique(np.asarray(b.dataobj))) <= {0, 1}

    run = run_cli(nopy, ["-m", "monai.bundle", "ckpt_export", "network_def",
                         "--filepath", f"{NAME}/models/model_again.ts", "--ckpt_file", f"{NAME}/models/model.pt",
                         "--meta_file", f"{NAME}/configs/metadata.json",
                         "--config_file", f"{NAME}/configs/inference.json", "--bundle_root", NAME],
                  cwd=tmp_path, env=env_without_repo())
    assert run.returncode == 0, run.describe()
    x = torch.rand(1, 1, 32, 32, 32)
    shipped = torch.jit.load(str(bundle / "models" / "model.ts")).eval()
    again = torch.jit.load(str(bundle / "models" / "model_again.ts")).eval()
    with torch.no_grad():
        assert torch.allclose(shipped(x), again(x), atol=1e-5)


def _validation_handler_index() -> int:
    handlers = json.loads((Path(__file__).resolve().parents[2] / "bundles" / NAME / "configs" / "train.json")
                          .read_text())["train"]["handlers"]
    return next(i for i, h in enumerate(handlers) if str(h.get("_target_", "")).endswith("ValidationHandler"))


def test_finetune_starts_from_packaged_weights(release: Release, nopy: Path, downloaded: Path,
                                               tmp_path: Path) -> None:
    """``--finetune true --finetune_model_path models/model.pt`` on the downloaded bundle, without the repo.

    The run trains on the bundle's embedded phantoms, generated by its vendored ``bundlezoo`` (same seed as the
    release training, so the same cases). Validation before the first step must give exactly the packaged model's
    Dice, and the first epoch's training loss must be that of a trained model, far below the first epoch of the
    from-scratch release training on the same data.
    """
    fresh_copy(downloaded, tmp_path)
    idx = _validation_handler_index()
    overrides = {**FAST_TRAIN, "epochs": 1, "val_interval": 1, "finetune": True,
                 "finetune_model_path": f"{NAME}/models/model.pt", "ckpt_dir": "finetuned",
                 f"train#handlers#{idx}#exec_at_start": True}
    run = run_cli(nopy, ["-m", "monai.bundle", "run", "--config_file",
                         _cfg_list([f"{NAME}/configs/train.json", SMOKE_OVERRIDE]), "--bundle_root", NAME,
                         "--logging_file", f"{NAME}/configs/logging.conf", *overrides_args(overrides)],
                  cwd=tmp_path, env=env_without_repo())
    assert run.returncode == 0, run.describe()
    assert (tmp_path / "finetuned" / "model.pt").is_file(), run.describe()

    start_dice = first_val_dice(run.output)
    assert start_dice == pytest.approx(release.val_dice, abs=1e-4), (start_dice, release.val_dice)

    scratch = np.mean(epoch_losses(release.train_run.output, 1))
    packaged = np.mean(epoch_losses(release.train_run.output, RELEASE_EPOCHS))
    finetune = np.mean(epoch_losses(run.output, 1))
    print(f"finetune: start Dice {start_dice:.4f} (released model {release.val_dice:.4f}); epoch-1 loss "
          f"{finetune:.3f}, released model's last epoch {packaged:.3f}, from-scratch epoch 1 {scratch:.3f}")
    assert packaged < 0.6 * scratch, f"the release model did not learn (loss {scratch:.3f} -> {packaged:.3f})"
    assert finetune < 0.6 * scratch, f"finetune epoch 1 loss {finetune:.3f} vs from-scratch epoch 1 {scratch:.3f}"
