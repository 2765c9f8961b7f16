"""Package a trained bundle as a release zip that runs without this repository.

Usage (from the repository root)::

    python -m tools.package bundles/spleen-fast-train --out dist --schema ../shared/schemas/meta_schema_20240725.json
    python -m tools.package BUNDLE --out dist --schema SCHEMA \
        --large_files_url https://github.com/<owner>/<repo>/releases/download/<tag>

builds ``dist/<name>_v<version>.zip`` (``name`` = the bundle's folder name, ``version`` = metadata ``version``),
holding one top folder ``<name>/`` — the layout ``python -m monai.bundle download --name <name> --url …`` and
``--source github`` expect — and ``dist/<name>_v<version>.zip.sha256`` (``sha256sum`` format; the digest is printed
too: publish it with the release, ``python -m tools.download`` checks it before extracting anything).

The zip holds an explicit list of files (:func:`tools.vendoring.bundle_files`), never a copied folder tree:

- ``LICENSE``, ``configs/``, ``docs/``, ``scripts/`` (if any) and ``models/model.pt`` of the bundle; hidden files,
  ``__pycache__`` and run outputs (``eval/``, ``runs/``, ``logs/``, ``mlruns/``, ``data/``) never ship, and a symlink
  that leaves the bundle is refused;
- ``models/model.ts``: exported here from ``model.pt`` with ``python -m monai.bundle ckpt_export`` (a stale or
  missing ``model.ts`` is never shipped);
- ``bundlezoo_<name>_<version>/``: the modules of this repository's ``bundlezoo`` that the configs name, plus
  everything they import from it (see :func:`tools.vendoring.common_closure`), under a name of this release's own;
  the zipped configs name that package instead of ``bundlezoo``, so two released bundles loaded in one process (MONAI
  Label, a user script) each run their own copy. MONAI puts the bundle root on ``sys.path`` when it runs a config
  (``ConfigWorkflow.run``) and so does MONAI Label;
- ``large_files.yml`` listing ``models/model.pt`` and ``models/model.ts`` with their sha256. Without
  ``--large_files_url`` (a zip for local use: the files are inside it) each ``url`` is empty, and
  ``python -m monai.bundle download_large_files`` then re-checks the files in place. With ``--large_files_url`` each
  entry gets the URL it will have as a release asset, and the assets ``<name>_v<version>_<file>`` are written next to
  the zip, ready to upload.

The staged bundle (exactly what is zipped) must pass ``python -m tools.verify``, otherwise nothing is written and the
exit status is 1. Outputs are written under temporary names and renamed when complete.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import fire

from tools.verify_checks import CHECKS
from tools.vendoring import (
    bundle_files,
    config_common_names,
    large_file_entries,
    rename_in_configs,
    vendor_common,
    vendored_package_name,
    write_large_files_yml,
    write_sha256_file,
    write_zip,
)

REPO_ROOT = Path(__file__).resolve().parents[1]

# What a release carries from the bundle folder; run outputs (eval/, runs/, logs/, mlruns/, data/) never ship.
SHIPPED = ("LICENSE", "configs", "docs", "scripts", "models/model.pt")
MODEL_FILES = ("models/model.pt", "models/model.ts")
LARGE_FILES_HEADER = (
    "# Written by tools/package.py. Fetch (or re-check) the weights with\n"
    "#   python -m monai.bundle download_large_files --bundle_path <this folder>\n"
    "# which refuses a file whose sha256 differs from hash_val.\n"
)
LOCAL_LARGE_FILES_HEADER = (
    "# Written by tools/package.py for local use: the files are inside the zip, so there is no url.\n"
    "# Re-check them with\n"
    "#   python -m monai.bundle download_large_files --bundle_path <this folder>\n"
    "# which refuses a file whose sha256 differs from hash_val.\n"
)


class PackagingError(RuntimeError):
    """The bundle cannot be packaged (missing weights, failed verification, failed export)."""


def _run(args: list[str], cwd: Path, what: str, timeout: int = 1800) -> str:
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise PackagingError(f"{what} failed (exit {proc.returncode}):\n{out[-4000:]}")
    return out


def export_torchscript(stage: Path) -> Path:
    """Export ``models/model.ts`` from ``models/model.pt`` of the staged bundle with MONAI's ``ckpt_export``.

    Runs with the staged bundle as the working folder, i.e. on the vendored ``bundlezoo`` a user would have.
    """
    target = stage / "models" / "model.ts"
    _run(
        [sys.executable, "-m", "monai.bundle", "ckpt_export", "network_def",
         "--filepath", str(target), "--ckpt_file", str(stage / "models" / "model.pt"),
         "--meta_file", str(stage / "configs" / "metadata.json"),
         "--config_file", str(stage / "configs" / "inference.json"), "--bundle_root", str(stage)],
        cwd=stage, what="TorchScript export (monai.bundle ckpt_export)",
    )
    if not target.is_file():
        raise PackagingError(f"ckpt_export reported success but wrote no {target}")
    return target


def verify(stage: Path, schema: str | None, skip_export: bool, skip_schema: bool = False) -> str:
    """Run ``python -m tools.verify`` on the staged bundle; raise :class:`PackagingError` when any check fails.

    Args:
        stage: the staged bundle.
        schema: local copy of MONAI's metadata schema.
        skip_export: skip the TorchScript/ONNX round trips.
        skip_schema: skip the metadata-schema check.
    """
    args = [sys.executable, "-m", "tools.verify", str(stage)]
    if schema:
        args += ["--schema", str(Path(schema).resolve())]
    if skip_export:
        args += ["--skip_export"]
    if skip_schema:
        args += ["--checks", ",".join(name for name in CHECKS if name != "metadata_schema")]
    try:
        return _run(args, cwd=REPO_ROOT, what=f"python -m tools.verify on the staged {stage.name}")
    except PackagingError as e:
        raise PackagingError(f"refusing to package {stage.name}: {e}") from None


def package(
    bundle_dir: str,
    out: str = "dist",
    schema: str | None = None,
    large_files_url: str | None = None,
    verify_skip_export: bool = False,
    verify_skip_schema: bool = False,
) -> str:
    """Build ``<out>/<name>_v<version>.zip`` and its ``.sha256`` from a trained bundle; print and return the zip's
    path.

    Args:
        bundle_dir: the bundle folder (``configs/metadata.json`` and a trained ``models/model.pt`` inside).
        out: output folder.
        schema: local copy of MONAI's metadata schema for the verifier (offline use; CI passes the pinned copy).
        large_files_url: URL prefix of the release assets
            (e.g. ``https://github.com/<owner>/<repo>/releases/download/<tag>``); recorded in ``large_files.yml``,
            and the assets are written next to the zip. Leave it out for a zip for local use (the large files are
            inside the zip; ``large_files.yml`` then lists them with their sha256 and no url).
        verify_skip_export: let the verifier skip its TorchScript/ONNX round trips (quick local iterations only;
            the release zip still ships a freshly exported ``model.ts``).
        verify_skip_schema: let the verifier skip only the metadata-schema check (offline, with no pinned copy of the
            schema at hand; quick local iterations and tests only — release with ``schema``).
    """
    src = Path(bundle_dir).resolve()
    meta_file = src / "configs" / "metadata.json"
    if not meta_file.is_file():
        raise PackagingError(f"{src} has no configs/metadata.json: not a bundle folder")
    version = json.loads(meta_file.read_text()).get("version")
    if not version:
        raise PackagingError(f"{meta_file} has no 'version'")
    if not os.path.lexists(src / "models" / "model.pt"):
        raise PackagingError(f"{src}/models/model.pt not found: train the bundle first (see its docs/README.md)")
    name = src.name
    release = f"{name}_v{version}"
    try:
        shipped, left_out = bundle_files(src, SHIPPED)
    except ValueError as e:
        raise PackagingError(f"refusing to package {name}: {e}") from None
    out_dir = Path(out).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    package_name = vendored_package_name(name, version)
    header = LARGE_FILES_HEADER if large_files_url else LOCAL_LARGE_FILES_HEADER

    with tempfile.TemporaryDirectory(prefix=f".{release}.stage-", dir=out_dir) as tmp:
        stage = Path(tmp) / name
        for rel in shipped:
            (stage / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src / rel, stage / rel)

        configs = sorted((stage / "configs").glob("*.json"))
        vendored = vendor_common(config_common_names(configs), stage, package=package_name)
        rename_in_configs(configs, package_name)
        # Verify before the (slow) export so a failing bundle is refused early; the verifier's large_files check
        # then covers model.pt, and model.ts is hashed right after it is written.
        entries = large_file_entries(stage, MODEL_FILES[:1], large_files_url, asset_prefix=f"{release}_")
        write_large_files_yml(stage / "large_files.yml", entries, header=header)
        verify(stage, schema, verify_skip_export, verify_skip_schema)
        export_torchscript(stage)
        entries = large_file_entries(stage, MODEL_FILES, large_files_url, asset_prefix=f"{release}_")
        write_large_files_yml(stage / "large_files.yml", entries, header=header)

        files = {*shipped, *(v.as_posix() for v in vendored), *MODEL_FILES, "large_files.yml"}
        zip_path = write_zip(stage, out_dir / f"{release}.zip", arc_root=name, files=files)
        digest, sha_file = write_sha256_file(zip_path)
        if large_files_url:
            for e in entries:
                asset = out_dir / f"{release}_{Path(e['path']).name}"
                part = asset.with_name(f".{asset.name}.partial")
                shutil.copy2(stage / e["path"], part)
                os.replace(part, asset)

    print(f"packaged {zip_path} ({zip_path.stat().st_size / 1e6:.1f} MB)")
    print(f"  sha256 {digest} (written to {sha_file.name}; publish it with the release)")
    print(f"  vendored {len(vendored)} files of bundlezoo/ as {package_name}/: "
          f"{', '.join(v.relative_to(package_name).as_posix() for v in vendored)}")
    if left_out:
        print(f"  left out (hidden or cache): {', '.join(left_out)}")
    for e in entries:
        print(f"  {e['path']}: sha256 {e['hash_val']}" + (f" <- {e['url']}" if e["url"] else " (inside the zip)"))
    return str(zip_path)


def main() -> None:
    """Console entry point: package with fire's command line; a refusal is one line and exit status 1."""
    try:
        fire.Fire(package)  # prints the zip's path last
    except (PackagingError, ValueError) as err:
        print(f"package: {err}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
