"""Painting primitives of the phantom engine: a voxel canvas, smooth random fields, tubes and blobs.

Everything is evaluated inside bounding boxes on 1-D coordinate vectors that broadcast to 3-D, so the cost of a
structure is proportional to its size, not to the size of the volume. All random parameters are drawn when a field or
shape is *created* (from the anatomy's random stream), never when it is evaluated, so the same seed gives the same
anatomy on every grid ("scan", "fast", "tiny").
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
from threadpoolctl import threadpool_limits

__all__ = ["Canvas", "SmoothField", "catmull_rom", "rotation_from_axes", "ellipsoid_f", "smooth_union",
           "parallel_map", "n_threads", "single_threaded_blas"]

F32 = np.float32
CHUNK_VOXELS = 1 << 20  # chunks of about 1 M voxels keep temporaries small


def n_threads() -> int:
    """Worker threads for slice-parallel work (numpy/scipy release the GIL); ``PHANTOM_THREADS`` overrides."""
    env = os.environ.get("PHANTOM_THREADS")
    return max(1, int(env)) if env else max(1, min(4, os.cpu_count() or 1))


_POOL: dict[tuple[int, int], ThreadPoolExecutor] = {}


def parallel_map(fn: Callable[[int], None], items: Iterable[int], min_items: int = 2) -> None:
    """Run ``fn`` on every item in a (persistent) thread pool. ``fn`` writes into disjoint array parts, or writes
    identical values where parts overlap, so the output does not depend on the number of threads."""
    items = list(items)
    nt = n_threads()
    if nt == 1 or len(items) < min_items:
        for i in items:
            fn(i)
        return
    # keyed by process id too: a forked child (e.g. a DataLoader worker) has the pool object but not its threads
    key = (os.getpid(), nt)
    if key not in _POOL:
        _POOL[key] = ThreadPoolExecutor(nt, thread_name_prefix="phantom")
    for _ in _POOL[key].map(fn, items):
        pass


_BLAS_LOCK = threading.Lock()
_BLAS_STATE: dict = {"users": 0, "limiter": None}


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Run numpy's BLAS on one thread inside the block (re-entrant and safe to nest across threads).

    The smooth random fields are small matrix products (``(nx*ny, m) x (m, nz)`` with m <= 16). Single-threaded BLAS
    does them 5-10x faster than ``einsum``; multi-threaded OpenBLAS, called from the phantom's own worker threads on a
    busy machine, is 3x *slower* than single-threaded (its threads spin waiting for cores). The products themselves
    are split over rows and columns only, never over m, so the result is the same for any BLAS thread count; the
    limit is a speed measure (``threadpoolctl``, a declared dependency).
    """
    with _BLAS_LOCK:
        if _BLAS_STATE["users"] == 0:
            _BLAS_STATE["limiter"] = threadpool_limits(limits=1, user_api="blas")
        _BLAS_STATE["users"] += 1
    try:
        yield
    finally:
        with _BLAS_LOCK:
            _BLAS_STATE["users"] -= 1
            if _BLAS_STATE["users"] == 0:
                _BLAS_STATE["limiter"].restore_original_limits()
                _BLAS_STATE["limiter"] = None


class SmoothField:
    """A band-limited random scalar field with unit variance: a sum of separable cosine products.

    A separable sum ``sum_m a_m cx_m(x) cy_m(y) cz_m(z)`` is one matrix product (``(nx*ny, m) x (m, nz)``), which is
    why it is used instead of filtering white noise: with BLAS (see ``single_threaded_blas``) it costs less than one
    elementwise pass over the box and needs no padding or resampling.

    Args:
        rng: random generator the mode parameters are drawn from (at construction).
        wavelength: (min, max) wavelength in mm of the modes.
        n_modes: number of separable modes.
    """

    def __init__(self, rng: np.random.Generator, wavelength: tuple[float, float], n_modes: int = 16) -> None:
        lo, hi = wavelength
        self.k = (2 * np.pi / rng.uniform(lo, hi, size=(3, n_modes))).astype(np.float64)
        self.phi = rng.uniform(0, 2 * np.pi, size=(3, n_modes))
        # a product of three cosines with random phases has variance 1/8
        self.amp = (rng.standard_normal(n_modes) * np.sqrt(8.0 / n_modes)).astype(F32)

    def __call__(self, xs: np.ndarray, ys: np.ndarray, zs: np.ndarray) -> np.ndarray:
        """Evaluate on the grid spanned by 1-D world coordinates (mm); returns float32 (nx, ny, nz)."""
        cx = np.cos(self.k[0][:, None] * np.ravel(xs)[None, :] + self.phi[0][:, None]).astype(F32)
        cy = np.cos(self.k[1][:, None] * np.ravel(ys)[None, :] + self.phi[1][:, None]).astype(F32)
        cz = np.cos(self.k[2][:, None] * np.ravel(zs)[None, :] + self.phi[2][:, None]).astype(F32)
        m, nx, ny, nz = cx.shape[0], cx.shape[1], cy.shape[1], cz.shape[1]
        a = (cx * self.amp[:, None])[:, :, None] * cy[:, None, :]
        return np.matmul(a.reshape(m, nx * ny).T, cz).reshape(nx, ny, nz)


