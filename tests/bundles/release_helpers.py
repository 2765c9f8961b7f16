"""Helpers of the release tests: one packaged spleen-fast-train, a Python without this repository, a loopback server.

The release is built once per test session (memoised here, so the download/finetune tests and the MONAI Label test
share it) by training a copy of the bundle on its embedded synthetic phantoms with a small, fast override and
running ``tools/package.py`` on it, as a maintainer would before publishing.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import threading
import venv
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bundle_runner import REPO, SMOKE_OVERRIDE, SPLEEN, BundleRun, bundle_env, run_bundle

NAME = SPLEEN.name
SCHEMA = Path(os.environ.get("BUNDLE_SCHEMA", REPO.parent / "shared" / "schemas" / "meta_schema_20240725.json"))

#: Override of the release training and of the finetune runs (on top of the smoke override): one 32^3 crop per
#: step makes a step cheap, so 40 epochs x 4 phantoms learn the crops (loss ~1.6 -> ~0.3) in about a minute on CPU.
FAST_TRAIN = {"batch_size": 1, "samples_per_volume": 1}
RELEASE_EPOCHS = 40

_VAL_DICE_BEST = re.compile(r"Key metric: val_mean_dice best value: ([0-9.eE+-]+)")
_VAL_DICE_NEW = re.compile(r"Got new best metric of val_mean_dice: ([0-9.eE+-]+)")


def epoch_losses(output: str, epoch: int) -> list[float]:
    """The per-iteration ``train_loss`` values that StatsHandler logged for ``epoch``."""
    return [float(m) for m in re.findall(rf"Epoch: {epoch}/\d+, Iter: \d+/\d+ -- train_loss: ([0-9.eE+-]+)", output)]


def best_val_dice(output: str) -> float:
    """The last 'best val_mean_dice' a training run reported."""
    found = _VAL_DICE_BEST.findall(output)
    assert found, "the run reported no validation Dice"
    return float(found[-1])


def first_val_dice(output: str) -> float:
    """The first validation Dice a run reported (the first one is always a 'new best')."""
    found = _VAL_DICE_NEW.findall(output)
    assert found, "the run reported no validation Dice"
    return float(found[0])


@dataclass
class Release:
    """A packaged bundle and how its model was trained."""

    zip_path: Path
    dist: Path
    trained_bundle: Path  # the trained copy that was packaged (repo layout, with data/ and models/)
    train_run: BundleRun

    @property
    def val_dice(self) -> float:
        """Validation Dice of the packaged model (synthetic phantoms, small override)."""
        return best_val_dice(self.train_run.output)

    @property
    def version(self) -> str:
        """The packaged bundle's version (metadata ``version``)."""
        return json.loads((self.trained_bundle / "configs" / "metadata.json").read_text())["version"]

    @property
    def sha256_file(self) -> Path:
        """``<zip>.sha256`` that tools/package.py writes beside the zip."""
        return self.zip_path.with_name(f"{self.zip_path.name}.sha256")

    @property
    def sha256(self) -> str:
        """The zip's published sha256 (first field of :attr:`sha256_file`)."""
        return self.sha256_file.read_text().split()[0]

    @property
    def phantom_images(self) -> list[Path]:
        return sorted((self.trained_bundle / "data" / "phantom_Task09_Spleen" / "imagesTr").glob("*.nii.gz"))


def copy_bundle(dest_parent: Path) -> Path:
    """A copy of the repository's spleen-fast-train without run outputs or weights."""
    dest = dest_parent / NAME
    shutil.copytree(SPLEEN, dest, ignore=shutil.ignore_patterns("models", "eval", "runs", "logs", "mlruns", "data",
                                                                "__pycache__"))
    (dest / "models").mkdir()
    return dest


_cache: dict[str, Any] = {}


def build_release(workdir: Path) -> Release:
    """Train a copy of spleen-fast-train and package it with tools/package.py (once per session: later calls return
    the first release, whatever ``workdir`` they pass)."""
    if "release" not in _cache:
        _cache["release"] = _build_release(workdir)
    return _cache["release"]


