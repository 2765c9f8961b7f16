"""Shipping bundles: find the `bundlezoo` code a bundle's configs use, vendor it, write release zips, check weights.

A released bundle must run where this repository is absent. Its configs name shared code only as
``bundlezoo.<module>.<attr>`` strings (``_target_`` components, writer class paths, ``$`` expressions); MONAI's
``ConfigWorkflow.run()`` and MONAI Label both put the bundle root on ``sys.path``, so a ``bundlezoo/`` folder at the
bundle root serves those names. :func:`common_closure` finds the modules the configs name plus everything they import
from ``bundlezoo`` (also imports deferred inside functions), so the vendored copy is complete but carries no unrelated
code (no verifier, no tools).

This module is used by ``tools/package.py`` and the tests; bundles never import it.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import shutil
import tempfile
import urllib.parse
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from bundlezoo.data.io import atomic_write_bytes

__all__ = [
    "COMMON_ROOT",
    "common_closure",
    "config_common_names",
    "large_file_entries",
    "sha256_file",
    "vendor_common",
    "write_large_files_yml",
    "write_zip",
]

COMMON_ROOT = Path(__file__).resolve().parents[1] / "bundlezoo"
_PKG = COMMON_ROOT.name  # "bundlezoo"


# ------------------------------------------------------------------------------------------------------ hashing
def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """sha256 hex digest of a file, read in chunks (weights may be GBs)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


# --------------------------------------------------------------------------------------------- import closure
def _strings(obj: Any) -> Iterator[str]:
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _strings(k)
            yield from _strings(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _strings(v)


def config_common_names(config_files: Iterable[str | os.PathLike]) -> set[str]:
    """Dotted names starting with ``bundlezoo.`` that appear anywhere in the given JSON configs.

    Every string value counts (``_target_``, ``"writer": "bundlezoo.transforms.X"``, ``"$bundlezoo.data.f(...)"``,
    ``"$import bundlezoo.x"``), because MONAI resolves all of them by import at run time.
    """
    import re

    pattern = re.compile(rf"(?<![\w.]){_PKG}(?:\.[A-Za-z_]\w*)+")
    names: set[str] = set()
    for cfg in config_files:
        data = json.loads(Path(cfg).read_text())
        for s in _strings(data):
            names.update(pattern.findall(s))
    return names


def _module_file(dotted: str, root: Path) -> Path | None:
    """File of module ``dotted`` (``bundlezoo.x.y``) under ``root`` (the folder named ``bundlezoo``), else None."""
    parts = dotted.split(".")
    if parts[0] != root.name:
        return None
    base = root.joinpath(*parts[1:])
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    return None


def _longest_module(dotted: str, root: Path) -> str | None:
    """The longest prefix of ``dotted`` that is a module or package (``bundlezoo.transforms.X``: ``bundlezoo.transforms``)."""
    parts = dotted.split(".")
    for n in range(len(parts), 0, -1):
        name = ".".join(parts[:n])
        if _module_file(name, root) is not None:
            return name
    return None


def _module_name(file: Path, root: Path) -> str:
    rel = file.relative_to(root.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(file: Path, root: Path) -> set[str]:
    """Dotted names of ``bundlezoo`` modules (or attributes of them) that ``file`` imports, at any depth of the code."""
    tree = ast.parse(file.read_text(), filename=str(file))
    this = _module_name(file, root)
    package = this if file.name == "__init__.py" else this.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == root.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if base.split(".")[0] != root.name:
                continue
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names if a.name != "*")
    return found


def common_closure(names: Iterable[str], root: str | os.PathLike = COMMON_ROOT) -> list[Path]:
    """Files of package ``root`` needed to import ``names`` (dotted ``bundlezoo.…`` names), sorted.

    Each name resolves to its longest importable module; that module, every parent package ``__init__.py`` (Python
    runs them on import) and, transitively, every ``bundlezoo`` module they import are included.
    """
    root = Path(root).resolve()
    todo = [n for n in names]
    seen: set[Path] = set()
    while todo:
        mod = _longest_module(todo.pop(), root)
        if mod is None:
            continue
        parts = mod.split(".")
        for n in range(1, len(parts) + 1):
            f = _module_file(".".join(parts[:n]), root)
            if f is not None and f not in seen:
                seen.add(f)
                todo.extend(_imports(f, root))
    return sorted(seen)


def vendor_common(names: Iterable[str], dest: str | os.PathLike, root: str | os.PathLike = COMMON_ROOT) -> list[Path]:
    """Copy the :func:`common_closure` of ``names`` to ``dest/bundlezoo/…``; return the copied paths (relative to dest).

    Raises:
        ValueError: a name resolves to no module of ``root`` (a typo in a config would otherwise ship silently).
    """
    root = Path(root).resolve()
    names = sorted(set(names))
    # a name is a module, or one attribute of a module: anything longer names a module that does not exist
    unknown = [n for n in names if (m := _longest_module(n, root)) is None or n[len(m):].count(".") > 1]
    if unknown:
        raise ValueError(f"configs name {unknown}, which are not modules of {root}")
    copied = []
    for f in common_closure(names, root):
        rel = f.relative_to(root.parent)
        target = Path(dest) / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, target)
        copied.append(rel)
    return copied


