"""Finetuning: load pretrained weights into a network by name and shape, and fail when too little of it was loaded.

MONAI's ``CheckpointLoader(strict=False)`` skips every key that does not match and says nothing, so a checkpoint
whose names differ (an SSL encoder ``swinViT.*`` meant for ``backbone.*``, a DDP ``module.*`` save) leaves the network
at its random initialisation. :class:`FinetuneLoader` renames keys by prefix, loads the tensors whose name and shape
match, logs what it matched, missed and skipped, and raises one ``InputDataError`` line naming the file when less than
``min_loaded_fraction`` of the network's values were loaded.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events

from ..data.checks import InputDataError
from .checkpoint_io import load_checkpoint, state_dict_in, unwrap

__all__ = ["FinetuneLoader", "LoadReport", "map_keys", "match_state"]

logger = logging.getLogger(__name__)


@dataclass
class LoadReport:
    """What :func:`match_state` found: key lists and the share of the target's values that fit."""

    matched: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # in the network, not in the (mapped) checkpoint
    unexpected: list[str] = field(default_factory=list)  # in the (mapped) checkpoint, not in the network
    shape_mismatched: list[str] = field(default_factory=list)  # in both, different shapes: not loaded
    loaded_values: int = 0
    total_values: int = 0

    @property
    def loaded_fraction(self) -> float:
        """Loaded share of the network's state (parameters and buffers), counted in values, not tensors: a
        missing convolution kernel weighs more than a missing bias."""
        return self.loaded_values / self.total_values if self.total_values else 0.0

    def summary(self) -> str:
        """One line of counts, with the first few names of each kind of miss."""
        def some(keys: list[str]) -> str:
            return f" ({', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''})" if keys else ""

        total = len(self.matched) + len(self.missing) + len(self.shape_mismatched)
        return (f"loaded {len(self.matched)}/{total} tensors, {self.loaded_fraction:.1%} of the network's values; "
                f"missing {len(self.missing)}{some(self.missing)}, unexpected {len(self.unexpected)}"
                f"{some(self.unexpected)}, shape-mismatched {len(self.shape_mismatched)}{some(self.shape_mismatched)}")