def catmull_rom(ctrl: Sequence[Sequence[float]], step: float = 6.0) -> tuple[np.ndarray, np.ndarray]:
    """Resample a Catmull-Rom spline through control points at about ``step`` mm.

    Returns:
        (points (n, 3), parameter (n,)) where the parameter runs from 0 to len(ctrl) - 1 so per-control-point values
        (radii) can be interpolated with ``np.interp``.
    """
    p = np.asarray(ctrl, dtype=np.float64)
    ext = np.vstack([2 * p[0] - p[1], p, 2 * p[-1] - p[-2]])
    pts, par = [], []
    for i in range(len(p) - 1):
        p0, p1, p2, p3 = ext[i], ext[i + 1], ext[i + 2], ext[i + 3]
        n = max(2, int(np.ceil(np.linalg.norm(p2 - p1) / step)))
        t = np.linspace(0, 1, n, endpoint=False)[:, None]
        seg = 0.5 * (2 * p1 + (-p0 + p2) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2
                     + (-p0 + 3 * p1 - 3 * p2 + p3) * t**3)
        pts.append(seg)
        par.append(i + t[:, 0])
    pts.append(p[-1:])
    par.append(np.array([len(p) - 1.0]))
    return np.vstack(pts), np.concatenate(par)


def rotation_from_axes(u: Sequence[float], n_hint: Sequence[float]) -> np.ndarray:
    """Orthonormal frame whose first column is ``u`` and third column is ``n_hint`` made orthogonal to ``u``."""
    u = np.asarray(u, float) / np.linalg.norm(u)
    n = np.asarray(n_hint, float)
    n = n - (n @ u) * u
    n /= np.linalg.norm(n)
    v = np.cross(n, u)
    return np.stack([u, v, n], axis=1)


def ellipsoid_f(X: np.ndarray, Y: np.ndarray, Z: np.ndarray, c: Sequence[float], axes: Sequence[float],
                R: np.ndarray | None = None) -> np.ndarray:
    """Approximate signed distance (mm, positive inside) to an ellipsoid: centre ``c``, semi-axes, frame ``R``.

    ``X``, ``Y``, ``Z`` are box coordinates shaped (nx, 1, 1), (1, ny, 1), (1, 1, nz) (``Canvas.box``). The quadratic
    form ``q^2 = d^T M d`` (``M = R diag(axes^-2) R^T``) is split into three 2-D maps (xy, xz, yz terms), so the
    3-D work is two additions, a square root and a scaling.
    """
    dx = np.ravel(X).astype(np.float64) - float(c[0])
    dy = np.ravel(Y).astype(np.float64) - float(c[1])
    dz = np.ravel(Z).astype(np.float64) - float(c[2])
    Rm = np.eye(3) if R is None else np.asarray(R, dtype=np.float64)
    M = (Rm / np.asarray(axes, dtype=np.float64) ** 2) @ Rm.T
    qxy = (M[0, 0] * dx ** 2)[:, None] + (M[1, 1] * dy ** 2)[None, :] + (2 * M[0, 1]) * np.outer(dx, dy)
    qxz = (M[2, 2] * dz ** 2)[None, :] + (2 * M[0, 2]) * np.outer(dx, dz)
    q = qxy.astype(F32)[:, :, None] + qxz.astype(F32)[:, None, :]
    if M[1, 2] != 0:
        q += ((2 * M[1, 2]) * np.outer(dy, dz)).astype(F32)[None, :, :]
    np.sqrt(q, out=q)
    r = F32(min(axes))
    q *= -r
    q += r
    return q


