"""MONAI-style transforms the bundles need beyond MONAI's own."""

from .compat import SafeSpacingd
from .io import AtomicNibabelWriter, CheckedLoadImaged, LoadOriginald

__all__ = ["AtomicNibabelWriter", "CheckedLoadImaged", "LoadOriginald", "SafeSpacingd"]
