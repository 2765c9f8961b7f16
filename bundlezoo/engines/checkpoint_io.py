"""Checkpoint files: atomic writes, weights-only reads that name the file, and random-number states as tensors.

Every checkpoint holds tensors and plain containers only, so it loads with ``torch.load(..., weights_only=True)``;
random-number generator states (python, numpy, torch, CUDA, and the private generators of MONAI's random
transforms) are converted to that form here.
"""

from __future__ import annotations

import io
import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.checks import InputDataError
from ..data.io import atomic_write_bytes

__all__ = [
    "save_checkpoint",
    "load_checkpoint",
    "state_dict_of",
    "state_dict_in",
    "unwrap",
    "is_main_process",
    "rng_state",
    "restore_rng_state",
]


def save_checkpoint(obj: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``obj`` with ``torch.save`` to a temporary name beside ``path``, fsync it, then ``os.replace`` it.

    The old file stays whole until the replace, so a crash at any moment leaves either the old or the new file,
    never none and never a truncated one.

    Args:
        obj: tensors and plain containers only, so that :func:`load_checkpoint` (weights only) reads it back.
        path: final file name.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> Any:
    """``torch.load(path, weights_only=True)``; a missing or unloadable file is one :class:`InputDataError` line.

    Args:
        path: the checkpoint file.
        map_location: passed to ``torch.load``.
    """
    path = Path(path)
    if not path.is_file():
        raise InputDataError(path, "checkpoint file not found")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises pickle, zip and runtime errors alike for a bad file
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputDataError(path, f"cannot be loaded with torch.load(weights_only=True): {first}") from e


def unwrap(network: torch.nn.Module) -> torch.nn.Module:
    """The module inside ``DataParallel`` / ``DistributedDataParallel``, so saved keys carry no ``module.`` prefix."""
    return network.module if isinstance(network, (torch.nn.DataParallel, torch.nn.parallel.DistributedDataParallel)) \
        else network


def state_dict_of(network: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The unwrapped network's state dict (what ``models/model.pt`` holds)."""
    return unwrap(network).state_dict()


def state_dict_in(checkpoint: Any, checkpoint_key: str = "model") -> dict[str, torch.Tensor] | None:
    """The state dict of a checkpoint: ``checkpoint[checkpoint_key]``, or the checkpoint itself when it is a plain
    state dict (every value a tensor); ``None`` when it is neither."""
    if not isinstance(checkpoint, dict):
        return None
    inner = checkpoint.get(checkpoint_key)
    if isinstance(inner, dict) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
        return inner
    if checkpoint and all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        return checkpoint
    return None


def is_main_process() -> bool:
    """True outside ``torch.distributed`` and on its rank 0: the one process that writes checkpoints."""
    return not (torch.distributed.is_available() and torch.distributed.is_initialized()) \
        or torch.distributed.get_rank() == 0


def _transform_random_states(root: Any) -> Iterator[np.random.RandomState]:
    """The distinct ``np.random.RandomState`` objects of the MONAI transforms reachable from ``root``, in a fixed
    order (construction order of the chain), so a rebuilt chain from the same config yields them in the same order."""
    from monai.transforms import Randomizable, Transform

    seen: set[int] = set()
    stack = [root]
    while stack:
        obj = stack.pop(0)
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, (list, tuple)):
            stack[:0] = list(obj)
            continue
        if not isinstance(obj, (Transform, Randomizable)):
            continue
        r = getattr(obj, "R", None)
        if isinstance(r, np.random.RandomState) and id(r) not in seen:
            seen.add(id(r))
            yield r
        stack[:0] = list(vars(obj).values())


def _numpy_state(state: tuple) -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = state
    return {"name": name, "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}


def _numpy_tuple(state: dict[str, Any]) -> tuple:
    return (state["name"], state["keys"].cpu().numpy().astype(np.uint32), state["pos"], state["has_gauss"],
            state["cached_gaussian"])


def rng_state(transforms: Any = None) -> dict[str, Any]:
    """Every random-number state a training epoch draws from, as tensors and plain containers.

    Args:
        transforms: a MONAI transform chain (e.g. the training dataset's ``transform``); its transforms keep private
            ``np.random.RandomState`` generators (seeded once by MONAI's ``DataLoader``), saved in chain order.
    """
    return {
        "python": random.getstate(),
        "numpy": _numpy_state(np.random.get_state()),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "transforms": [_numpy_state(r.get_state()) for r in _transform_random_states(transforms)],
    }


def restore_rng_state(state: dict[str, Any], transforms: Any = None) -> list[str]:
    """Set the generators saved by :func:`rng_state`; returns what could not be restored (empty when all was).

    Args:
        state: the dict :func:`rng_state` returned (after a weights-only load).
        transforms: the transform chain to restore, built from the same config as the one saved.
    """
    problems: list[str] = []
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np.random.set_state(_numpy_tuple(state["numpy"]))
    torch.set_rng_state(state["torch"].cpu())
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    elif state["cuda"]:
        problems.append(f"CUDA generators ({len(state['cuda'])} saved, {torch.cuda.device_count()} devices now)")
    generators = list(_transform_random_states(transforms))
    if len(generators) == len(state["transforms"]):
        for r, s in zip(generators, state["transforms"]):
            r.set_state(_numpy_tuple(s))
    else:
        problems.append(f"transform generators ({len(state['transforms'])} saved, {len(generators)} in the chain)")
    return problems
