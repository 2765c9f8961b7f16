"""Verify MONAI bundles of this collection: files, metadata, config consistency and exports.

Usage::

    python tools/verify.py bundles/spleen-fast-train --schema ../shared/schemas/meta_schema_20240725.json
    python tools/verify.py --all --schema ../shared/schemas/meta_schema_20240725.json
    python tools/verify.py --all --skip_export          # no TorchScript/ONNX exports (the slow part)
    python tools/verify.py BUNDLE --checks "[required_files,large_files]"

Without ``--schema`` the metadata schema is downloaded from the metadata's ``schema`` URL (md5-checked); offline,
that check fails and says to pass ``--schema``. Every check prints one line ``PASS|FAIL|SKIP name message``;
the exit status is 1 when any check fails, 2 on a usage error. The checks live in ``tools/verifier.py``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import fire


from tools.verifier import CHECKS, FAIL, REPO_ROOT, CheckResult, find_bundles, verify_bundle


def main(
    *bundle_dirs: str,
    all: bool = False,  # noqa: A002 - the flag is `--all`, as the issue names it
    schema: str | None = None,
    skip_export: bool = False,
    checks: str | list[str] | tuple[str, ...] | None = None,
    device: str = "cpu",
) -> None:
    """Run the bundle checks and exit non-zero when any fails.

    Args:
        bundle_dirs: bundle folders to verify.
        all: verify every folder under ``bundles/`` that has ``configs/metadata.json``.
        schema: local copy of MONAI's metadata schema (md5-checked against the pinned hash).
        skip_export: skip the TorchScript and ONNX export checks.
        checks: only these checks (comma-separated names or a list); default all of
            required_files, metadata_schema, version_in_changelog, workflow_properties_train,
            workflow_properties_infer, network_consistency, preprocessing_consistency, net_in_out,
            torchscript_export, onnx_export, large_files.
        device: device for the network forward pass of net_in_out.
    """
    targets = [Path(b) for b in bundle_dirs]
    if all:
        targets += [b for b in find_bundles(REPO_ROOT / "bundles") if b not in targets]
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
