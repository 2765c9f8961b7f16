"""Scan geometry of a phantom: voxel spacing, matrix, field of view, slice thickness, orientation and affine.

Conventions: world coordinates are RAS+ in mm (nibabel / NIfTI), see ``RAS_NOTE``. The anatomy is built in the same
axes (x towards the patient's right, y anterior, z superior) with its origin at the centre of the vertebral bodies at
the height of the right diaphragm dome; ``world = anatomy + offset`` (table position).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from nibabel.orientations import apply_orientation, axcodes2ornt, inv_ornt_aff, ornt_transform

__all__ = ["Grid", "RESOLUTIONS", "ORIENTATIONS", "sample_grid", "reorient"]

RAS_NOTE = """In nibabel's RAS+ convention the x axis increases from the patient's left to the patient's Right, y from
posterior to Anterior and z from inferior to Superior. The liver (patient's right) therefore has larger x than the
spleen (patient's left)."""

RESOLUTIONS = ("scan", "fast", "tiny")
# Axis codes written: the common DICOM-derived ones (LPS, LPI), NIfTI's RAS, a flipped one and permuted ones.
ORIENTATIONS = ("RAS", "LPS", "LAS", "LPI", "RPS", "PLS", "ASR", "SLP")
SLICE_THICKNESSES = (1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 5.0)
SLICE_PROBS = (0.05, 0.05, 0.10, 0.10, 0.15, 0.15, 0.40)  # MSD Task09 and BTCV are mostly 2.5-5 mm


@dataclass
class Grid:
    """Generation grid in canonical RAS array order.

    ``sub`` sub-slices of thickness ``spacing[2] / sub`` are generated per output slice and averaged (partial volume
    from the slice thickness); the label of a slice is the label of its centre sub-slice (``sub`` is odd).
    With ``coarse_xy`` = 2 the anatomy is painted on a grid twice as coarse in-plane and the image is upsampled
    linearly before noise and blur are added at full resolution (the labels by pixel replication).
    """

    spacing: tuple[float, float, float]
    shape: tuple[int, int, int]
    origin: tuple[float, float, float]
    sub: int
    coarse_xy: int = 1

    @property
    def xs(self) -> np.ndarray:
        """x coordinates (mm, anatomy frame) of the output voxel centres."""
        return self.origin[0] + self.spacing[0] * np.arange(self.shape[0])

    @property
    def ys(self) -> np.ndarray:
        """y coordinates of the output voxel centres."""
        return self.origin[1] + self.spacing[1] * np.arange(self.shape[1])

    @property
    def paint_xs(self) -> np.ndarray:
        """x coordinates of the (possibly coarser) painting grid: centres of ``coarse_xy`` x ``coarse_xy`` blocks."""
        return self.xs.reshape(-1, self.coarse_xy).mean(axis=1)

    @property
    def paint_ys(self) -> np.ndarray:
        """y coordinates of the painting grid."""
        return self.ys.reshape(-1, self.coarse_xy).mean(axis=1)

    @property
    def zs(self) -> np.ndarray:
        """z coordinates of the output slice centres."""
        return self.origin[2] + self.spacing[2] * np.arange(self.shape[2])

    @property
    def sub_zs(self) -> np.ndarray:
        """z coordinates of the generated sub-slices (``sub`` per output slice, centred on it)."""
        off = (np.arange(self.sub) - (self.sub - 1) / 2) * self.spacing[2] / self.sub
        return (self.zs[:, None] + off[None, :]).ravel()

    def affine(self, world_offset: np.ndarray) -> np.ndarray:
        """Voxel -> world RAS+ affine of the canonical array."""
        a = np.diag([*self.spacing, 1.0])
        a[:3, 3] = np.asarray(self.origin) + world_offset
        return a


def sample_grid(rng: np.random.Generator, resolution: str, body_width: float, body_depth: float,
                body_center_y: float, z_top: float, z_bottom: float) -> Grid:
    """Draw the acquisition grid for a body of the given size (mm) and a craniocaudal range [z_bottom, z_top].

    The same draws happen for every resolution so that the field of view is the same anatomy at every resolution.
    """
    if resolution not in RESOLUTIONS:
        raise ValueError(f"resolution must be one of {RESOLUTIONS}, got {resolution!r}")
    fov_factor = rng.uniform(0.95, 1.22)  # below 1 the field of view cuts the flanks, as in large patients
    cx, cy = rng.uniform(-15, 15), body_center_y + rng.uniform(-20, 20)
    thickness = float(rng.choice(SLICE_THICKNESSES, p=SLICE_PROBS))
    fov = max(body_width, body_depth) * fov_factor + 10.0
    coarse = 1
    if resolution == "scan":
        # anatomy painted at 1.2-2 mm in-plane and upsampled: 4x less work; a soft-tissue kernel resolves ~1.2 mm
        n, coarse = 512, 2
        s = float(np.clip(round(fov / n, 4), 0.6, 1.0))
        t = thickness
        # thick slices are averaged from 3 sub-slices of <= 1.7 mm; at 3 mm and below the slab adds little blur
        sub = 3 if t >= 4.0 else 1
    elif resolution == "fast":
        n, s, t, sub = 256, 1.5, 1.5, 1
    else:
        n = 80
        s = float(np.clip(round(fov / n, 3), 4.0, 5.0))
        t, sub = 5.0, 3
    nz = int(np.floor((z_top - z_bottom) / t)) + 1
    if resolution == "tiny":
        nz = min(nz, 96)
    origin = (cx - s * (n - 1) / 2, cy - s * (n - 1) / 2, z_top - t * (nz - 1))
    return Grid(spacing=(s, s, t), shape=(n, n, nz), origin=origin, sub=sub, coarse_xy=coarse)


def reorient(arrays: list[np.ndarray | None], affine: np.ndarray,
             code: str) -> tuple[list[np.ndarray | None], np.ndarray]:
    """Reorder canonical-RAS arrays into the axis code ``code`` (e.g. "LPS") and return the matching affine."""
    code = code.upper()
    if len(code) != 3 or sorted(code.replace("L", "R").replace("P", "A").replace("I", "S")) != ["A", "R", "S"]:
        raise ValueError(f"orientation must be a 3-letter axis code like 'LPS', got {code!r}")
    src = axcodes2ornt(("R", "A", "S"))
    dst = axcodes2ornt(tuple(code))
    tr = ornt_transform(src, dst)
    shape = next(a.shape for a in arrays if a is not None)
    out = [None if a is None else np.ascontiguousarray(apply_orientation(a, tr)) for a in arrays]
    return out, affine @ inv_ornt_aff(tr, shape)
