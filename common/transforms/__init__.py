"""MONAI-style transforms the bundles need beyond MONAI's own."""

from .io import AtomicNibabelWriter, CheckedLoadImaged, LoadOriginald

__all__ = ["AtomicNibabelWriter", "CheckedLoadImaged", "LoadOriginald"]
