"""Loading with input checks, and atomic image writing."""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
from monai.data import NibabelWriter
from monai.transforms import LoadImaged, MapTransform

from ..data.checks import InputDataError, check_array, check_label_values, one_line
from ..data.io import atomic_path

__all__ = ["CheckedLoadImaged", "AtomicNibabelWriter", "LoadOriginald"]


class CheckedLoadImaged(LoadImaged):
    """``LoadImaged`` that turns unreadable or invalid inputs into one-line :class:`InputDataError` s.

    Besides MONAI's loading it checks, per case: the file (or DICOM folder) can be read; every key has at most one
    channel; float voxels are finite; label keys hold only ``label_values``; all keys share one spatial shape.

    Args:
        keys: keys to load (paths in the data dictionary).
        label_keys: the subset of ``keys`` that are label maps.
        label_values: allowed label values; ``None`` skips the value check.
        kwargs: passed to :class:`monai.transforms.LoadImaged` (``reader``, ``image_only``, ...).

    Example::

        CheckedLoadImaged(keys=["image", "label"], label_keys=["label"], label_values=[0, 1])
    """

    def __init__(
        self,
        keys: Sequence[str] | str,
        label_keys: Sequence[str] | str = (),
        label_values: Sequence[int] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(keys=keys, **kwargs)
        self.label_keys = {label_keys} if isinstance(label_keys, str) else set(label_keys)
        self.label_values = None if label_values is None else [int(v) for v in label_values]

    def __call__(self, data: Mapping[Hashable, Any], reader: Any = None) -> dict[Hashable, Any]:
        sources = {k: data.get(k) for k in self.keys if k in data}
        try:
            out = super().__call__(data, reader)
        except InputDataError:
            raise
        except Exception as e:  # report the first source that fails, alone, so the message names the right file
            bad = self._first_unreadable(sources)
            raise InputDataError(bad, f"cannot be read ({type(e).__name__}: {one_line(e)})") from e
        shapes: dict[str, tuple[int, ...]] = {}
        for key, src in sources.items():
            if key not in out:
                continue
            arr = np.asarray(out[key])
            spatial = arr.shape[:3] if not self.ensure_channel_first_flag else arr.shape[1:4]
            if arr.ndim > 3 and not self.ensure_channel_first_flag:
                # loaded channel-last (NIfTI 4D): move channels first for the check
                arr = np.moveaxis(arr.reshape(*arr.shape[:3], -1), -1, 0)
            check_array(src, arr, max_channels=1)
            if key in self.label_keys and self.label_values is not None:
                check_label_values(src, arr, self.label_values)
            shapes[key] = tuple(int(s) for s in spatial)
        if len(set(shapes.values())) > 1:
            detail = ", ".join(f"{k} {s}" for k, s in shapes.items())
            raise InputDataError(next(iter(sources.values())), f"image and label shapes differ: {detail}")
        return out

    @property
    def ensure_channel_first_flag(self) -> bool:
        return bool(getattr(self._loader, "ensure_channel_first", False))

    def _first_unreadable(self, sources: Mapping[str, Any]) -> Any:
        for src in sources.values():
            try:
                self._loader(src)
            except Exception:
                return src
        return next(iter(sources.values()), "<unknown input>")


class LoadOriginald(MapTransform):
    """Replace each key's (resampled) data with the file it was loaded from, read again in its own space.

    Used in evaluation so a metric compares the inverted prediction with the original label voxel for voxel,
    instead of with a label that went through resampling and back. The source file is taken from the key's
    ``filename_or_obj`` metadata.

    Args:
        keys: keys whose data are MetaTensors loaded from files.
        kwargs: passed to :class:`CheckedLoadImaged` (e.g. ``label_values``).
    """

    def __init__(self, keys: Sequence[str] | str, **kwargs: Any) -> None:
        super().__init__(keys)
        kwargs.setdefault("ensure_channel_first", True)
        kwargs.setdefault("image_only", True)
        self._kwargs = kwargs

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            source = getattr(d[key], "meta", {}).get("filename_or_obj")
            if not source:
                raise ValueError(f"LoadOriginald: '{key}' carries no filename_or_obj metadata to reload from")
            loader = CheckedLoadImaged(keys=key, label_keys=key, **self._kwargs)
            d[key] = loader({key: source})[key]
        return d


class AtomicNibabelWriter(NibabelWriter):
    """``NibabelWriter`` that writes to a temporary name in the target folder, then renames.

    A crash or a full disk never leaves a half-written NIfTI under the final name. Use it with
    ``SaveImaged(writer=AtomicNibabelWriter)``.
    """

    def write(self, filename: str | os.PathLike, verbose: bool = False, **obj_kwargs: Any) -> None:
        with atomic_path(filename) as tmp:
            super().write(tmp, verbose=verbose, **obj_kwargs)