def _build_release(workdir: Path) -> Release:
    bundle = copy_bundle(workdir / "src")
    run = run_bundle([bundle / "configs" / "train.json", SMOKE_OVERRIDE], bundle_root=bundle,
                     overrides={**FAST_TRAIN, "epochs": RELEASE_EPOCHS, "val_interval": RELEASE_EPOCHS})
    assert run.returncode == 0 and (bundle / "models" / "model.pt").is_file(), run.describe()
    dist = workdir / "dist"
    args = [sys.executable, "-m", "tools.package", str(bundle), "--out", str(dist),
            *(["--schema", str(SCHEMA)] if SCHEMA.is_file() else ["--verify_skip_schema"]),
            "--large_files_url", dist.as_uri(),
            # the verifier's export round trips are tested in tests/tools/test_verify.py; package.py still exports
            "--verify_skip_export"]
    proc = subprocess.run(args, cwd=REPO, env=bundle_env(), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"$ {' '.join(args)}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    zip_path = dist / f"{NAME}_v{json.loads((bundle / 'configs' / 'metadata.json').read_text())['version']}.zip"
    assert zip_path.is_file(), proc.stdout
    return Release(zip_path, dist, bundle, run)


def verified_download_script() -> str:
    """The repository-free verified download script that the bundle's docs/README.md shows (its ``<<'PY'`` block)."""
    text = (SPLEEN / "docs" / "README.md").read_text()
    match = re.search(r"<<'PY'\n(.*?)\nPY\n", text, re.S)
    assert match, "docs/README.md shows no verified download script"
    return match.group(1) + "\n"


# ------------------------------------------------------------------------------------------ Python without the repo
def python_without_repo(workdir: Path) -> Path:
    """A throwaway virtual environment with this environment's packages (MONAI, torch ...) but not this repository.

    The venv's ``site-packages`` gets one ``.pth`` line naming our ``site-packages``: that makes the installed
    packages importable, but unlike a site directory it does not run *their* ``.pth`` files, so the editable
    install's finder for ``bundlezoo`` never loads. Returns the venv's python (created once per session).
    """
    if "python" in _cache:
        return _cache["python"]
    env_dir = workdir / "venv-no-repo"
    venv.EnvBuilder(with_pip=False, symlinks=True).create(env_dir)
    py = env_dir / "bin" / "python"
    purelib = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    (Path(purelib) / "zz_host_site_packages.pth").write_text(
        str(Path(sysconfig.get_paths()["purelib"]).resolve()) + "\n")
    _cache["python"] = py
    return py


def env_without_repo(**extra: str) -> dict[str, str]:
    """Environment of a child run that must not see this repository (no PYTHONPATH, no user site, CPU only)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    env.update(PYTHONNOUSERSITE="1", PYTHONDONTWRITEBYTECODE="1", CUDA_VISIBLE_DEVICES="", MLFLOW_TRACKING_URI="",
               OMP_NUM_THREADS="2")
    env.update(extra)
    return env


def run_cli(python: Path | str, args: Sequence[str], *, cwd: Path, env: dict[str, str],
            timeout: float = 600) -> BundleRun:
    """``python <args>`` in ``cwd``; never raises on failure."""
    cmd = [str(python), *[str(a) for a in args]]
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    return BundleRun(cmd, proc.returncode, proc.stdout, proc.stderr)


def overrides_args(overrides: dict[str, Any]) -> list[str]:
    """``--key value`` CLI arguments; non-strings JSON-encoded, as MONAI's CLI parses them back."""
    out: list[str] = []
    for k, v in overrides.items():
        out += [f"--{k}", v if isinstance(v, str) else json.dumps(v)]
    return out


# --------------------------------------------------------------------------------------------------- HTTP server
class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass


@contextlib.contextmanager
def loopback_http_server(folder: Path) -> Iterator[str]:
    """Serve ``folder`` on 127.0.0.1 at a free port for the ``with`` block; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
