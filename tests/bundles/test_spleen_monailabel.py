"""spleen-fast-train in a real MONAI Label 0.8.5 server (the ``monaibundle`` sample app, local bundle, loopback only).

MONAI Label lives in its own environment, ``.venv-label`` (``tools/monailabel_env.sh``: it pins numpy < 2 and
jsonschema < 4, which the main environment must not get). The test creates it when it is missing and skips only
when it cannot be created (no package registry). The server gets a studies folder of synthetic phantom NIfTI
files; over HTTP the test runs inference, saves a label and trains one epoch.

The released zip is downloaded (``monai.bundle download``) into ``<app>/model/spleen-fast-train`` as it ships (vendored ``bundlezoo``, no repository
on the server's path). Only its hyperparameters are shrunk for CPU (4 mm grid, 32^3/64^3 windows, validation every
epoch), by editing the copy's JSON as a user would.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from bundle_runner import REPO
from release_helpers import NAME, Release, build_release, env_without_repo

pytestmark = pytest.mark.slow

LABEL_VENV = Path(os.environ.get("MONAILABEL_VENV", REPO / ".venv-label"))
LABEL_PY = LABEL_VENV / "bin" / "python"
ENV_SCRIPT = REPO / "tools" / "monailabel_env.sh"
N_STUDIES, N_PRELABELLED = 5, 3
TINY = {  # the bundle copy's hyperparameters for CPU (train.json / inference.json ids)
    "train.json": {"pixdim": [4.0, 4.0, 4.0], "roi_size": [32, 32, 32], "val_roi_size": [64, 64, 64],
                   "samples_per_volume": 1, "batch_size": 1, "val_interval": 1, "sw_batch_size": 1,
                   "cache_workers": 1, "num_threads": 1},
    "inference.json": {"pixdim": [4.0, 4.0, 4.0], "roi_size": [64, 64, 64], "sw_batch_size": 1, "num_threads": 1},
}


def _label_python() -> Path:
    """The MONAI Label environment's python, made current with tools/monailabel_env.sh (a no-op when up to date)."""
    proc = subprocess.run(["bash", str(ENV_SCRIPT)], cwd=REPO, capture_output=True, text=True, timeout=1200,
                          env=dict(os.environ, LABEL_VENV=str(LABEL_VENV)))
    if proc.returncode != 0:
        pytest.skip(f"MONAI Label environment {LABEL_VENV} is absent or stale and tools/monailabel_env.sh could not "
                    f"create it (no package registry?): {proc.stderr.strip().splitlines()[-1:]}")
    return LABEL_PY


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _request(method: str, url: str, *, data: bytes | None = None, headers: dict[str, str] | None = None,
             timeout: float = 60) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _multipart(fields: dict[str, str], files: dict[str, Path]) -> tuple[bytes, dict[str, str]]:
    boundary = uuid.uuid4().hex
    parts: list[bytes] = []
    for k, v in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode())
    for k, p in files.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"; filename="{p.name}"\r\n'
                     f"Content-Type: application/octet-stream\r\n\r\n".encode() + p.read_bytes() + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), {"Content-Type": f"multipart/form-data; boundary={boundary}"}


