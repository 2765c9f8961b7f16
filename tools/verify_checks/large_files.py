"""Check ``large_files``: every entry of ``large_files.yml`` is well formed and the file on disk, when present, has
the listed sha256 (re-hashed on every run: a tampered or corrupted ``models/model.pt`` fails, named)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from tools.verify_checks.base import BundleContext, CheckFailed, one_line, summarise


def read_large_files(bundle_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """Entries of a bundle's ``large_files.yml`` (model-zoo format ``large_files: [{path, url, hash_val,
    hash_type}]``). An empty file or an empty list gives ``[]``.

    Args:
        bundle_dir: the bundle folder.

    Raises:
        ValueError: the file is not in that format.
    """
    import yaml

    data = yaml.safe_load((Path(bundle_dir) / "large_files.yml").read_text())
    if data is None:
        return []
    if not isinstance(data, dict) or "large_files" not in data:
        raise ValueError("large_files.yml must be a mapping with a 'large_files' list")
    entries = data["large_files"] or []
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ValueError("'large_files' must be a list of mappings {path, url, hash_val, hash_type}")
    return entries


def check_large_files(ctx: BundleContext) -> str:
    """Every entry has a path inside the bundle and a sha256 (``hash_type: sha256``, 64 hex ``hash_val``); a file
    present at that path has that sha256; an absent one has a ``url`` to fetch it from (a file shipped in the
    bundle, e.g. in a local release zip, needs none)."""
    from tools.vendoring import sha256_file

    path = ctx.bundle_dir / "large_files.yml"
    if not path.is_file():
        raise CheckFailed("missing large_files.yml")
    try:
        entries = read_large_files(ctx.bundle_dir)
    except Exception as e:
        raise CheckFailed(f"{path.name}: {one_line(str(e), 160)}") from e
    problems: list[str] = []
    present = 0
    root = ctx.bundle_dir.resolve()
    for i, e in enumerate(entries):
        rel = e.get("path")
        label = f"entry {i} ({rel})" if rel else f"entry {i}"
        if not isinstance(rel, str) or not rel:
            problems.append(f"{label}: no path")
            continue
        target = (ctx.bundle_dir / rel).resolve()
        if Path(rel).is_absolute() or root not in target.parents:
            problems.append(f"{label}: path must stay inside the bundle")
            continue
        hash_type, hash_val = str(e.get("hash_type", "")).lower(), str(e.get("hash_val", "") or "").lower()
        if hash_type != "sha256":
            problems.append(f"{label}: hash_type is '{e.get('hash_type', '')}', expected sha256")
            continue
        if not re.fullmatch(r"[0-9a-f]{64}", hash_val):
            problems.append(f"{label}: hash_val is not a 64-hex sha256")
            continue
        if target.is_file():
            present += 1
            actual = sha256_file(target)
            if actual != hash_val:
                problems.append(f"{rel}: sha256 mismatch (file {actual[:12]}..., listed {hash_val[:12]}...)")
        elif not e.get("url"):
            problems.append(f"{label}: not present and no url to fetch it from")
    if problems:
        raise CheckFailed("large_files.yml: " + summarise(problems))
    return f"{len(entries)} entries with sha256, {present} present and matching"
