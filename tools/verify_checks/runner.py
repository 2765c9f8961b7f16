"""Run the checks on a bundle: read its declaration, run each check that applies, collect one line per check."""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from tools.verify_checks.base import (
    FAIL,
    PASS,
    SKIP,
    BundleContext,
    CheckFailed,
    CheckResult,
    CheckSkipped,
    one_line,
)
from tools.verify_checks.consistency import check_consistency
from tools.verify_checks.declaration import DECLARATION_KEY, Declaration, DeclarationError, parse_declaration
from tools.verify_checks.export import check_onnx_export, check_torchscript_export, stop_background
from tools.verify_checks.files import check_required_files
from tools.verify_checks.large_files import check_large_files
from tools.verify_checks.network import check_net_in_out
from tools.verify_checks.schema import check_metadata_schema, check_version_in_changelog
from tools.verify_checks.workflow import check_workflow_properties

#: Check name -> function, in the order they run.
CHECKS: dict[str, Callable[[BundleContext], str]] = {
    "required_files": check_required_files,
    "metadata_schema": check_metadata_schema,
    "version_in_changelog": check_version_in_changelog,
    "workflow_properties": check_workflow_properties,
    "consistency": check_consistency,
    "net_in_out": check_net_in_out,
    "torchscript_export": check_torchscript_export,
    "onnx_export": check_onnx_export,
    "large_files": check_large_files,
}
#: The slow checks ``skip_export`` drops.
EXPORT_CHECKS: frozenset[str] = frozenset({"torchscript_export", "onnx_export"})
#: Name of the result reported when the declaration itself cannot be read (then no check runs).
DECLARATION_CHECK = "declaration"


def run_check(name: str, ctx: BundleContext) -> CheckResult:
    """Run one check by name and turn its outcome (message or exception) into a :class:`CheckResult`.

    Args:
        name: a key of :data:`CHECKS`.
        ctx: the bundle's context.
    """
    start = time.perf_counter()
    if ctx.declaration.checks is not None and name not in ctx.declaration.checks:
        return CheckResult(name, SKIP, f"not declared for this bundle (metadata.json {DECLARATION_KEY}#checks)")
    # MONAI and the bundle's logging.conf log every step at INFO/WARNING; the result line says what matters
    previous_disable = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            status, message = PASS, CHECKS[name](ctx)
    except CheckFailed as e:
        status, message = FAIL, str(e)
    except CheckSkipped as e:
        status, message = SKIP, str(e)
    except Exception as e:  # a crash inside MONAI or the bundle's code is a failure of this check only
        status, message = FAIL, f"{type(e).__name__}: {one_line(str(e).splitlines()[0] if str(e) else '', 240)}"
    finally:
        logging.disable(previous_disable)
    return CheckResult(name, status, one_line(message, 400), time.perf_counter() - start)


def _read_declaration(bundle_dir: Path) -> Declaration:
    """The bundle's declaration; :class:`DeclarationError` (one line) when metadata.json or it is unusable."""
    meta_file = bundle_dir / "configs" / "metadata.json"
    if not meta_file.is_file():
        raise DeclarationError("missing configs/metadata.json")
    try:
        meta = json.loads(meta_file.read_text())
    except json.JSONDecodeError as e:
        raise DeclarationError(f"metadata.json is not valid JSON: {e}") from e
    if not isinstance(meta, dict):
        raise DeclarationError("metadata.json must hold a JSON object")
    return parse_declaration(meta, list(CHECKS))


def verify_bundle(
    bundle_dir: str | os.PathLike,
    schema: str | os.PathLike | None = None,
    skip_export: bool = False,
    checks: Sequence[str] | None = None,
    device: str = "cpu",
    on_result: Callable[[CheckResult], None] | None = None,
) -> list[CheckResult]:
    """Run the checks on one bundle, in a private temporary folder; the bundle is never written to.

    Args:
        bundle_dir: the bundle folder (holding ``configs/metadata.json``), anywhere on disk.
        schema: local copy of the metadata schema, or a URL to download it from (md5-checked either way).
        skip_export: drop the TorchScript and ONNX export checks (the slow ones).
        checks: names from :data:`CHECKS` to run (default: all).
        device: device for the network forward pass of ``net_in_out``.
        on_result: called with each result as soon as it is known (for streaming output).

    Returns:
        One :class:`CheckResult` per check run, in :data:`CHECKS` order; a single ``declaration`` FAIL when the
        bundle's declaration cannot be read (then nothing else is known to apply).
    """
    names = list(CHECKS) if checks is None else list(checks)
    unknown = [n for n in names if n not in CHECKS]
    if unknown:
        raise ValueError(f"unknown checks {unknown}; known: {', '.join(CHECKS)}")
    names = [n for n in CHECKS if n in names and not (skip_export and n in EXPORT_CHECKS)]
    bundle = Path(bundle_dir).resolve()
    try:
        declaration = _read_declaration(bundle)
    except DeclarationError as e:
        result = CheckResult(DECLARATION_CHECK, FAIL, str(e))
        if on_result is not None:
            on_result(result)
        return [result]
    if schema is not None and "://" not in str(schema):
        schema = str(Path(schema).resolve())
    results: list[CheckResult] = []
    with tempfile.TemporaryDirectory(prefix="verify_bundle_") as tmp:
        ctx = BundleContext(
            bundle_dir=bundle,
            workdir=Path(tmp),
            declaration=declaration,
            schema=str(schema) if schema is not None else None,
            device=device,
            planned=frozenset(names),
        )
        try:
            for name in names:
                result = run_check(name, ctx)
                results.append(result)
                if on_result is not None:
                    on_result(result)
        finally:
            stop_background(ctx)
    return results


def find_bundles(bundles_root: str | os.PathLike) -> list[Path]:
    """Bundle folders under ``bundles_root``: every direct subfolder holding ``configs/metadata.json``.

    Args:
        bundles_root: a folder of bundles (e.g. a checkout's ``bundles/``).
    """
    root = Path(bundles_root)
    return sorted(p for p in root.iterdir() if (p / "configs" / "metadata.json").is_file()) if root.is_dir() else []


def default_bundles_root(start: str | os.PathLike | None = None) -> Path | None:
    """The ``bundles/`` folder of the checkout the command runs in: in ``start`` (default: the working folder)
    or its nearest parent that has one, as git finds ``.git``; ``None`` when there is none.

    Args:
        start: folder to search from.
    """
    here = Path(start or os.getcwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "bundles").is_dir():
            return folder / "bundles"
    return None
