"""Check ``required_files``: the model-zoo layout, plus every config the bundle's declaration names."""

from __future__ import annotations

from tools.verify_checks.base import BundleContext, CheckFailed

#: Files every bundle ships whatever its kind (model-zoo layout); configs beyond these come from the declaration.
ALWAYS_REQUIRED: tuple[str, ...] = (
    "LICENSE",
    "configs/metadata.json",
    "configs/logging.conf",
    "docs/README.md",
    "docs/data_license.txt",
    "large_files.yml",
)


def check_required_files(ctx: BundleContext) -> str:
    """Every file of :data:`ALWAYS_REQUIRED` and every config the declaration requires is a file."""
    configs = [f"configs/{c}" for c in sorted(ctx.declaration.required_configs)]
    missing_base = [f for f in ALWAYS_REQUIRED if not (ctx.bundle_dir / f).is_file()]
    missing_configs = [f for f in configs if not (ctx.bundle_dir / f).is_file()]
    if missing_base or missing_configs:
        parts = []
        if missing_base:
            parts.append("missing " + ", ".join(missing_base))
        if missing_configs:
            parts.append(f"missing {', '.join(missing_configs)} ({ctx.declaration.source})")
        raise CheckFailed("; ".join(parts))
    return f"all {len(ALWAYS_REQUIRED) + len(configs)} present ({', '.join(c.split('/')[1] for c in configs)})"