def map_keys(state: dict[str, torch.Tensor], key_map: dict[str, str] | None = None,
             key_filter: str | None = None) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Rename checkpoint keys by prefix after keeping only those that match ``key_filter``.

    Args:
        state: the checkpoint's state dict.
        key_map: ``{old_prefix: new_prefix}``; each key takes the longest matching prefix (``{"module.": ""}``
            strips a DDP prefix, ``{"swinViT.": "backbone."}`` moves an encoder). Keys matching none stay as they are.
        key_filter: regular expression (``re.search``) on the checkpoint's own names; keys that do not match are
            dropped before renaming (e.g. ``"^swinViT\\."`` leaves out an SSL checkpoint's projection heads).

    Returns:
        The renamed state dict, and the prefixes of ``key_map`` that matched no key (a typo to report).
    """
    key_map = dict(key_map or {})
    prefixes = sorted(key_map, key=len, reverse=True)
    pattern = re.compile(key_filter) if key_filter else None
    used: set[str] = set()
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if pattern is not None and not pattern.search(key):
            continue
        prefix = next((p for p in prefixes if key.startswith(p)), None)
        if prefix is not None:
            used.add(prefix)
            key = key_map[prefix] + key[len(prefix):]
        out[key] = value
    return out, [p for p in key_map if p not in used]


def match_state(network: torch.nn.Module,
                state: dict[str, torch.Tensor]) -> tuple[LoadReport, dict[str, torch.Tensor]]:
    """Which tensors of ``state`` fit ``network`` (unwrapped from DDP) by name and shape; nothing is loaded yet.

    Args:
        network: the target network.
        state: the (already renamed) checkpoint state dict.

    Returns:
        The report, and the state dict of the fitting tensors (for ``load_state_dict(..., strict=False)``).
    """
    target = unwrap(network).state_dict()
    report = LoadReport(total_values=sum(t.numel() for t in target.values()))
    loadable: dict[str, torch.Tensor] = {}
    for key, tensor in target.items():
        if key not in state:
            report.missing.append(key)
        elif tuple(state[key].shape) != tuple(tensor.shape):
            report.shape_mismatched.append(key)
        else:
            loadable[key] = state[key]
            report.matched.append(key)
            report.loaded_values += tensor.numel()
    report.unexpected = [k for k in state if k not in target]
    return report, loadable


class FinetuneLoader:
    """Ignite handler: at ``STARTED``, load pretrained weights into ``network`` by name and shape, or fail.

    A model-zoo train config puts it first in ``train#handlers`` with ``"_disabled_": "$not @finetune"``. Accepts a
    plain state dict or a checkpoint holding one under ``checkpoint_key`` (``{"model": state_dict}``, what the
    bundles save); the file is read with ``torch.load(weights_only=True)``.

    Args:
        load_path: the checkpoint file.
        network: the network to initialise (DDP-wrapped or not).
        key_map: prefix renames applied to the checkpoint's keys, see :func:`map_keys`. A prefix that matches no
            key is an error (a typo would otherwise load nothing under that prefix).
        key_filter: regular expression selecting the checkpoint keys to use, see :func:`map_keys`.
        min_loaded_fraction: the least share of the network's values (parameters and buffers) that must be loaded.
            0.5 by default: finetuning the same network loads 1.0, a pretrained encoder inside a larger network
            loads its own share (set the bundle's measured value), a wrong file or key map loads about 0.
        map_location: passed to ``torch.load``.
        checkpoint_key: the key of the state dict inside a checkpoint dict.

    Example::

        FinetuneLoader("ssl.pt", net, key_map={"swinViT.": "backbone."}, key_filter=r"^swinViT\\.",
                       min_loaded_fraction=0.4).load()
    """

    def __init__(
        self,
        load_path: str | os.PathLike,
        network: torch.nn.Module,
        key_map: dict[str, str] | None = None,
        key_filter: str | None = None,
        min_loaded_fraction: float = 0.5,
        map_location: Any = "cpu",
        checkpoint_key: str = "model",
    ) -> None:
        if not 0.0 <= min_loaded_fraction <= 1.0:
            raise ValueError(f"min_loaded_fraction must be in [0, 1], got {min_loaded_fraction}")
        self.load_path = Path(load_path)
        self.network = network
        self.key_map = dict(key_map or {})
        self.key_filter = key_filter
        self.min_loaded_fraction = min_loaded_fraction
        self.map_location = map_location
        self.checkpoint_key = checkpoint_key

    def attach(self, engine: Engine) -> None:
        """Load when ``engine`` starts (before any other ``STARTED`` handler attached after this one)."""
        engine.add_event_handler(Events.STARTED, lambda _: self.load())

    def load(self) -> LoadReport:
        """Load the checkpoint into the network; raise :class:`InputDataError` naming the file when it does not fit."""
        checkpoint = load_checkpoint(self.load_path, self.map_location)
        state = state_dict_in(checkpoint, self.checkpoint_key)
        if state is None:
            keys = list(checkpoint)[:5] if isinstance(checkpoint, dict) else type(checkpoint).__name__
            raise InputDataError(self.load_path, f"no state dict in the checkpoint: neither a dict of tensors nor one "
                                                 f"under '{self.checkpoint_key}' (found {keys})")
        mapped, unused = map_keys(state, self.key_map, self.key_filter)
        if unused:
            starts = sorted({k.split(".")[0] + "." for k in state})[:6]
            raise InputDataError(self.load_path, f"finetune key_map prefixes {unused} match no key of the checkpoint "
                                                 f"(its keys start with {starts})")
        report, loadable = match_state(self.network, mapped)
        logger.info(f"finetune from {self.load_path}: {report.summary()}")
        if report.loaded_fraction < self.min_loaded_fraction:
            raise InputDataError(self.load_path, f"finetune {report.summary()}; below min_loaded_fraction "
                                                 f"{self.min_loaded_fraction:g}: check the file, the key map and "
                                                 f"the network definition")
        unwrap(self.network).load_state_dict(loadable, strict=False)
        return report
