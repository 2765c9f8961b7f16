"""Custom iteration logic and handlers shared by the bundles."""

from .handlers import AtomicCheckpointSaver

__all__ = ["AtomicCheckpointSaver"]
