"""File locks for folders that several runs may share (generated data sets, a run's output folder).

A lock is ``fcntl.flock`` on a hidden lock file beside (or inside) the folder it guards. The kernel releases it
when its holder dies, ``kill -9`` included, so a lock is never stale: a lock file whose lock can be taken again
belongs to no one. That is also what tells a stale ``.partial-*`` folder from one being written: partial folders
are only created while holding the folder's lock, so once this process holds it, every partial folder of that
target is an orphan of a dead run.

POSIX only (Linux, macOS), like ``torch.distributed`` launchers the bundles use.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import socket
import sys
import time
from pathlib import Path
from types import TracebackType

from .checks import OneLineError

__all__ = ["FolderLock", "LockedError", "remove_stale_partials"]


class LockedError(OneLineError, RuntimeError):
    """Another live process holds the lock; the message is one line naming the folder and the holder."""


class FolderLock:
    """An exclusive, inter-process lock guarding ``folder``, used as a context manager.

    The lock file is ``<parent>/.<name>.lock`` (the folder itself may not exist yet, or be replaced by a rename
    while the lock is held); it holds the holder's pid, host and command line, shown to a process that finds the
    lock taken. The file is removed on release; a waiter that had opened the removed file notices and retries on
    the new one, so two holders never coexist.

    Args:
        folder: the folder to guard.
        wait: seconds to wait for a held lock; 0 refuses at once, ``None`` waits as long as it takes.
        purpose: what the lock is for, in the messages (e.g. ``"phantom generation"``).

    Raises:
        LockedError: (on entering) the lock is still held after ``wait`` seconds.

    Example::

        with FolderLock(out_dir, wait=0, purpose="inference output"):
            ...  # only this process writes into out_dir
    """

    poll_seconds = 0.2

    def __init__(self, folder: str | os.PathLike, *, wait: float | None = None, purpose: str = "writing") -> None:
        self.folder = Path(folder).expanduser().absolute()
        self.path = self.folder.parent / f".{self.folder.name}.lock"
        self.wait = wait
        self.purpose = purpose
        self._fd: int | None = None

    def acquire(self) -> FolderLock:
        """Take the lock (see the class docstring for waiting and refusing)."""
        if self._fd is not None:
            raise RuntimeError(f"{self.path} is already held by this FolderLock")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        deadline = None if self.wait is None else time.monotonic() + self.wait
        announced = False
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                os.close(fd)
                if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise
                holder = self.holder()
                if deadline is not None and time.monotonic() >= deadline:
                    raise LockedError(f"{self.folder}: in use by another run ({holder}) for {self.purpose}; "
                                      f"wait for it to finish or use another folder") from None
                if not announced:
                    print(f"{self.folder}: waiting for another run ({holder}) to finish {self.purpose}",
                          file=sys.stderr, flush=True)
                    announced = True
                time.sleep(self.poll_seconds)
                continue
            if _same_file(fd, self.path):
                break
            os.close(fd)  # the holder removed the file we had opened: lock the current one instead
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}: {' '.join(sys.argv)[:200]}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        """Remove the lock file and release the lock (removing first, while still holding it, is race-free)."""
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock now."""
        return self._fd is not None

    def holder(self) -> str:
        """Who holds the lock, as recorded in the lock file (best effort: it may be between owners)."""
        try:
            text = self.path.read_text().strip()
        except OSError:
            text = ""
        return text.split(":", 1)[0] if text else "unknown process"

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


def remove_stale_partials(target: str | os.PathLike, lock: FolderLock) -> list[Path]:
    """Delete the ``.<name>.partial-*`` siblings of ``target`` left by interrupted runs.

    Only call this while holding ``lock`` (the target's :class:`FolderLock`): partial folders are created under that
    lock, so none of them can belong to a live run.

    Returns:
        The folders removed.
    """
    if not lock.held:
        raise RuntimeError(f"remove_stale_partials({target}) needs its FolderLock held")
    target = Path(target).expanduser().absolute()
    stale = sorted(target.parent.glob(f".{target.name}.partial-*")) if target.parent.is_dir() else []
    for p in stale:
        print(f"{p}: removing the partial folder of an interrupted run", file=sys.stderr, flush=True)
        shutil.rmtree(p, ignore_errors=True)
    return stale


def _same_file(fd: int, path: Path) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    fst = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (fst.st_dev, fst.st_ino)
