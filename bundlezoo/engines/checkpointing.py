"""The checkpoints of a training run: the best model, the latest full state for resuming, and who may replace them.

``ckpt_dir`` holds two files, each written to a temporary name, fsync'd and ``os.replace``'d (never deleted first):

- ``model.pt`` — the plain state dict of the best validation epoch (:class:`BestModelSaver`, a validation
  handler); what evaluation, inference, ``ckpt_export``, MONAI Label and packaging read.
- ``latest.pt`` — everything an interrupted run needs to continue (:class:`RunCheckpoint`, a training handler):
  network, optimizer, learning-rate scheduler, AMP scaler, epoch and iteration, best metric so far, and the states
  of every random-number generator, written after each epoch. Tensors and plain containers only.

A run writes into ``ckpt_dir`` only when it may (checked before the first step): the folder holds neither file, or
the run resumes (``resume=True``), or it starts from the very weights in ``model.pt`` (finetuning in place, MONAI
Label's training), or ``overwrite=True``. Otherwise it stops with one line naming the file, so a new run never
replaces released or earlier weights with its first, poor validation epoch. While a run trains, its main process
holds a lock on ``ckpt_dir`` (:class:`~bundlezoo.data.locks.FolderLock`, released at the end or when the process
dies), so a second run started on the same folder stops at once with one ``LockedError`` line instead of racing it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events

from ..data.checks import InputDataError
from ..data.locks import FolderLock
from .checkpoint_io import (
    is_main_process,
    load_checkpoint,
    restore_rng_state,
    rng_state,
    save_checkpoint,
    state_dict_in,
    state_dict_of,
    unwrap,
)

__all__ = ["BestModelSaver", "RunCheckpoint"]

logger = logging.getLogger(__name__)

_LATEST_KEYS = ("model", "optimizer", "trainer", "rng")


class BestModelSaver:
    """Validation handler: write the network's state dict to ``save_dir/filename`` when the key metric improves.

    The evaluator (a MONAI ``Workflow``) already tracks its best key metric and the epoch of it
    (``state.best_metric``, ``state.best_metric_epoch``); this handler saves when that epoch is the current one, so a
    resumed run (whose best metric :class:`RunCheckpoint` restores) replaces ``model.pt`` only on a real improvement.
    Only the main process writes; a DDP-wrapped network is saved without its ``module.`` prefix.

    Args:
        save_dir: the checkpoint folder (``ckpt_dir``).
        network: the network whose weights are saved.
        filename: the file name in ``save_dir``.
    """

    def __init__(self, save_dir: str | os.PathLike, network: torch.nn.Module, filename: str = "model.pt") -> None:
        self.path = Path(save_dir) / filename
        self.network = network

    def attach(self, engine: Engine) -> None:
        """Check after every validation epoch (after the evaluator has compared its metric)."""
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        if not is_main_process() or engine.state.best_metric_epoch != engine.state.epoch:
            return
        # a plain state dict, like model-zoo bundles: MONAI's ckpt_export reads no wrapper key by default
        save_checkpoint(state_dict_of(self.network), self.path)
        logger.info(f"saved {self.path}: best {engine.state.key_metric_name} {engine.state.best_metric:.4f} "
                    f"at epoch {engine.state.epoch}")


class RunCheckpoint:
    """Training handler: guard ``ckpt_dir`` at the start, resume from ``latest.pt``, save ``latest.pt`` every epoch.

    Put it in ``train#handlers`` after the finetune loader and before ``ValidationHandler``: at ``STARTED`` it checks
    that the run may write into ``ckpt_dir`` (see the module docstring) and, with ``resume=True`` and a
    ``latest.pt`` present, restores the network, optimizer, scheduler, AMP scaler, epoch/iteration, the best
    validation metric and the random-number generators, so the run goes on with the next epoch as if never stopped.
    The end-of-epoch save is registered when the run starts, after every other handler, so ``latest.pt`` holds the
    epoch's validation result and learning-rate step. Every process restores; only the main one writes, so under DDP
    every rank restores rank 0's generator states (the ranks are seeded alike, so that is what they started from).

    Args:
        ckpt_dir: the checkpoint folder.
        network: the trained network (DDP-wrapped or not).
        optimizer: its optimizer.
        lr_scheduler: the learning-rate scheduler stepped by the run, if any.
        validator: the evaluator whose best key metric decides when ``model.pt`` is replaced; restored on resume.
        resume: continue from ``ckpt_dir/latest.pt`` when it exists (a new run starts when it does not).
        overwrite: let a new run replace a ``model.pt`` / ``latest.pt`` it did not write.
        model_filename: the best-model file :class:`BestModelSaver` writes (protected by the same rule).
        latest_filename: the resume checkpoint's file name.
        map_location: where ``latest.pt`` is loaded (the optimizer state follows its parameters' device).
    """

    def __init__(
        self,
        ckpt_dir: str | os.PathLike,
        network: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        lr_scheduler: Any = None,
        validator: Engine | None = None,
        resume: bool = False,
        overwrite: bool = False,
        model_filename: str = "model.pt",
        latest_filename: str = "latest.pt",
        map_location: Any = "cpu",
    ) -> None:
        self.ckpt_dir = Path(ckpt_dir)
        self.network = network
        self.optimizer = optimizer
        self.lr_scheduler = lr_scheduler
        self.validator = validator
        self.resume = resume
        self.overwrite = overwrite
        self.model_path = self.ckpt_dir / model_filename
        self.latest_path = self.ckpt_dir / latest_filename
        self.map_location = map_location
        self._lock = FolderLock(self.ckpt_dir, wait=0, purpose="training")

    def attach(self, engine: Engine) -> None:
        """Lock ``ckpt_dir``, guard and resume when ``engine`` starts; unlock when it completes."""
        engine.add_event_handler(Events.STARTED, self.start)
        engine.add_event_handler(Events.COMPLETED, lambda _: self._lock.release())
        # a run that fails in this process (a notebook, a refused start) must not keep the folder locked; re-raising
        # keeps ignite's behaviour of propagating the error (handlers of EXCEPTION_RAISED otherwise swallow it)
        engine.add_event_handler(Events.EXCEPTION_RAISED, self._release_and_raise)

    def _release_and_raise(self, engine: Engine, e: Exception) -> None:
        self._lock.release()
        raise e

    # ------------------------------------------------------------------------------------------------------------
    # start: guard, resume

    def start(self, engine: Engine) -> None:
        """Resume or check that this new run may write into ``ckpt_dir``; then register the end-of-epoch save."""
        if is_main_process() and not self._lock.held:
            self._lock.acquire()
        if self.resume and self.latest_path.is_file():
            self.restore(engine)
        else:
            if self.resume:
                logger.info(f"resume: no {self.latest_path}, starting a new run")
            self._check_may_write()
        if is_main_process():
            for stale in [*self.ckpt_dir.glob(f".{self.model_path.name}.*.tmp"),
                          *self.ckpt_dir.glob(f".{self.latest_path.name}.*.tmp")]:
                stale.unlink(missing_ok=True)  # left by a process killed while writing; the real files are whole
        if not engine.has_event_handler(self.save, Events.EPOCH_COMPLETED):
            engine.add_event_handler(Events.EPOCH_COMPLETED, self.save)

    def _check_may_write(self) -> None:
        existing = [p for p in (self.model_path, self.latest_path) if p.is_file()]
        if not existing:
            return
        if self.overwrite:
            logger.warning(f"overwrite: this run will replace {', '.join(map(str, existing))}")
            return
        if self.model_path.is_file() and self._network_holds(self.model_path):
            logger.info(f"this run starts from {self.model_path} and will replace it with its best validation epoch")
            return
        raise InputDataError(existing[0], "exists and this run did not write it: pass --resume true to continue the "
                                          "run that wrote it, --overwrite true to replace it, or choose another "
                                          "--ckpt_dir (or --bundle_root)")

    def _network_holds(self, path: Path) -> bool:
        saved = state_dict_in(load_checkpoint(path, "cpu"))
        current = state_dict_of(self.network)
        return saved is not None and saved.keys() == current.keys() and all(
            torch.equal(saved[k], current[k].detach().cpu()) for k in saved)

    def restore(self, engine: Engine) -> None:
        """Load ``latest.pt`` into the network, optimizer, scheduler, scaler, engine states and generators."""
        ckpt = load_checkpoint(self.latest_path, self.map_location)
        if not isinstance(ckpt, dict) or any(k not in ckpt for k in _LATEST_KEYS):
            raise InputDataError(self.latest_path, f"not a resume checkpoint: needs the keys {list(_LATEST_KEYS)}")
        try:
            unwrap(self.network).load_state_dict(ckpt["model"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
            if self.lr_scheduler is not None and ckpt.get("lr_scheduler") is not None:
                self.lr_scheduler.load_state_dict(ckpt["lr_scheduler"])
            scaler = getattr(engine, "scaler", None)
            if scaler is not None and ckpt.get("scaler") is not None:
                scaler.load_state_dict(ckpt["scaler"])
        except (RuntimeError, ValueError, KeyError) as e:
            first = str(e).strip().splitlines()[0]
            raise InputDataError(self.latest_path, f"does not fit this run's network or optimizer: {first}") from e

        saved = ckpt["trainer"]
        engine.state.epoch = int(saved["epoch"])
        if engine.state.epoch_length not in (None, saved["epoch_length"]):
            logger.warning(f"resume: {saved['epoch_length']} iterations per epoch then, {engine.state.epoch_length} "
                           "now (different data?); counting iterations from the epoch")
            engine.state.iteration = engine.state.epoch * engine.state.epoch_length
        else:
            engine.state.iteration = int(saved["iteration"])
        engine.state.best_metric, engine.state.best_metric_epoch = saved["best_metric"], saved["best_metric_epoch"]
        if self.validator is not None and ckpt.get("validator") is not None:
            self.validator.state.best_metric = ckpt["validator"]["best_metric"]
            self.validator.state.best_metric_epoch = ckpt["validator"]["best_metric_epoch"]
        problems = restore_rng_state(ckpt["rng"], _transforms_of(engine))
        if problems:
            logger.warning(f"resume: could not restore {'; '.join(problems)}; the run goes on, not bit-identical")
        done = "the run had already finished; nothing to train" if engine.state.epoch >= engine.state.max_epochs \
            else f"continuing with epoch {engine.state.epoch + 1}/{engine.state.max_epochs}"
        logger.info(f"resumed from {self.latest_path}: {engine.state.epoch} epochs done; {done}")

    # ------------------------------------------------------------------------------------------------------------
    # end of epoch: save

    def save(self, engine: Engine) -> None:
        """Write ``latest.pt`` (main process only)."""
        if not is_main_process():
            return
        scaler = getattr(engine, "scaler", None)
        validator = None if self.validator is None else {
            "best_metric": self.validator.state.best_metric,
            "best_metric_epoch": self.validator.state.best_metric_epoch,
        }
        save_checkpoint({
            "model": state_dict_of(self.network),
            "optimizer": self.optimizer.state_dict(),
            "lr_scheduler": None if self.lr_scheduler is None else self.lr_scheduler.state_dict(),
            "scaler": None if scaler is None else scaler.state_dict(),
            "trainer": {
                "epoch": engine.state.epoch,
                "iteration": engine.state.iteration,
                "epoch_length": engine.state.epoch_length,
                "max_epochs": engine.state.max_epochs,
                "best_metric": engine.state.best_metric,
                "best_metric_epoch": engine.state.best_metric_epoch,
            },
            "validator": validator,
            "rng": rng_state(_transforms_of(engine)),
        }, self.latest_path)


def _transforms_of(engine: Engine) -> Any:
    """The training data's transform chain (whose random transforms keep their own generators), if any."""
    return getattr(getattr(getattr(engine, "data_loader", None), "dataset", None), "transform", None)
