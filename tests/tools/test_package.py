"""tools/package.py and tools/vendoring.py: vendoring closure, zips, hashes, and the refusals.

The full packaging of a trained spleen-fast-train (and everything done with the zip) is exercised in
tests/bundles/test_spleen_reuse.py; here are the parts that need no training.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml

from tools.vendoring import (
    bundle_files,
    common_closure,
    config_common_names,
    large_file_entries,
    rename_in_configs,
    vendor_common,
    vendored_package_name,
    write_sha256_file,
    write_zip,
)

REPO = Path(__file__).resolve().parents[2]
SPLEEN = REPO / "bundles" / "spleen-fast-train"
VERSION = json.loads((SPLEEN / "configs" / "metadata.json").read_text())["version"]
PKG_A = f"bundlezoo_spleen_fast_train_{VERSION.replace('.', '_')}"
SCHEMA = Path(os.environ.get("BUNDLE_SCHEMA", REPO.parent / "shared" / "schemas" / "meta_schema_20240725.json"))


def _rel(paths: list[Path]) -> set[str]:
    return {str(p.relative_to(REPO)) for p in paths}


def test_config_names_include_non_target_strings() -> None:
    names = config_common_names(sorted((SPLEEN / "configs").glob("*.json")))
    assert "bundlezoo.transforms.AtomicNibabelWriter" in names  # a SaveImaged `writer` string, not a _target_
    assert "bundlezoo.transforms.SafeSpacingd" in names
    assert all(n.startswith("bundlezoo.") for n in names)


def test_closure_follows_imports_and_leaves_tools_code_out() -> None:
    files = _rel(common_closure({"bundlezoo.data.msd.msd_datalist"}))
    # parents' __init__, the module, its relative imports, and the deferred import of the phantom engine
    assert {"bundlezoo/__init__.py", "bundlezoo/data/__init__.py", "bundlezoo/data/msd.py", "bundlezoo/data/checks.py",
            "bundlezoo/data/layouts.py", "bundlezoo/data/phantom/__init__.py"} <= files
    assert not files & {"tools/verify_checks/runner.py", "tools/vendoring.py", "bundlezoo/transforms/io.py"}


def test_vendored_copy_imports_alone(tmp_path: Path) -> None:
    """The vendored closure of the spleen configs, under its release name, imports in a fresh interpreter with only
    that copy on the path, and never imports a module called ``bundlezoo``."""
    names = config_common_names(sorted((SPLEEN / "configs").glob("*.json")))
    vendor_common(names, tmp_path, package="bundlezoo_spleen_9_9_9")
    modules = sorted({"bundlezoo_spleen_9_9_9" + n.rsplit(".", 1)[0][len("bundlezoo"):] for n in names})
    code = ("import sys; sys.path[:] = [p for p in sys.path if p not in ('', %r)]; sys.path.insert(0, %r); "
            "import importlib; [importlib.import_module(m) for m in %r]; import bundlezoo_spleen_9_9_9 as b; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'bundlezoo')); print(b.__file__)"
            % (str(REPO), str(tmp_path), modules))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    # -S: no site-packages processing of the editable finder; MONAI etc. come back through the explicit path
    site = [p for p in sys.path if p.endswith("site-packages")]
    proc = subprocess.run([sys.executable, "-S", "-c", f"import sys; sys.path.extend({site!r}); {code}"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-2:] == ["[]", str(tmp_path / "bundlezoo_spleen_9_9_9" / "__init__.py")]


def test_vendor_rejects_unknown_names(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="bundlezoo.nosuchmodule"):
        vendor_common({"bundlezoo.nosuchmodule.Thing"}, tmp_path)


def test_vendor_refuses_absolute_self_import(tmp_path: Path) -> None:
    """A renamed copy must not import ``bundlezoo`` by name: it would run another copy (or none) of that code."""
    root = tmp_path / "src" / "bundlezoo"
    (root / "sub").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "sub" / "__init__.py").write_text("")
    (root / "sub" / "a.py").write_text("X = 1\n")
    (root / "sub" / "b.py").write_text("from .a import X\n\n\ndef f():\n    import bundlezoo.sub.a\n    return X\n")
    with pytest.raises(ValueError, match=r"bundlezoo/sub/b.py:5: imports bundlezoo by its absolute name"):
        vendor_common({"bundlezoo.sub.b.f"}, tmp_path / "out", root=root, package="bundlezoo_x_1")
    assert not (tmp_path / "out").exists()
    (root / "sub" / "b.py").write_text("from .a import X\n\n\ndef f():\n    from . import a\n    return a.X\n")
    copied = vendor_common({"bundlezoo.sub.b.f"}, tmp_path / "out", root=root, package="bundlezoo_x_1")
    assert sorted(p.as_posix() for p in copied) == ["bundlezoo_x_1/__init__.py", "bundlezoo_x_1/sub/__init__.py",
                                                    "bundlezoo_x_1/sub/a.py", "bundlezoo_x_1/sub/b.py"]


def test_bundlezoo_imports_itself_relatively(tmp_path: Path) -> None:
    """Every module of the shared package imports its siblings relatively, so any part of it can be vendored under
    a release's name (vendor_common refuses an absolute self-import)."""
    root = REPO / "bundlezoo"
    modules = sorted(root.rglob("*.py"))
    names = {".".join(("bundlezoo", *f.relative_to(root).with_suffix("").parts)).removesuffix(".__init__")
             for f in modules}
    assert len(vendor_common(names, tmp_path, package="bundlezoo_check")) == len(modules)


