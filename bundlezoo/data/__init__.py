"""Data: the synthetic phantom engine, real-layout readers (MSD, BTCV), datalists and input checks.

A bundle's data come from *data-source* components its config names: a reader of a real layout (e.g.
:class:`MSDFolder`) and, for the out-of-the-box default, a generator that makes a synthetic folder in that layout on
first use (e.g. :class:`PhantomMSD`, whose ``prepare()`` gives the folder the reader reads).
"""

from .msd import MSDFolder, PhantomMSD

__all__ = ["MSDFolder", "PhantomMSD"]
