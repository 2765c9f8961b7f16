"""Difficulty check: an HU-window threshold + largest-connected-component spleen "segmenter".

If this baseline found the spleen, a network trained on the phantoms could learn a shortcut that fails on real CT.
The window is an oracle (the 5th-95th percentile of the smoothed HU inside the true spleen), so the score is an
upper bound for any fixed-window thresholding method.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["threshold_lcc_dice"]


def threshold_lcc_dice(image: np.ndarray, spleen: np.ndarray, smooth_vox: float = 1.0,
                       percentiles: tuple[float, float] = (5.0, 95.0)) -> float:
    """Dice of (largest connected component of voxels inside the spleen's own HU window) against ``spleen``.

    Args:
        image: HU volume.
        spleen: boolean spleen mask of the same shape.
        smooth_vox: Gaussian smoothing (voxels) before thresholding, to take noise out of the baseline's way.
        percentiles: window taken from the smoothed HU inside the true spleen.
    """
    spleen = np.asarray(spleen, bool)
    if not spleen.any():
        raise ValueError("no spleen voxels")
    sm = ndimage.gaussian_filter(image.astype(np.float32), smooth_vox)
    lo, hi = np.percentile(sm[spleen], percentiles)
    mask = (sm >= lo) & (sm <= hi)
    lab, n = ndimage.label(mask)
    if n == 0:
        return 0.0
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    pred = lab == int(np.argmax(sizes))
    inter = np.logical_and(pred, spleen).sum()
    return float(2.0 * inter / (pred.sum() + spleen.sum()))
