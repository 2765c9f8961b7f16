"""Build a folder once, safely shared by runs: the embedded synthetic data sets are generated this way.

Concurrent runs on one bundle root (two trainings, a training and an evaluation, torchrun ranks) must neither write
the same folder at once nor see a half-written one. :func:`generate_once` therefore

* takes the folder's :class:`~bundlezoo.data.locks.FolderLock` (a second run waits, saying so on one line),
* removes partial folders left by interrupted runs (they cannot belong to a live one while the lock is held),
* writes into a temporary sibling ``.<name>.partial-*`` and renames it into place when complete,
* under ``torch.distributed`` lets rank 0 do it while the other ranks wait at a barrier.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .checks import InputDataError
from .locks import FolderLock, remove_stale_partials

__all__ = ["generate_once"]


def generate_once(target: str | os.PathLike, write: Callable[[Path], Any], *, marker: str,
                  description: str, wait: float | None = None) -> Path:
    """Make sure ``target`` holds a complete generated folder, writing it with ``write`` when it does not.

    Args:
        target: the folder to build.
        write: called with an empty temporary folder to fill; its content becomes ``target``.
        marker: a file that only a complete folder holds (e.g. ``"dataset.json"``).
        description: what is generated, for the progress line (e.g. ``"synthetic phantom data set (32 cases)"``).
        wait: seconds to wait for another run that holds the lock (``None``: as long as it takes; 0: refuse).

    Returns:
        ``target``.

    Raises:
        LockedError: another run still holds the lock after ``wait`` seconds.
    """
    target = Path(target).expanduser().absolute()
    dist = _dist()
    if dist is None or dist.get_rank() == 0:
        _generate_locked(target, write, marker, description, wait)
    if dist is not None:
        dist.barrier()
    return target


def _generate_locked(target: Path, write: Callable[[Path], Any], marker: str, description: str,
                     wait: float | None) -> None:
    if (target / marker).is_file():  # the common case, decided without touching the lock
        return
    with FolderLock(target, wait=wait, purpose=f"generating {description}") as lock:
        remove_stale_partials(target, lock)
        if (target / marker).is_file():  # the run we waited for made it
            return
        if target.exists() and (not target.is_dir() or any(target.iterdir())):
            raise InputDataError(target, f"exists but holds no {marker}, so it is not a complete generated "
                                         f"{description}; move it away (it is never overwritten)")
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
        try:
            print(f"Generating the {description} in {target}", flush=True)
            write(tmp)
            os.replace(tmp, target)  # an empty target folder is replaced; a non-empty one was refused above
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)


def _dist() -> Any:
    """The ``torch.distributed`` module when a process group is running, else None."""
    try:
        import torch.distributed as dist
    except ImportError:  # pragma: no cover - torch is a hard dependency
        return None
    return dist if dist.is_available() and dist.is_initialized() else None
