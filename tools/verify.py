"""Verify MONAI bundles of this collection: files, metadata, workflows, consistency, exports, large files.

Usage::

    python -m tools.verify bundles/spleen-fast-train --schema ../shared/schemas/meta_schema_20240725.json
    python -m tools.verify --all --schema ../shared/schemas/meta_schema_20240725.json
    python -m tools.verify --all --skip_export          # no TorchScript/ONNX exports (the slow part)
    python -m tools.verify BUNDLE --checks "[required_files,large_files]"
    python -m tools.verify /tmp/stage/my-bundle --schema https://.../meta_schema_20240725.json   # download it

A bundle is any folder with ``configs/metadata.json`` (a checkout's ``bundles/<name>``, a staged or unzipped
release); ``--all`` verifies every bundle in the ``bundles/`` folder of the working folder or its nearest parent
that has one (``--bundles_root`` names another). What applies to each bundle is what its metadata.json declares
(``verify``, see ``tools/verify_checks/declaration.py``). The metadata schema comes from ``--schema``: a local copy
(offline) or, only when given a URL, a download; md5-checked either way. Every check prints one line
``PASS|FAIL|SKIP name message``; the exit status is 1 when any check fails, 2 on a usage error.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import fire

from tools.verify_checks import CHECKS, FAIL, CheckResult, default_bundles_root, find_bundles, verify_bundle


def main(
    *bundle_dirs: str,
    all: bool = False,  # noqa: A002 - the flag is `--all`, as the issue names it
    bundles_root: str | None = None,
    schema: str | None = None,
    skip_export: bool = False,
    checks: str | list[str] | tuple[str, ...] | None = None,
    device: str = "cpu",
) -> None:
    """Run the bundle checks and exit non-zero when any fails.

    Args:
        bundle_dirs: bundle folders to verify.
        all: also verify every folder of ``bundles_root`` that has ``configs/metadata.json``.
        bundles_root: the folder ``--all`` reads (default: ``bundles/`` in the working folder or its nearest
            parent that has one).
        schema: local copy of MONAI's metadata schema, or a URL to download it from (md5-checked against the
            pinned hash either way).
        skip_export: skip the TorchScript and ONNX export checks.
        checks: only these checks (comma-separated names or a list); default all of
            required_files, metadata_schema, version_in_changelog, workflow_properties, consistency, net_in_out,
            torchscript_export, onnx_export, large_files.
        device: device for the network forward pass of net_in_out.
    """
    targets = [Path(b) for b in bundle_dirs]
    if all:
        root = Path(bundles_root) if bundles_root else default_bundles_root()
        if root is None:
            print("verify: --all found no bundles/ folder here or above; give --bundles_root", file=sys.stderr)
            sys.exit(2)
        targets += [b for b in find_bundles(root) if b not in targets]
    if not targets:
        print("verify: give BUNDLE_DIR ... or --all (no bundles found)", file=sys.stderr)
        sys.exit(2)
    if isinstance(checks, str):
        checks = [c.strip() for c in checks.split(",") if c.strip()]
    unknown = [c for c in checks or [] if c not in CHECKS]
    if unknown:
        print(f"verify: unknown checks {unknown}; known: {', '.join(CHECKS)}", file=sys.stderr)
        sys.exit(2)
    failed: list[str] = []
    for bundle in targets:
        start = time.perf_counter()
        print(f"== {bundle}", flush=True)
        if not bundle.is_dir():
            results = [CheckResult("bundle_dir", FAIL, f"{bundle} is not a folder")]
            print(results[0].line(), flush=True)
        else:
            results = verify_bundle(
                bundle,
                schema=schema,
                skip_export=skip_export,
                checks=list(checks) if checks else None,
                device=device,
                on_result=lambda r: print(r.line(), flush=True),
            )
        bad = [r.name for r in results if r.status == FAIL]
        verdict = f"FAILED ({', '.join(bad)})" if bad else "OK"
        print(f"== {bundle}: {verdict} in {time.perf_counter() - start:.1f} s", flush=True)
        if bad:
            failed.append(str(bundle))
    if failed:
        print(f"verify: {len(failed)} of {len(targets)} bundles failed: {', '.join(failed)}", flush=True)
        sys.exit(1)
    print(f"verify: all {len(targets)} bundles passed", flush=True)


def cli() -> None:
    """Console entry point (``bundlezoo-verify``)."""
    fire.Fire(main)


if __name__ == "__main__":
    cli()