# ----------------------------------------------------------------------------------------------- large files
def large_file_entries(bundle_dir: str | os.PathLike, paths: Iterable[str], url_prefix: str | None,
                       asset_prefix: str) -> list[dict[str, str]]:
    """model-zoo ``large_files.yml`` entries with the sha256 of each file.

    Args:
        bundle_dir: the bundle folder the paths are relative to.
        paths: relative paths of the large files (``models/model.pt`` ...).
        url_prefix: where the release assets will be published (e.g.
            ``https://github.com/<owner>/<repo>/releases/download/<tag>``); ``None`` leaves ``url`` empty.
        asset_prefix: asset names are ``<asset_prefix><file name>`` (release assets are one flat folder).
    """
    entries = []
    for rel in paths:
        asset = f"{asset_prefix}{Path(rel).name}"
        url = f"{url_prefix.rstrip('/')}/{urllib.parse.quote(asset)}" if url_prefix else ""
        entries.append({"path": rel, "url": url, "hash_val": sha256_file(Path(bundle_dir) / rel),
                        "hash_type": "sha256"})
    return entries


def write_large_files_yml(path: str | os.PathLike, entries: list[dict[str, str]], header: str = "") -> None:
    """Write ``large_files.yml`` in the model-zoo layout (a ``large_files`` list of path/url/hash_val/hash_type)."""
    import yaml

    text = header + yaml.safe_dump({"large_files": entries}, sort_keys=False, default_flow_style=False)
    _atomic_write_text(Path(path), text)


# ---------------------------------------------------------------------------------------------------- zipping
def write_zip(src_dir: str | os.PathLike, zip_path: str | os.PathLike, arc_root: str) -> Path:
    """Zip ``src_dir`` as ``<arc_root>/…`` into ``zip_path``, atomically (temporary name, then rename).

    Entries are sorted and carry a fixed timestamp, so one bundle state gives a byte-identical zip.
    """
    src, final = Path(src_dir), Path(zip_path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.partial-", dir=final.parent)
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for f in sorted(p for p in src.rglob("*") if p.is_file()):
                info = zipfile.ZipInfo(f"{arc_root}/{f.relative_to(src).as_posix()}", date_time=(2020, 1, 1, 0, 0, 0))
                info.external_attr = 0o644 << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                with open(f, "rb") as fh, zf.open(info, "w") as out:
                    shutil.copyfileobj(fh, out, 1 << 20)
        os.chmod(tmp, 0o644)
        os.replace(tmp, final)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return final


def _atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())
