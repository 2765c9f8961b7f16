"""Shipping bundles: the explicit list of files a release carries, the `bundlezoo` code its configs use (vendored
under a name of its own), release zips, weight hashes.

A released bundle must run where this repository is absent. Its configs name shared code only as
``bundlezoo.<module>.<attr>`` strings (``_target_`` components, writer class paths, ``$`` expressions); MONAI's
``ConfigWorkflow.run()`` and MONAI Label both put the bundle root on ``sys.path``, so a package folder at the bundle
root serves those names. :func:`common_closure` finds the modules the configs name plus everything they import from
``bundlezoo`` (also imports deferred inside functions), so the vendored copy is complete but carries no unrelated code
(no verifier, no tools).

The copy is vendored as ``bundlezoo_<bundle>_<version>`` (:func:`vendored_package_name`) and the staged configs are
rewritten to that name (:func:`rename_in_configs`): Python keeps one module per name per process, so two released
bundles that both shipped a top-level ``bundlezoo`` would, loaded in one process (MONAI Label, a user script), share
whichever copy was imported first. This is why ``bundlezoo`` imports itself only relatively
(:func:`vendor_common` refuses an absolute self-import).

This module is used by ``tools/package.py`` and the tests; bundles never import it.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import shutil
import urllib.parse
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from bundlezoo.data.io import atomic_path, atomic_write_text

__all__ = [
    "COMMON_ROOT",
    "bundle_files",
    "common_closure",
    "config_common_names",
    "large_file_entries",
    "rename_in_configs",
    "sha256_file",
    "vendor_common",
    "vendored_package_name",
    "write_large_files_yml",
    "write_sha256_file",
    "write_zip",
]

COMMON_ROOT = Path(__file__).resolve().parents[1] / "bundlezoo"
_PKG = COMMON_ROOT.name  # "bundlezoo"
# A dotted name starting with the package, anywhere in a string: "bundlezoo.x.Y", "$bundlezoo.x.f(...)"
_NAME_PATTERN = re.compile(rf"(?<![\w.]){_PKG}(?:\.[A-Za-z_]\w*)+")
_PREFIX_PATTERN = re.compile(rf"(?<![\w.]){_PKG}(?=\.[A-Za-z_])")


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
    names: set[str] = set()
    for cfg in config_files:
        data = json.loads(Path(cfg).read_text())
        for s in _strings(data):
            names.update(_NAME_PATTERN.findall(s))
    return names


def vendored_package_name(bundle: str, version: str) -> str:
    """Module name of a release's vendored ``bundlezoo``: ``bundlezoo_<bundle>_<version>``, lower case, every run of
    characters other than letters and digits made one ``_`` (``spleen-fast-train``, ``0.5.0``:
    ``bundlezoo_spleen_fast_train_0_5_0``).

    One name per bundle and version, so two releases loaded in one process never share a vendored module.
    """
    return f"{_PKG}_" + re.sub(r"[^0-9a-z]+", "_", f"{bundle}_{version}".lower()).strip("_")


def rename_in_configs(config_files: Iterable[str | os.PathLike], package: str) -> list[Path]:
    """Rewrite every ``bundlezoo.`` name in the given JSON configs to ``<package>.`` in place (atomically); return
    the files that changed.

    The text is rewritten, not re-serialised, so the configs keep their layout. Meant for a staged copy of a bundle,
    never for the repository's own configs.

    Raises:
        ValueError: a ``bundlezoo`` name survived the rewrite (e.g. written with a JSON escape), which would make the
            release import a ``bundlezoo`` that it does not ship.
    """
    changed = []
    for cfg in map(Path, config_files):
        text = cfg.read_text()
        new = _PREFIX_PATTERN.sub(package, text)
        if new != text:
            atomic_write_text(cfg, new)
            changed.append(cfg)
        left = config_common_names([cfg])
        if left:
            raise ValueError(f"{cfg}: {sorted(left)} could not be renamed to {package}")
    return changed


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


def _absolute_self_imports(file: Path, root: Path) -> list[int]:
    """Line numbers where ``file`` imports package ``root`` by its absolute name."""
    tree = ast.parse(file.read_text(), filename=str(file))
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == root.name for a in node.names):
            lines.append(node.lineno)
        elif isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").split(".")[0] == root.name:
            lines.append(node.lineno)
    return sorted(lines)


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


def vendor_common(names: Iterable[str], dest: str | os.PathLike, root: str | os.PathLike = COMMON_ROOT,
                  package: str = _PKG) -> list[Path]:
    """Copy the :func:`common_closure` of ``names`` to ``dest/<package>/…``; return the copied paths (relative to
    dest).

    Args:
        names: dotted ``bundlezoo.…`` names the configs use (:func:`config_common_names`).
        dest: the staged bundle folder.
        root: the package folder to copy from.
        package: the name the copy gets (:func:`vendored_package_name` for a release; the configs must then be
            rewritten with :func:`rename_in_configs`).

    Raises:
        ValueError: a name resolves to no module of ``root`` (a typo in a config would otherwise ship silently), or a
            copied module imports ``bundlezoo`` by its absolute name (the renamed copy would import another one).
    """
    root = Path(root).resolve()
    names = sorted(set(names))
    # a name is a module, or one attribute of a module: anything longer names a module that does not exist
    unknown = [n for n in names if (m := _longest_module(n, root)) is None or n[len(m):].count(".") > 1]
    if unknown:
        raise ValueError(f"configs name {unknown}, which are not modules of {root}")
    files = common_closure(names, root)
    absolute = [f"{f.relative_to(root.parent)}:{line}" for f in files for line in _absolute_self_imports(f, root)]
    if absolute:
        raise ValueError(f"{', '.join(absolute)}: imports {root.name} by its absolute name; use a relative import "
                         f"(the vendored copy is renamed, see tools/vendoring.py)")
    copied = []
    for f in files:
        rel = Path(package, *f.relative_to(root).parts)
        target = Path(dest) / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, target)
        copied.append(rel)
    return copied


# ------------------------------------------------------------------------------------------- what a release holds
def _hidden_or_cache(parts: Iterable[str]) -> bool:
    return any(p.startswith(".") or p == "__pycache__" or p.endswith((".pyc", ".pyo")) for p in parts)


def bundle_files(bundle_dir: str | os.PathLike, items: Iterable[str]) -> tuple[list[str], list[str]]:
    """The explicit list of files a release copies from a bundle: ``(shipped, left_out)``, relative POSIX paths.

    ``items`` are files or folders of the bundle (missing ones are skipped); folders are walked without following
    folder links. Hidden files and folders, ``__pycache__`` and compiled Python are left out (and listed in
    ``left_out``). A link to a regular file inside the bundle ships that file's content.

    Raises:
        ValueError: a link points outside the bundle, to a folder, or to a hidden file; or an entry is not a regular
            file (a fifo, a socket). A link out of the bundle would put a file of the packaging machine (a key, a
            ``.pem``) into the release.
    """
    root = Path(bundle_dir).resolve()
    shipped: list[str] = []
    left_out: list[str] = []

    def visit(path: Path) -> None:
        rel = path.relative_to(root).as_posix()
        if _hidden_or_cache(path.relative_to(root).parts):
            left_out.append(rel)
        elif path.is_symlink():
            target = path.resolve()
            if not target.is_relative_to(root):
                raise ValueError(f"{rel} is a symlink to {target}, outside the bundle")
            if not target.is_file() or _hidden_or_cache(target.relative_to(root).parts):
                raise ValueError(f"{rel} is a symlink to {target.relative_to(root).as_posix()}, which is not a "
                                 f"shippable file of the bundle")
            shipped.append(rel)
        elif path.is_dir():
            for child in sorted(path.iterdir()):
                visit(child)
        elif path.is_file():
            shipped.append(rel)
        else:
            raise ValueError(f"{rel} is not a regular file")

    for item in items:
        path = root / item
        if os.path.lexists(path):
            visit(path)
    return shipped, left_out


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
    atomic_write_text(Path(path), text)


# ---------------------------------------------------------------------------------------------------- zipping
def write_zip(src_dir: str | os.PathLike, zip_path: str | os.PathLike, arc_root: str,
              files: Iterable[str | os.PathLike]) -> Path:
    """Zip the listed ``files`` of ``src_dir`` as ``<arc_root>/…`` into ``zip_path``, atomically (temporary name, then
    rename).

    Only the listed files are zipped (whatever else a verification or export run left in ``src_dir`` stays out).
    Entries are sorted and carry a fixed timestamp, so one bundle state gives a byte-identical zip.
    """
    src, final = Path(src_dir), Path(zip_path)
    with atomic_path(final) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for rel in sorted({Path(f).as_posix() for f in files}):
            info = zipfile.ZipInfo(f"{arc_root}/{rel}", date_time=(2020, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            with open(src / rel, "rb") as fh, zf.open(info, "w") as out:
                shutil.copyfileobj(fh, out, 1 << 20)
    return final


def write_sha256_file(path: str | os.PathLike) -> tuple[str, Path]:
    """Write ``<path>.sha256`` in ``sha256sum`` format (``<hex>  <file name>``, so ``sha256sum -c`` checks it from
    the file's folder); return the digest and the written file."""
    path = Path(path)
    digest = sha256_file(path)
    out = path.with_name(f"{path.name}.sha256")
    atomic_write_text(out, f"{digest}  {path.name}\n")
    return digest, out
