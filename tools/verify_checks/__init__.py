"""The bundle verifier: checks that a MONAI bundle of this collection is complete, consistent and exportable, on
the terms its ``metadata.json`` declares (see :mod:`tools.verify_checks.declaration`).

One module per concern: :mod:`.files`, :mod:`.schema`, :mod:`.workflow`, :mod:`.consistency`, :mod:`.network`,
:mod:`.export`, :mod:`.large_files`; :mod:`.runner` runs them. ``tools/verify.py`` is the command line. Heavy
imports (torch, MONAI, onnxruntime) happen inside the checks that need them.
"""

from tools.verify_checks.base import FAIL, PASS, SKIP, CheckResult
from tools.verify_checks.declaration import DECLARATION_KEY, DEFAULTS, Declaration, parse_declaration
from tools.verify_checks.runner import (
    CHECKS,
    DECLARATION_CHECK,
    EXPORT_CHECKS,
    default_bundles_root,
    find_bundles,
    verify_bundle,
)

__all__ = [
    "CHECKS",
    "DECLARATION_CHECK",
    "DECLARATION_KEY",
    "DEFAULTS",
    "EXPORT_CHECKS",
    "FAIL",
    "PASS",
    "SKIP",
    "CheckResult",
    "Declaration",
    "default_bundles_root",
    "find_bundles",
    "parse_declaration",
    "verify_bundle",
]
