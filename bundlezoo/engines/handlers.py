"""Ignite handlers used by the bundles' engines."""

from __future__ import annotations

import os
from typing import Any

from monai.handlers import CheckpointSaver

__all__ = ["AtomicCheckpointSaver"]


class AtomicCheckpointSaver(CheckpointSaver):
    """MONAI ``CheckpointSaver`` whose files are written to a temporary name and renamed when complete.

    MONAI turns ignite's atomic saving off because ignite's temporary files are created with mode 0600; this
    class turns it back on and restores the usual read permissions after the rename, so a crash during saving
    never leaves a truncated ``model.pt``. All arguments are those of :class:`monai.handlers.CheckpointSaver`.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for ckpt in (self._final_checkpoint, self._key_metric_checkpoint, self._interval_checkpoint):
            if ckpt is not None:
                _make_atomic(ckpt.save_handler)


def _make_atomic(saver: Any) -> None:
    base = type(saver)

    class _AtomicSaver(base):  # type: ignore[valid-type, misc]
        def _save_func(self, checkpoint: Any, path: Any, func: Any) -> None:
            super()._save_func(checkpoint, path, func)
            os.chmod(path, 0o644)

    saver.__class__ = _AtomicSaver
    saver._atomic = True