def test_vendored_package_name() -> None:
    assert vendored_package_name("spleen-fast-train", "0.4.0") == "bundlezoo_spleen_fast_train_0_4_0"
    assert vendored_package_name("Lidc.Classify", "1.0.0-rc.1") == "bundlezoo_lidc_classify_1_0_0_rc_1"
    assert vendored_package_name("x", "1.0").isidentifier()


def test_rename_in_configs(tmp_path: Path) -> None:
    """Every ``bundlezoo.`` name of the staged configs names the vendored package; nothing else in them changes."""
    shutil.copytree(SPLEEN / "configs", tmp_path / "configs")
    configs = sorted((tmp_path / "configs").glob("*.json"))
    assert config_common_names(configs)
    naming = {p.name for p in configs if "bundlezoo." in p.read_text()}
    assert {"train.json", "inference.json", "evaluate.json"} <= naming
    changed = rename_in_configs(configs, "bundlezoo_spleen_fast_train_0_4_0")
    assert {p.name for p in changed} == naming
    assert config_common_names(configs) == set()
    for cfg in configs:
        original = (SPLEEN / "configs" / cfg.name).read_text()
        assert cfg.read_text().replace("bundlezoo_spleen_fast_train_0_4_0.", "bundlezoo.") == original


def test_zip_is_deterministic_atomic_and_lists_only_the_given_files(tmp_path: Path) -> None:
    src = tmp_path / "b"
    (src / "configs").mkdir(parents=True)
    (src / "configs" / "x.json").write_text("{}")
    (src / "LICENSE").write_text("license")
    (src / "left_by_a_run.log").write_text("not listed")
    files = ["LICENSE", "configs/x.json"]
    a = write_zip(src, tmp_path / "out" / "a.zip", arc_root="b", files=files)
    os.utime(src / "LICENSE", (1, 1))  # file times must not leak into the zip
    b = write_zip(src, tmp_path / "out" / "b.zip", arc_root="b", files=reversed(files))
    assert a.read_bytes() == b.read_bytes()
    assert zipfile.ZipFile(a).namelist() == ["b/LICENSE", "b/configs/x.json"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.zip", "b.zip"]  # no partial files


def test_sha256_file_is_sha256sum_format(tmp_path: Path) -> None:
    zip_file = tmp_path / "b_v1.zip"
    zip_file.write_bytes(b"zip bytes")
    digest, written = write_sha256_file(zip_file)
    assert digest == hashlib.sha256(b"zip bytes").hexdigest()
    assert written == tmp_path / "b_v1.zip.sha256"
    assert written.read_text() == f"{digest}  b_v1.zip\n"
    if shutil.which("sha256sum"):
        check = subprocess.run(["sha256sum", "-c", written.name], cwd=tmp_path, capture_output=True, text=True)
        assert check.returncode == 0 and "b_v1.zip: OK" in check.stdout, check.stdout + check.stderr
        zip_file.write_bytes(b"tampered")
        assert subprocess.run(["sha256sum", "-c", written.name], cwd=tmp_path, capture_output=True).returncode != 0


def test_bundle_files_explicit_list(tmp_path: Path) -> None:
    """Hidden files, caches and compiled Python stay out; a link inside the bundle ships its file's content."""
    b = tmp_path / "b"
    (b / "configs" / "__pycache__").mkdir(parents=True)
    (b / "configs" / "train.json").write_text("{}")
    (b / "configs" / ".train.json.swp").write_text("editor")
    (b / "configs" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"pyc")
    (b / "docs" / ".secrets").mkdir(parents=True)
    (b / "docs" / ".secrets" / "key.pem").write_text("key")
    (b / "docs" / "README.md").write_text("readme")
    (b / "docs" / "same.md").symlink_to("README.md")
    (b / "eval").mkdir()
    (b / "eval" / "metrics.csv").write_text("run output")
    (b / "LICENSE").write_text("license")
    shipped, left_out = bundle_files(b, ("LICENSE", "configs", "docs", "scripts"))
    assert shipped == ["LICENSE", "configs/train.json", "docs/README.md", "docs/same.md"]
    assert left_out == ["configs/.train.json.swp", "configs/__pycache__", "docs/.secrets"]

    (b / "docs" / "same.md").unlink()
    (b / "docs" / "same.md").symlink_to(".secrets/key.pem")
    with pytest.raises(ValueError, match="docs/same.md is a symlink to docs/.secrets/key.pem"):
        bundle_files(b, ("docs",))


def test_large_file_entries(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "model.pt").write_bytes(b"weights")
    [e] = large_file_entries(tmp_path, ["models/model.pt"], "https://example.org/rel/", asset_prefix="b_v1_")
    assert e == {"path": "models/model.pt", "url": "https://example.org/rel/b_v1_model.pt",
                 "hash_val": hashlib.sha256(b"weights").hexdigest(), "hash_type": "sha256"}


def _bundle_copy(tmp_path: Path, with_model: bool = True) -> Path:
    dest = tmp_path / SPLEEN.name
    shutil.copytree(SPLEEN, dest, ignore=shutil.ignore_patterns("models", "eval", "runs", "logs", "data",
                                                                "__pycache__"))
    (dest / "models").mkdir()
    if with_model:
        (dest / "models" / "model.pt").write_bytes(b"not checked before verification")
    return dest


def _package(bundle: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    """``python -m tools.package BUNDLE --out OUT …`` from the repository root, as the usage line says."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "tools.package", str(bundle), "--out", str(out), *extra], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=900)


def test_package_refuses_symlink_out_of_the_bundle(tmp_path: Path) -> None:
    """A link to a file of the packaging machine (here a fake private key) is refused with one line naming it; a
    dotfile beside it would only be left out, and nothing is written."""
    secret = tmp_path / "elsewhere" / "server.pem"
    secret.parent.mkdir()
    secret.write_text("-----BEGIN PRIVATE KEY-----")
    bundle = _bundle_copy(tmp_path)
    (bundle / "docs" / ".env").write_text("TOKEN=not shipped")
    (bundle / "docs" / "cert.pem").symlink_to(secret)
    dist = tmp_path / "dist"
    proc = _package(bundle, dist, "--verify_skip_export", "--verify_skip_schema")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"package: refusing to package spleen-fast-train: docs/cert.pem is a symlink to {secret}, outside the bundle"]
    assert not dist.exists() or list(dist.iterdir()) == []


def test_package_refuses_bundle_without_weights(tmp_path: Path) -> None:
    proc = _package(_bundle_copy(tmp_path, with_model=False), tmp_path / "dist")
    assert proc.returncode == 1
    assert "models/model.pt not found: train the bundle first" in proc.stderr
    assert not list((tmp_path / "dist").glob("*.zip"))


@pytest.mark.skipif(not SCHEMA.is_file(), reason=f"pinned metadata schema not found at {SCHEMA}")
def test_package_refuses_bundle_failing_verify(tmp_path: Path) -> None:
    bundle = _bundle_copy(tmp_path)
    meta_file = bundle / "configs" / "metadata.json"
    meta = json.loads(meta_file.read_text())
    meta["version"] = "9.9.9"  # not in the changelog
    meta_file.write_text(json.dumps(meta, indent=4))
    dist = tmp_path / "dist"
    proc = _package(bundle, dist, "--schema", str(SCHEMA), "--verify_skip_export")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "refusing to package spleen-fast-train" in proc.stderr
    assert "FAIL  version_in_changelog" in proc.stderr
    assert list(dist.iterdir()) == [], "nothing may be written for a refused bundle"


# ------------------------------------------------------------------------------- full packaging (slow: export, verify)
def _first_usage_line() -> str:
    """The first command of tools/package.py's documented usage."""
    doc = (REPO / "tools" / "package.py").read_text()
    return next(line.strip() for line in doc.splitlines() if line.strip().startswith("python -m tools.package"))


def _repo_like(root: Path, version: str | None = None) -> Path:
    """``root/repo/bundles/spleen-fast-train`` with random weights, and the pinned schema at ``root/shared/…``, laid
    out as the usage line expects (it runs from the repository root, the schema one folder up)."""
    import torch
    from monai.bundle import ConfigParser

    repo = root / "repo"
    bundle = _bundle_copy(repo / "bundles", with_model=False)
    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "inference.json"))
    torch.manual_seed(0)
    torch.save(parser.get_parsed_content("network_def").state_dict(), bundle / "models" / "model.pt")
    if version:
        meta_file = bundle / "configs" / "metadata.json"
        meta = json.loads(meta_file.read_text())
        meta["version"] = version
        meta["changelog"] = {version: "test release", **meta["changelog"]}
        meta_file.write_text(json.dumps(meta, indent=4) + "\n")
    (root / "shared" / "schemas").mkdir(parents=True)
    shutil.copy2(SCHEMA, root / "shared" / "schemas" / SCHEMA.name)
    return repo


