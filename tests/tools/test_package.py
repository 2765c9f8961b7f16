"""tools/package.py and tools/vendoring.py: vendoring closure, zips, hashes, and the refusals.

The full packaging of a trained spleen-fast-train (and everything done with the zip) is exercised in
tests/bundles/test_spleen_reuse.py; here are the parts that need no training.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tools.vendoring import (
    common_closure,
    config_common_names,
    large_file_entries,
    vendor_common,
    write_zip,
)

REPO = Path(__file__).resolve().parents[2]
SPLEEN = REPO / "bundles" / "spleen-fast-train"
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
    """The vendored closure of the spleen configs imports in a fresh interpreter with only that copy on the path."""
    names = config_common_names(sorted((SPLEEN / "configs").glob("*.json")))
    vendor_common(names, tmp_path)
    modules = sorted({n.rsplit(".", 1)[0] for n in names})
    code = ("import sys; sys.path[:] = [p for p in sys.path if p not in ('', %r)]; sys.path.insert(0, %r); "
            "import importlib; [importlib.import_module(m) for m in %r]; import bundlezoo; print(bundlezoo.__file__)"
            % (str(REPO), str(tmp_path), modules))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    # -S: no site-packages processing of the editable finder; MONAI etc. come back through the explicit path
    site = [p for p in sys.path if p.endswith("site-packages")]
    proc = subprocess.run([sys.executable, "-S", "-c", f"import sys; sys.path.extend({site!r}); {code}"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == str(tmp_path / "bundlezoo" / "__init__.py")


def test_vendor_rejects_unknown_names(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="bundlezoo.nosuchmodule"):
        vendor_common({"bundlezoo.nosuchmodule.Thing"}, tmp_path)


def test_zip_is_deterministic_and_atomic(tmp_path: Path) -> None:
    src = tmp_path / "b"
    (src / "configs").mkdir(parents=True)
    (src / "configs" / "x.json").write_text("{}")
    (src / "LICENSE").write_text("license")
    a = write_zip(src, tmp_path / "out" / "a.zip", arc_root="b")
    os.utime(src / "LICENSE", (1, 1))  # file times must not leak into the zip
    b = write_zip(src, tmp_path / "out" / "b.zip", arc_root="b")
    assert a.read_bytes() == b.read_bytes()
    assert zipfile.ZipFile(a).namelist() == ["b/LICENSE", "b/configs/x.json"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.zip", "b.zip"]  # no partial files


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
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    # -m from REPO: this checkout's tools, not those of whichever checkout is installed (editable)
    return subprocess.run([sys.executable, "-m", "tools.package", str(bundle), "--out", str(out), *extra], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=900)


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
