"""Synthetic phantom CT engine: procedural abdomen with BTCV organ labels (synthetic data, not patient data).

Example::

    from bundlezoo.data.phantom import generate_phantom, BTCV_LABELS
    ph = generate_phantom(3, resolution="fast", phase="portal_venous", orientation="LPS")
    ph.image  # int16 HU
    ph.label  # uint8 BTCV labels 0..13
"""

from .anatomy import BTCV_LABELS
from .appearance import LITERATURE_RANGES, PHASES
from .generator import GENERATOR_VERSION, Phantom, generate_phantom
from .geometry import ORIENTATIONS, RESOLUTIONS

__all__ = ["generate_phantom", "Phantom", "BTCV_LABELS", "GENERATOR_VERSION", "PHASES", "ORIENTATIONS",
           "RESOLUTIONS", "LITERATURE_RANGES"]