@pytest.fixture(scope="module")
def local_release(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    """The first documented usage line, run as written (no --large_files_url, full verification) from a folder laid
    out like the repository."""
    if not SCHEMA.is_file():
        pytest.skip(f"pinned metadata schema not found at {SCHEMA}")
    repo = _repo_like(tmp_path_factory.mktemp("usage"))
    line = _first_usage_line()
    assert line == ("python -m tools.package bundles/spleen-fast-train --out dist "
                    "--schema ../shared/schemas/meta_schema_20240725.json")
    proc = subprocess.run([sys.executable, *shlex.split(line)[1:]], cwd=repo,
                          env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True, text=True, timeout=900)
    return repo, proc


@pytest.mark.slow
def test_first_usage_line_packages_for_local_use(local_release: tuple[Path, subprocess.CompletedProcess]) -> None:
    """Without --large_files_url the zip carries its weights, lists their sha256 with no url, and its own sha256 is
    printed and written beside it."""
    repo, proc = local_release
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    zip_path = repo / "dist" / f"spleen-fast-train_v{VERSION}.zip"
    assert sorted(p.name for p in zip_path.parent.iterdir()) == [zip_path.name, f"{zip_path.name}.sha256"]
    digest = hashlib.sha256(zip_path.read_bytes()).hexdigest()
    assert (zip_path.parent / f"{zip_path.name}.sha256").read_text() == f"{digest}  {zip_path.name}\n"
    assert f"sha256 {digest}" in proc.stdout
    with zipfile.ZipFile(zip_path) as zf:
        large = yaml.safe_load(zf.read("spleen-fast-train/large_files.yml"))["large_files"]
        for e in large:
            member = zf.read(f"spleen-fast-train/{e['path']}")
            assert e["url"] == "" and e["hash_val"] == hashlib.sha256(member).hexdigest()
    assert [e["path"] for e in large] == ["models/model.pt", "models/model.ts"]


@pytest.mark.slow
def test_two_releases_in_one_process_each_run_their_own_code(
        local_release: tuple[Path, subprocess.CompletedProcess], tmp_path: Path) -> None:
    """Release A (this repository's version and bundlezoo) and release B (99.0.0, packaged from a checkout whose
    ``image_datalist`` keeps only the first input) run inference one after the other in ONE Python process, each
    through its own ``ConfigWorkflow``: A labels both inputs, B one, and each vendored package is loaded from its own
    bundle. With a shared vendored name, B would run A's already-imported code and label both."""
    from tools.download import download_bundle

    repo_a, proc = local_release
    assert proc.returncode == 0, proc.stderr[-3000:]
    checkout_b = tmp_path / "b"
    repo_b = _repo_like(checkout_b, version="99.0.0")
    for pkg in ("bundlezoo", "tools"):
        shutil.copytree(REPO / pkg, repo_b / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    inputs_py = repo_b / "bundlezoo" / "data" / "inputs.py"
    code = inputs_py.read_text()
    assert "        return [{\"image\": str(p.resolve())} for p in niftis]\n" in code
    inputs_py.write_text(code.replace("        return [{\"image\": str(p.resolve())} for p in niftis]\n",
                                      "        return [{\"image\": str(niftis[0].resolve())}]\n"))
    proc_b = subprocess.run([sys.executable, "-m", "tools.package", "bundles/spleen-fast-train", "--out", "dist",
                             "--schema", "../shared/schemas/meta_schema_20240725.json", "--verify_skip_export"],
                            cwd=repo_b, env=dict(os.environ, PYTHONPATH=str(repo_b)), capture_output=True, text=True,
                            timeout=900)
    assert proc_b.returncode == 0, proc_b.stdout[-3000:] + proc_b.stderr[-3000:]

    user = tmp_path / "user"
    roots = {}
    for tag, zip_path in (("a", repo_a / "dist" / f"spleen-fast-train_v{VERSION}.zip"),
                          ("b", repo_b / "dist" / "spleen-fast-train_v99.0.0.zip")):
        digest = zip_path.with_name(f"{zip_path.name}.sha256").read_text().split()[0]
        roots[tag] = str(download_bundle(zip_path.as_uri(), digest, "spleen-fast-train", str(user / tag)))
    cts = user / "cts"
    cts.mkdir()
    rng = np.random.default_rng(0)
    for name in ("case_a.nii.gz", "case_b.nii.gz"):
        nib.save(nib.Nifti1Image(rng.normal(0, 100, (40, 40, 40)).astype(np.float32), np.diag([2.0, 2.0, 2.0, 1.0])),
                 cts / name)
    script = f"""
import json, sys
from monai.bundle import ConfigWorkflow
for tag, root in {sorted(roots.items())!r}:
    wf = ConfigWorkflow(config_file=root + "/configs/inference.json", meta_file=root + "/configs/metadata.json",
                        workflow_type="infer", bundle_root=root, dataset_dir={str(cts)!r},
                        output_dir={str(user)!r} + "/labels_" + tag, pixdim=[4.0, 4.0, 4.0], roi_size=[64, 64, 64],
                        sw_batch_size=1, num_threads=1)
    wf.initialize()
    wf.run()
    wf.finalize()
top = [m for n, m in sys.modules.items() if n.startswith("bundlezoo") and "." not in n]
print(json.dumps({{m.__name__: m.__file__ for m in top}}))
"""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="2", PYTHONDONTWRITEBYTECODE="1")
    run = subprocess.run([sys.executable, "-c", script], cwd=user, env=env, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    # failures.json: every batch-inference run lists the inputs it could not segment (none here)
    assert sorted(p.name for p in (user / "labels_a").iterdir()) == ["case_a_seg.nii.gz", "case_b_seg.nii.gz",
                                                                      "failures.json"]
    assert sorted(p.name for p in (user / "labels_b").iterdir()) == ["case_a_seg.nii.gz", "failures.json"]
    assert all(json.loads((user / f"labels_{t}" / "failures.json").read_text()) == [] for t in "ab")
    loaded = json.loads(run.stdout.strip().splitlines()[-1])
    assert loaded == {
        PKG_A: f"{roots['a']}/{PKG_A}/__init__.py",
        "bundlezoo_spleen_fast_train_99_0_0": f"{roots['b']}/bundlezoo_spleen_fast_train_99_0_0/__init__.py",
    }
