"""tools/download.py: a release zip is installed only when its sha256 matches, whole or not at all.

Each test runs the real command line (``python -m tools.download``) on small zips written with the packaging code.
"""

from __future__ import annotations

import http.server
import os
import signal
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tools.vendoring import write_sha256_file, write_zip

REPO = Path(__file__).resolve().parents[2]
NAME = "tiny-bundle"


def _download(url: str, sha256: str, bundle_dir: Path) -> subprocess.CompletedProcess:
    args = [sys.executable, "-m", "tools.download", "--url", url, "--sha256", sha256, "--name", NAME,
            "--bundle_dir", str(bundle_dir)]
    return subprocess.run(args, cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True,
                          text=True, timeout=120)


@pytest.fixture
def release(tmp_path: Path) -> tuple[Path, str]:
    """A small release zip (one top folder ``tiny-bundle/``, 2 MB of "weights") and its published sha256."""
    src = tmp_path / "src"
    (src / "configs").mkdir(parents=True)
    (src / "models").mkdir()
    (src / "configs" / "inference.json").write_text('{"network_def": {"_target_": "UNet"}}')
    (src / "models" / "model.pt").write_bytes(os.urandom(2 << 20))
    zip_path = write_zip(src, tmp_path / "dist" / f"{NAME}_v1.0.0.zip", arc_root=NAME,
                         files=["configs/inference.json", "models/model.pt"])
    digest, _ = write_sha256_file(zip_path)
    return zip_path, digest


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_good_zip_is_verified_and_installed(release: tuple[Path, str], tmp_path: Path) -> None:
    zip_path, digest = release
    bundles = tmp_path / "bundles"
    proc = _download(zip_path.as_uri(), digest, bundles)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"{bundles / NAME}: sha256 {digest} verified"
    assert sorted(p.name for p in bundles.iterdir()) == [NAME]  # no zip, no temporary folder left
    with zipfile.ZipFile(zip_path) as zf:
        assert _tree(bundles) == {n: zf.read(n) for n in zf.namelist()}


def test_tampered_zip_is_refused_and_nothing_extracted(release: tuple[Path, str], tmp_path: Path) -> None:
    zip_path, digest = release
    tampered = tmp_path / "mirror" / zip_path.name
    tampered.parent.mkdir()
    data = bytearray(zip_path.read_bytes())
    data[len(data) // 2] ^= 1  # one bit inside the weights
    tampered.write_bytes(bytes(data))
    bundles = tmp_path / "bundles"
    proc = _download(tampered.as_uri(), digest, bundles)
    assert proc.returncode == 1
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith(f"download: {tampered.as_uri()}: sha256 ") and line.endswith(
        f"is not the expected {digest}: refused, nothing extracted"), line
    assert list(bundles.iterdir()) == []


@pytest.mark.parametrize("entry, problem", [(f"{NAME}/../../evil.txt", "leaves the folder (..)"),
                                            ("/tmp/evil.txt", "has an absolute path"),
                                            ("other/evil.txt", f"is not under {NAME}/"),
                                            (f"{NAME}/configs/link", "is a symbolic link")])
def test_unsafe_entry_is_refused_even_with_the_right_hash(entry: str, problem: str, tmp_path: Path) -> None:
    """A zip whose hash is right (a malicious release) still cannot write outside the bundle folder (zip slip)."""
    zip_path = tmp_path / "evil.zip"
    with zipfile.ZipFile(zip_path, "w") as zf:
        zf.writestr(f"{NAME}/configs/inference.json", "{}")
        info = zipfile.ZipInfo(entry)
        if entry.endswith("link"):
            info.external_attr = 0o120777 << 16  # what `zip --symlinks` writes; unzip would create the link
        zf.writestr(info, "/etc/passwd" if entry.endswith("link") else "pwned")
    digest, _ = write_sha256_file(zip_path)
    bundles = tmp_path / "work" / "bundles"
    proc = _download(zip_path.as_uri(), digest, bundles)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [f"download: zip entry {entry!r} {problem}: refused, nothing extracted"]
    assert list(bundles.iterdir()) == []
    assert not list(tmp_path.rglob("evil.txt"))


def test_partial_folder_of_an_earlier_try_is_refused(release: tuple[Path, str], tmp_path: Path) -> None:
    """A folder left by an interrupted extraction (here: the weights missing) is never taken for the release; the
    complete folder is recognised as already installed."""
    zip_path, digest = release
    bundles = tmp_path / "bundles"
    with zipfile.ZipFile(zip_path) as zf:
        zf.extract(f"{NAME}/configs/inference.json", bundles)
    before = _tree(bundles)
    proc = _download(zip_path.as_uri(), digest, bundles)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"download: {bundles / NAME} exists but is not this release ({NAME}/models/model.pt is missing); it may be "
        f"left by an interrupted download: remove it and rerun"]
    assert _tree(bundles) == before and sorted(p.name for p in bundles.iterdir()) == [NAME]

    with zipfile.ZipFile(zip_path) as zf:
        zf.extractall(bundles)
    (bundles / NAME / "eval").mkdir()
    (bundles / NAME / "eval" / "metrics.csv").write_text("a run's output")  # added files do not matter
    proc = _download(zip_path.as_uri(), digest, bundles)
    assert proc.returncode == 0, proc.stderr


class _StallingHandler(http.server.BaseHTTPRequestHandler):
    """Sends the headers and half of the body, then stalls until the server's ``release`` event is set."""

    def do_GET(self) -> None:  # noqa: N802 - the base class's name
        body = self.server.body  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2])
        self.wfile.flush()
        self.server.release.wait(60)  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        pass


@pytest.fixture
def stalling_server(release: tuple[Path, str]) -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _StallingHandler)
    server.body = release[0].read_bytes()  # type: ignore[attr-defined]
    server.release = threading.Event()  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/{release[0].name}"
    finally:
        server.release.set()  # type: ignore[attr-defined]
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_download_killed_midway_leaves_nothing_the_next_try_trusts(release: tuple[Path, str], stalling_server: str,
                                                                   tmp_path: Path) -> None:
    """``kill -9`` during the transfer leaves only a hidden temporary folder; the next try removes it and installs."""
    zip_path, digest = release
    bundles = tmp_path / "bundles"
    args = [sys.executable, "-m", "tools.download", "--url", stalling_server, "--sha256", digest, "--name", NAME,
            "--bundle_dir", str(bundles)]
    child = subprocess.Popen(args, cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not [p for p in bundles.glob(f".{NAME}.partial-*/*.zip") if p.stat().st_size > 0]:
            assert child.poll() is None and time.monotonic() < deadline, "the download never started"
            time.sleep(0.05)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    leftovers = list(bundles.glob(f".{NAME}.partial-*"))
    assert leftovers and not (bundles / NAME).exists()

    proc = _download(zip_path.as_uri(), digest, bundles)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in bundles.iterdir()) == [NAME]
