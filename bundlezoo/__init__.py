"""Shared code for the bundles of this collection.

Sub-packages:
    data:       synthetic phantom engine, real-layout readers (MSD, BTCV), datalists and input checks.
    networks:   network definitions shared between bundles.
    losses:     loss functions.
    transforms: MONAI-style transforms the bundles need beyond MONAI's own.
    engines:    custom iteration logic (e.g. teacher-student training).
    metrics:    metrics beyond MONAI's own.

`bundlezoo` imports no bundle and no tool.
"""

__version__ = "0.1.0"