def smooth_union(a: np.ndarray, b: np.ndarray, k: float = 12.0) -> np.ndarray:
    """Smooth maximum of two implicit fields (blends the crease between merged lobes over about ``k`` mm).

    ``max(a, b) + h^2 k / 4`` with ``h = max(k - |a - b|, 0) / k``; computed in place: ``a`` is overwritten and
    returned when it is a float32 array of the result's shape.
    """
    h = np.subtract(a, b, dtype=F32)
    np.abs(h, out=h)
    np.subtract(F32(k), h, out=h)
    np.maximum(h, F32(0), out=h)
    h *= h
    h *= F32(1.0 / (4.0 * k))
    out = a if (isinstance(a, np.ndarray) and a.dtype == F32 and a.shape == h.shape) else None
    out = np.maximum(a, b, out=out)
    out += h
    return out


@dataclass
class Canvas:
    """The voxel grid the anatomy is painted on (canonical RAS array order, coordinates in mm).

    ``tis`` holds a tissue id per voxel (turned into HU by the appearance model), ``lab`` the BTCV label and
    ``lesion`` the lesion label. Painting only changes voxels whose current tissue is in an ``allowed`` set, which is
    how priorities (and therefore non-overlapping organs) are enforced.
    """

    xs: np.ndarray
    ys: np.ndarray
    zs: np.ndarray
    min_radius: float = 0.0
    tis: np.ndarray = field(init=False)
    lab: np.ndarray = field(init=False)
    lesion: np.ndarray | None = field(init=False, default=None)
    _axes: list = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.xs, self.ys, self.zs = (np.asarray(a, dtype=F32) for a in (self.xs, self.ys, self.zs))
        shape = (len(self.xs), len(self.ys), len(self.zs))
        # per axis: coordinates, first coordinate and step as Python floats (``box`` is called for every tube chord)
        self._axes = [(c, float(c[0]), float(c[1] - c[0]) if len(c) > 1 else 1.0, len(c))
                      for c in (self.xs, self.ys, self.zs)]
        self.tis = np.zeros(shape, np.uint8)
        self.lab = np.zeros(shape, np.uint8)

    @property
    def shape(self) -> tuple[int, int, int]:
        """Grid shape."""
        return self.tis.shape  # type: ignore[return-value]

    def box(self, lo: Sequence[float], hi: Sequence[float]):
        """Index slices and broadcastable coordinates of the voxels inside the world box [lo, hi].

        Returns None when the box misses the grid.
        """
        sl, co = [], []
        for ax, (a, b) in enumerate(zip(lo, hi)):
            c, c0, step, n = self._axes[ax]
            i0 = max(0, math.ceil((float(a) - c0) / step))
            i1 = min(n, math.floor((float(b) - c0) / step) + 1)
            if i1 <= i0:
                return None
            sl.append(slice(i0, i1))
            shp = [1, 1, 1]
            shp[ax] = i1 - i0
            co.append(c[i0:i1].reshape(shp))
        return tuple(sl), co[0], co[1], co[2]

    def boxes(self, lo: Sequence[float], hi: Sequence[float], max_voxels: int = CHUNK_VOXELS
              ) -> Iterator[tuple[tuple, np.ndarray, np.ndarray, np.ndarray]]:
        """Like ``box`` but yields the box in x-chunks of at most about ``max_voxels`` voxels.

        x is the slowest array axis, so a chunk's rows are whole z-runs of the box (long contiguous memory runs).
        """
        bx = self.box(lo, hi)
        if bx is None:
            return
        sl, X, Y, Z = bx
        per = max(1, max_voxels // (Y.size * Z.size))
        x0, nx = sl[0].start, sl[0].stop - sl[0].start
        for i in range(0, nx, per):
            i1 = min(nx, i + per)
            yield (slice(x0 + i, x0 + i1), sl[1], sl[2]), X[i:i1], Y, Z

    def paint(self, sl: tuple, mask: np.ndarray, tissue, label: int | None = None, allowed: np.ndarray | None = None,
              lesion: int | None = None) -> np.ndarray:
        """Set tissue (a scalar id or an array broadcastable to the box) and label where ``mask`` and allowed.

        Returns the mask of voxels actually changed.
        """
        t = self.tis[sl]
        m = np.broadcast_to(mask, t.shape)
        if allowed is not None:
            m = m & allowed[t]
        if np.ndim(tissue) == 0:
            t[m] = tissue
        else:
            t[m] = np.broadcast_to(tissue, t.shape)[m]
        if label is not None:
            self.lab[sl][m] = label
        if lesion is not None and self.lesion is not None:
            self.lesion[sl][m] = lesion
        return m

    def tube(self, ctrl: Sequence[Sequence[float]], radii: Sequence[float] | float, tissue,
             label: int | None = None, allowed: np.ndarray | None = None, *, step: float | None = None,
             radius_field: SmoothField | None = None, field_amp: float = 0.0, tissue_fn: Callable | None = None,
             labelled_min_radius: bool = True) -> None:
        """Paint a tube of varying radius along a Catmull-Rom spline through ``ctrl`` (one capsule per chord).

        ``step`` is the chord length in mm (default: 1.2 x the local radius, at most 30 mm: boxes overlap little;
        the chord error, L^2 / (8 x curvature radius), stays about 1 mm on the bends of the paths used here).
        ``radius_field`` times ``field_amp`` (mm) perturbs the radius, e.g. for lobulated organs;
        ``tissue_fn(X, Y, Z, box_slices)`` may return a per-voxel tissue array instead of a constant tissue. Labelled
        tubes are never thinner than ``min_radius`` so thin organs survive coarse grids.
        """
        r_ctrl = np.broadcast_to(np.asarray(radii, float), (len(ctrl),))
        dense, par = catmull_rom(ctrl, 1.0)
        r_dense = np.interp(par, np.arange(len(ctrl)), r_ctrl)
        if label is not None and labelled_min_radius:
            r_dense = np.maximum(r_dense, self.min_radius)
        arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(dense, axis=0), axis=1))])
        keep, s_next = [0], 0.0
        for i in range(1, len(dense)):
            if arc[i] >= s_next:
                keep.append(i)
                s_next = arc[i] + (step if step is not None else float(np.clip(1.2 * r_dense[i], 3.0, 30.0)))
        if keep[-1] != len(dense) - 1:
            keep.append(len(dense) - 1)
        pts, r = dense[keep], r_dense[keep]
        pad = float(field_amp) * 3.0
        big, big_f = None, None
        if radius_field is not None and field_amp:
            rm = float(r.max()) + pad
            big = self.box(pts.min(axis=0) - rm, pts.max(axis=0) + rm)
            if big is not None:
                big_f = self.field_in(radius_field, big[0])
        def segment(i: int) -> None:
            a, b, ra, rb = pts[i], pts[i + 1], r[i], r[i + 1]
            rmax = max(ra, rb) + pad
            bx = self.box(np.minimum(a, b) - rmax, np.maximum(a, b) + rmax)
            if bx is None:
                return
            sl, X, Y, Z = bx
            d = (b - a).astype(np.float64)
            L2 = max(float(d @ d), 1e-6)
            # separable parts: p = voxel - a; s = p.d and |p|^2 are sums of 1-D terms, added in two 3-D passes
            px, py, pz = (np.ravel(C).astype(np.float64) - a[k] for k, C in enumerate((X, Y, Z)))
            sxy = (d[0] * px)[:, None] + (d[1] * py)[None, :]
            s_ = sxy.astype(F32)[:, :, None] + (d[2] * pz).astype(F32)[None, None, :]
            pxy = (px ** 2)[:, None] + (py ** 2)[None, :]
            dist2 = pxy.astype(F32)[:, :, None] + (pz ** 2).astype(F32)[None, None, :]
            t = s_ * F32(1.0 / L2)
            np.clip(t, 0, 1, out=t)
            # |p - t d|^2 = |p|^2 - 2 t s + t^2 L2
            s_ *= F32(-2)
            tmp = t * F32(L2)
            tmp += s_
            tmp *= t
            dist2 += tmp
            if ra == rb and big_f is None:
                mask = dist2 < F32(ra * abs(ra))
            else:
                rr = t
                rr *= F32(rb - ra)
                rr += F32(ra)
                if big_f is not None:
                    o = [sl[k].start - big[0][k].start for k in range(3)]
                    rr += F32(field_amp) * big_f[o[0]:o[0] + X.shape[0], o[1]:o[1] + Y.shape[1],
                                                 o[2]:o[2] + Z.shape[2]]
                mask = dist2 < rr * np.abs(rr)
            tis = tissue if tissue_fn is None else tissue_fn(X, Y, Z, sl)
            self.paint(sl, mask, tis, label, allowed)

        # Segments run in parallel threads. Overlapping segments of one tube write the same tissue and label to the
        # same voxel (the tissue depends on position only), so the result is independent of the interleaving.
        parallel_map(segment, range(len(pts) - 1), min_items=8)

    def field_in(self, f: SmoothField, sl: tuple) -> np.ndarray:
        """Evaluate a SmoothField on the voxels of the index box ``sl``."""
        return f(self.xs[sl[0]], self.ys[sl[1]], self.zs[sl[2]])


def allowed_lut(ids: Iterable[int]) -> np.ndarray:
    """Boolean lookup table over tissue ids (indexable by a uint8 array)."""
    lut = np.zeros(256, bool)
    lut[list(ids)] = True
    return lut
