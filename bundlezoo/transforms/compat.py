"""Fixes for MONAI behaviours that break the bundles inside other applications (MONAI Label)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, MutableMapping
from typing import Any

from monai.transforms import Spacingd

__all__ = ["SafeSpacingd"]


class SafeSpacingd(Spacingd):
    """``Spacingd`` that leaves non-dictionary ``<key>_*`` entries of the data alone.

    After resampling a NIfTI-loaded key, MONAI >= 1.5.1 calls ``d[k].update(meta)`` on *every* data entry whose name
    starts with ``"<key>_"``, assuming they are metadata dictionaries. MONAI Label puts the request's image path in a
    string entry ``image_path``, so ``Spacingd(keys="image")`` fails there with ``'str' object has no attribute
    'update'``. This subclass sets such non-mapping entries aside for the call and puts them back unchanged;
    metadata dictionaries (``image_meta_dict``) are still updated as MONAI does. Arguments, resampling and
    ``inverse`` are those of :class:`monai.transforms.Spacingd`.

    Example::

        SafeSpacingd(keys=["image", "label"], pixdim=(1.5, 1.5, 2.0), mode=("bilinear", "nearest"))
    """

    def __call__(self, data: Mapping[Hashable, Any], lazy: bool | None = None) -> dict[Hashable, Any]:
        prefixes = tuple(f"{k}_" for k in self.keys if isinstance(k, str))
        aside = {
            k: v
            for k, v in data.items()
            if isinstance(k, str) and k.startswith(prefixes) and not isinstance(v, MutableMapping)
        }
        d = super().__call__({k: v for k, v in data.items() if k not in aside}, lazy=lazy)
        d.update(aside)
        return d