@dataclass
class LabelServer:
    url: str
    app: Path
    studies: Path
    log: Path
    ground_truth: Path  # the phantoms' own labels, standing in for an annotator's


    @property
    def bundle(self) -> Path:
        return self.app / "model" / NAME

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def _prepare_app(py: Path, release: Release, root: Path) -> tuple[Path, Path]:
    env = env_without_repo()
    apps = root / "apps"
    proc = subprocess.run([str(py), "-m", "monailabel.main", "apps", "--download", "--name", "monaibundle",
                           "--output", str(apps)], cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    app = apps / "monaibundle"
    proc = subprocess.run([str(py), "-m", "monai.bundle", "download", "--name", NAME, "--bundle_dir",
                           str(app / "model"), "--url", release.zip_path.as_uri()],
                          cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for cfg, values in TINY.items():
        path = app / "model" / NAME / "configs" / cfg
        config = json.loads(path.read_text())
        assert set(values) <= set(config), set(values) - set(config)
        config.update(values)
        path.write_text(json.dumps(config, indent=4))

    studies = root / "studies"
    (studies / "labels" / "final").mkdir(parents=True)
    images = release.phantom_images[:N_STUDIES]
    assert len(images) == N_STUDIES
    for i, img in enumerate(images):
        shutil.copy2(img, studies / img.name)
        if i < N_PRELABELLED:
            label = img.parent.parent / "labelsTr" / img.name
            shutil.copy2(label, studies / "labels" / "final" / img.name)
    return app, studies


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabelServer]:
    py = _label_python()
    release = build_release(tmp_path_factory.mktemp("release"))
    root = tmp_path_factory.mktemp("monailabel")
    app, studies = _prepare_app(py, release, root)
    port = _free_port()
    log = root / "server.log"
    cmd = [str(py), "-m", "monailabel.main", "start_server", "--app", str(app), "--studies", str(studies),
           "--host", "127.0.0.1", "--port", str(port),
           "--conf", "models", NAME, "--conf", "zoo_source", "github",  # local bundle, never the zoo
           "--conf", "sam2", "false", "--conf", "preload", "false"]
    with open(log, "w") as fh:
        env = env_without_repo(MONAI_LABEL_SESSION_PATH=str(root / "sessions"))
        proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while True:
            if proc.poll() is not None:
                pytest.fail(f"MONAI Label exited with {proc.returncode}:\n{log.read_text()[-6000:]}")
            try:
                status, _ = _request("GET", f"{url}/info/", timeout=5)
                if status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"MONAI Label did not answer on {url} within 240 s:\n{log.read_text()[-6000:]}")
            time.sleep(2)
        yield LabelServer(url, app, studies, log, release.phantom_images[0].parent.parent / "labelsTr")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)


def test_bundle_loaded_as_local_model(server: LabelServer) -> None:
    status, body = _request("GET", f"{server.url}/info/")
    info = json.loads(body)
    assert NAME in info["models"], info["models"].keys()
    assert info["models"][NAME]["type"] == "segmentation"
    assert info["models"][NAME]["labels"] == {"spleen": 1}
    assert NAME in info["trainers"]
    assert "Adding Bundle from Local" in server.output()


def test_inference_label_in_image_space(server: LabelServer, tmp_path: Path) -> None:
    image = sorted(server.studies.glob("*.nii.gz"))[-1]  # an unlabelled study
    image_id = image.name[: -len(".nii.gz")]
    body, headers = _multipart({"params": json.dumps({"device": "cpu"})}, {})
    status, content = _request("POST", f"{server.url}/infer/{NAME}?image={image_id}&output=image", data=body,
                               headers=headers, timeout=300)
    assert status == 200, (content[:2000], server.output()[-6000:])
    out = tmp_path / "label.nii.gz"
    out.write_bytes(content)
    img, lab = nib.load(image), nib.load(out)
    assert lab.shape[:3] == img.shape[:3]
    assert np.allclose(lab.affine, img.affine, atol=1e-3), (lab.affine, img.affine)
    assert set(np.unique(np.asarray(lab.dataobj)).tolist()) <= {0, 1}


def test_save_label_then_train_one_epoch(server: LabelServer, tmp_path: Path) -> None:
    # save a label for an unlabelled study
    image = sorted(server.studies.glob("*.nii.gz"))[N_PRELABELLED]
    image_id = image.name[: -len(".nii.gz")]
    phantom_label = server.ground_truth / image.name
    body, headers = _multipart({"params": "{}"}, {"label": phantom_label})
    status, content = _request("PUT", f"{server.url}/datastore/label?image={image_id}&tag=final", data=body,
                               headers=headers)
    assert status == 200, content[:2000]
    saved = server.studies / "labels" / "final" / image.name
    assert saved.is_file() and np.array_equal(np.asarray(nib.load(saved).dataobj),
                                              np.asarray(nib.load(phantom_label).dataobj))
    status, content = _request("GET", f"{server.url}/datastore/?output=stats")
    assert json.loads(content)["completed"] == N_PRELABELLED + 1, content

    model = server.bundle / "models" / "model.pt"
    before = (model.stat().st_mtime_ns, model.read_bytes())
    params = {"max_epochs": 1, "val_split": 0.25, "device": "cpu", "multi_gpu": False, "pretrained": True}
    status, content = _request("POST", f"{server.url}/train/{NAME}?run_sync=true", data=json.dumps(params).encode(),
                               headers={"Content-Type": "application/json"}, timeout=600)
    assert status == 200, (content[:2000], server.output()[-6000:])
    log = server.output()
    after = (model.stat().st_mtime_ns, model.read_bytes())
    assert after[0] > before[0] and after[1] != before[1], log[-6000:]
    # MONAI Label started from the bundle's model (its own CheckpointLoader; the bundle's finetune loader is off)
    assert f"Restored all variables from {model}" in log, log[-6000:]

