"""MONAI-style transforms the bundles need beyond MONAI's own."""

from .io import AtomicNibabelWriter, CheckedLoadImaged

__all__ = ["AtomicNibabelWriter", "CheckedLoadImaged"]
