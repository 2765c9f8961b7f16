"""Optional focal lesions (hypodense, hyperdense, cystic) in liver, spleen and kidneys, with their own label map."""

from __future__ import annotations

import numpy as np

from .appearance import T
from .canvas import Canvas, allowed_lut, ellipsoid_f

__all__ = ["LESION_TYPES", "paint_lesions"]

# lesion label values: 0 none, 1 hypodense solid, 2 hyperdense (hypervascular), 3 cyst
LESION_TYPES = {1: "hypodense", 2: "hyperdense", 3: "cyst"}
_TISSUE = {1: T.LESION_HYPO, 2: T.LESION_HYPER, 3: T.LESION_CYST}
_HOSTS = {  # organ label -> parenchymal tissues a lesion may replace
    6: (T.LIVER, T.HEPATIC_VEIN, T.LIVER_PORTAL_BRANCH),
    1: (T.SPLEEN, T.SPLEEN_DARK),
    2: (T.KIDNEY_CORTEX, T.KIDNEY_MEDULLA),
    3: (T.KIDNEY_CORTEX, T.KIDNEY_MEDULLA),
}


def paint_lesions(cv: Canvas, rng: np.random.Generator, max_lesions: int = 5) -> list[dict]:
    """Paint 1..max_lesions lesions inside host organs; organ labels are kept (as in BTCV), ``cv.lesion`` is set.

    Returns a list of plain dicts (organ label, type, centre in mm, radius in mm) for the phantom's meta.
    """
    out: list[dict] = []
    n = int(rng.integers(1, max_lesions + 1))
    for _ in range(n):
        organ = int(rng.choice([6, 1, 2, 3], p=[0.6, 0.15, 0.125, 0.125]))
        kind = int(rng.choice([1, 2, 3], p=[0.5, 0.25, 0.25]))
        radius = float(rng.uniform(4.0, 18.0 if organ == 6 else 12.0))
        idx = np.flatnonzero(cv.lab == organ)
        if idx.size == 0:
            continue
        i, j, k = np.unravel_index(idx[int(rng.integers(idx.size))], cv.lab.shape)
        c = np.array([cv.xs[i], cv.ys[j], cv.zs[k]], float)
        axes = radius * rng.uniform(0.8, 1.2, size=3)
        bx = cv.box(c - axes.max(), c + axes.max())
        if bx is None:
            continue
        sl, X, Y, Z = bx
        f = ellipsoid_f(X, Y, Z, c, axes)
        m = cv.paint(sl, f > 0, _TISSUE[kind], None, allowed_lut(_HOSTS[organ]), lesion=kind)
        if m.any():
            out.append({"organ": organ, "type": LESION_TYPES[kind], "center_mm": c.round(1).tolist(),
                        "radius_mm": round(radius, 1)})
    return out
