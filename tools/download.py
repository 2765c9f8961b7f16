"""Download a released bundle zip, check its sha256, and only then put it in place.

Usage (from the repository root; the sha256 is the one ``tools/package.py`` printed and wrote to ``<zip>.sha256``)::

    python -m tools.download --sha256 <64 hex digits> --name spleen-fast-train --bundle_dir bundles \
        --url https://github.com/<owner>/<repo>/releases/download/<tag>/spleen-fast-train_v0.5.0.zip

``python -m monai.bundle download --url`` takes no hash: it extracts whatever it fetched, and a folder left by an
interrupted try makes the next try log "skipped" and exit 0. Here, in order:

1. the zip is fetched (``file://``, ``http(s)://``) to a temporary name inside ``<bundle_dir>/.<name>.partial-*``;
2. its sha256 must equal ``--sha256``, else nothing is extracted;
3. every entry must lie under ``<name>/`` (no absolute path, no ``..``, no link), else nothing is extracted;
4. it is extracted into the temporary folder, and ``<name>/`` is renamed to ``<bundle_dir>/<name>`` — the bundle
   appears whole or not at all.

An existing ``<bundle_dir>/<name>`` is never reused blindly: when it holds every file of the release byte for byte
(files a run added, such as ``eval/``, do not matter) the download is reported as already there; otherwise it is
refused (an interrupted ``monai.bundle download``, or a modified bundle). Temporary folders of an earlier try that
was killed are removed first; downloads into one ``bundle_dir`` take turns (a file lock on the folder). A refusal is
one line ``download: <problem>`` and exit status 1.

For users without this repository, the bundle's ``docs/README.md`` shows the same route as a short script over
MONAI's ``download_url`` (which checks the hash) and ``extractall`` (which refuses entries leaving the folder).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import stat
import sys
import tempfile
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import fire

from tools.vendoring import sha256_file

_HEX64 = re.compile(r"[0-9a-f]{64}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class DownloadError(RuntimeError):
    """The release cannot be installed: bad hash, unsafe zip, or a folder in the way."""


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` (a lock on the folder itself: nothing is left behind)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DownloadError(f"another download into {folder} is running; retry when it has finished") from None
        yield
    finally:
        os.close(fd)


def _fetch(url: str, dest: Path) -> None:
    with urllib.request.urlopen(url, timeout=60) as response, open(dest, "wb") as out:  # noqa: S310 - user's URL
        shutil.copyfileobj(response, out, 1 << 20)


def _member_problem(info: zipfile.ZipInfo, name: str) -> str | None:
    """Why an entry may not be extracted under ``<name>/``, or None."""
    path = PurePosixPath(info.filename)
    if info.filename.startswith(("/", "\\")) or "\\" in info.filename or ":" in path.parts[0]:
        return "has an absolute path"
    if ".." in path.parts:
        return "leaves the folder (..)"
    if path.parts[0] != name:
        return f"is not under {name}/"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "is a symbolic link"
    return None


def _checked_members(zf: zipfile.ZipFile, name: str) -> list[zipfile.ZipInfo]:
    members = zf.infolist()
    if not members:
        raise DownloadError("the zip is empty")
    for info in members:
        problem = _member_problem(info, name)
        if problem:
            raise DownloadError(f"zip entry {info.filename!r} {problem}: refused, nothing extracted")
    return members


def _differs(zf: zipfile.ZipFile, members: list[zipfile.ZipInfo], bundle_dir: Path) -> str | None:
    """The first release file missing from or different in the installed copy, or None when all match."""
    for info in members:
        if info.is_dir():
            continue
        local = bundle_dir / info.filename
        if not local.is_file() or local.is_symlink():
            return f"{info.filename} is missing"
        if local.stat().st_size != info.file_size:
            return f"{info.filename} differs"
        with zf.open(info) as a, open(local, "rb") as b:
            while True:
                block = a.read(1 << 20)
                if block != b.read(len(block)):
                    return f"{info.filename} differs"
                if not block:
                    break
    return None


def download_bundle(url: str, sha256: str, name: str, bundle_dir: str = "bundles") -> Path:
    """Install the release zip at ``url`` as ``<bundle_dir>/<name>`` if its sha256 is ``sha256``; return the folder.

    Args:
        url: the zip (``file://``, ``http://``, ``https://``), e.g. a GitHub release asset.
        sha256: the zip's published sha256 (64 hex digits).
        name: the bundle's name, i.e. the zip's top folder (``spleen-fast-train``).
        bundle_dir: the folder that receives ``<name>/``.

    Raises:
        DownloadError: the hash differs, the zip is unsafe or not laid out as ``<name>/…``, or ``<bundle_dir>/<name>``
            exists and is not this release.
    """
    sha256 = str(sha256).strip().lower()
    if not _HEX64.fullmatch(sha256):
        raise DownloadError(f"--sha256 must be 64 hex digits (the release's <zip>.sha256), got {sha256!r}")
    if not _NAME.fullmatch(name):
        raise DownloadError(f"--name must be a bundle folder name, got {name!r}")
    root = Path(bundle_dir)
    root.mkdir(parents=True, exist_ok=True)
    target = root / name
    with _locked(root):
        # under the lock, a temporary folder of this name can only be the remains of a killed try
        for stale in root.glob(f".{name}.partial-*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.partial-", dir=root))
        try:
            zip_file = tmp / f"{name}.zip"
            try:
                _fetch(url, zip_file)
            except (OSError, ValueError) as e:
                raise DownloadError(f"{url}: cannot be fetched ({type(e).__name__}: {e})") from None
            got = sha256_file(zip_file)
            if got != sha256:
                raise DownloadError(f"{url}: sha256 {got} is not the expected {sha256}: refused, nothing extracted")
            try:
                with zipfile.ZipFile(zip_file) as zf:
                    members = _checked_members(zf, name)
                    if os.path.lexists(target):
                        problem = _differs(zf, members, root)
                        if problem:
                            raise DownloadError(f"{target} exists but is not this release ({problem}); it may be "
                                                f"left by an interrupted download: remove it and rerun")
                        return target
                    zf.extractall(tmp / "x", members=members)
            except zipfile.BadZipFile as e:
                raise DownloadError(f"{url}: not a zip file ({e})") from None
            os.rename(tmp / "x" / name, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _install(url: str, sha256: str, name: str, bundle_dir: str = "bundles") -> str:
    """Install a released bundle zip after checking its sha256 (see :func:`download_bundle` for the arguments)."""
    target = download_bundle(url, sha256, name, bundle_dir)
    return f"{target}: sha256 {str(sha256).strip().lower()} verified"


def main() -> None:
    """Console entry point (``bundlezoo-download``); a refusal is one line ``download: <problem>``, exit status 1."""
    try:
        fire.Fire(_install)  # prints the returned line
    except DownloadError as e:
        print(f"download: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
