"""Locks around shared folders, with real processes: phantom generation by two runs at once, a lock holder killed
with SIGKILL, and the partial folders interrupted runs leave behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bundlezoo.data import PhantomMSD
from bundlezoo.data.locks import FolderLock, LockedError

REPO = Path(__file__).resolve().parents[3]

GENERATE = """
import sys
import torch.distributed  # the slow imports first, so that the run reaches the lock as soon as it is told to go
from bundlezoo.data import PhantomMSD
from bundlezoo.data.layouts import write_msd_spleen
print("ready", flush=True)
sys.stdin.readline()
PhantomMSD(sys.argv[1], n=int(sys.argv[2]), seed=0, resolution="tiny",
           wait=None if sys.argv[3] == "none" else float(sys.argv[3])).prepare()
"""

HOLD = """
import sys, time
from bundlezoo.data.locks import FolderLock
with FolderLock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(600)
"""


def python(code: str, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", code, *args], env=env, cwd=REPO, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def start_generation(target: Path, n: int, wait: str) -> subprocess.Popen:
    """A process that generates the phantom set at ``target`` once it is sent a line (after its imports)."""
    proc = python(GENERATE, str(target), str(n), wait)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def go(proc: subprocess.Popen) -> None:
    proc.stdin.write("go\n")
    proc.stdin.flush()


def wait_for(condition, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_second_phantom_generation_waits_for_the_first_or_refuses(tmp_path: Path) -> None:
    target = tmp_path / "phantom"
    first, refused, waiting = (start_generation(target, 12, wait) for wait in ("none", "0", "none"))
    go(first)
    wait_for(lambda: any(tmp_path.glob(".phantom.partial-*")), "the first run to start writing")
    go(refused)
    go(waiting)
    r_out, r_err = refused.communicate(timeout=300)
    w_out, w_err = waiting.communicate(timeout=300)
    f_out, f_err = first.communicate(timeout=300)
    assert first.returncode == 0 and waiting.returncode == 0, (f_err, w_err)
    assert "Generating" in f_out and "Generating" not in w_out, (f_out, w_out)  # generated once
    assert "waiting for another run (pid" in w_err and "generating synthetic phantom" in w_err, w_err
    # refusing: one line naming the folder and the holder, no traceback
    assert refused.returncode == 1, r_err
    assert r_err.strip().splitlines() == [r_err.strip()] and r_err.startswith("LockedError: "), r_err
    assert f"{target}: in use by another run (pid {first.pid} on " in r_err, r_err
    manifest = json.loads((target / "phantom_manifest.json").read_text())
    assert manifest["complete"] and manifest["n_train"] == 12
    assert not list(tmp_path.glob(".phantom*")), "lock file or partial folder left behind"


def test_a_killed_holder_frees_the_lock(tmp_path: Path) -> None:
    holder = python(HOLD, str(tmp_path / "out"))
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(LockedError, match=rf"in use by another run \(pid {holder.pid} on "):
        FolderLock(tmp_path / "out", wait=0).acquire()
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(timeout=30)
    with FolderLock(tmp_path / "out", wait=5):  # the kernel released it: no stale lock to clean by hand
        pass


def test_stale_partial_folders_are_removed_and_others_kept(tmp_path: Path) -> None:
    stale = tmp_path / ".phantom.partial-abc123"
    (stale / "imagesTr").mkdir(parents=True)
    (stale / "imagesTr" / "spleen_1.nii.gz").write_bytes(b"half a volume")
    other = tmp_path / ".other.partial-abc123"  # another target's: its own lock guards it
    other.mkdir()
    PhantomMSD(tmp_path / "phantom", n=2, resolution="tiny").prepare()
    assert not stale.exists() and other.exists()
    assert (tmp_path / "phantom" / "dataset.json").is_file()


def test_a_non_empty_folder_without_dataset_json_is_never_replaced(tmp_path: Path) -> None:
    target = tmp_path / "phantom"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    from bundlezoo.data.checks import InputDataError

    with pytest.raises(InputDataError, match="holds no dataset.json"):
        PhantomMSD(target, n=2, resolution="tiny").prepare()
    assert (target / "notes.txt").read_text() == "mine"
