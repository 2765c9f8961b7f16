"""Procedural abdominal anatomy painted onto a Canvas (tissue ids + BTCV labels).

Frame (mm): x towards the patient's right, y anterior, z superior (the RAS+ axes); origin at the centre of the
vertebral bodies at the height of the right diaphragm dome. Placement follows standard anatomy texts (Gray's
Anatomy; Webb/Brant/Major, Fundamentals of Body CT): liver in the right upper quadrant under the right dome,
spleen posterolateral under the left dome, kidneys T12-L3 beside the psoas with the right one 1-2 cm lower, aorta
left-anterior of the spine, IVC to its right, pancreas across the midline in front of the splenic vein, gallbladder
under segments IV/V, adrenals above-medial to the upper renal poles, esophagus left-anterior of the aorta.

Painting order sets priority (``Canvas.paint`` with an ``allowed`` set): body layers, skeleton and muscles, vessels,
small organs, kidneys, spleen, stomach, liver last (it fills the space left, like a real liver moulds around its
neighbours), then bowel into the remaining visceral fat. Labelled organs therefore never overlap.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .appearance import T
from .canvas import (CHUNK_VOXELS, Canvas, SmoothField, allowed_lut, ellipsoid_f, parallel_map, rotation_from_axes,
                     smooth_union)

__all__ = ["BTCV_LABELS", "sample_patient", "paint_patient", "ORGAN_NAMES"]

BTCV_LABELS: dict[int, str] = {
    0: "background", 1: "spleen", 2: "right_kidney", 3: "left_kidney", 4: "gallbladder", 5: "esophagus",
    6: "liver", 7: "stomach", 8: "aorta", 9: "inferior_vena_cava", 10: "portal_and_splenic_veins",
    11: "pancreas", 12: "right_adrenal_gland", 13: "left_adrenal_gland",
}
ORGAN_NAMES = {v: k for k, v in BTCV_LABELS.items()}

F32 = np.float32
FREE = allowed_lut([T.FAT_VISC])
FREE_THORAX = allowed_lut([T.FAT_VISC, T.LUNG, T.MED_FAT, T.MUSCLE])
SOFT = allowed_lut([T.FAT_VISC, T.LUNG, T.MED_FAT, T.MUSCLE, T.FAT_SC])


def _n(rng: np.random.Generator, sd: float) -> float:
    return float(rng.normal(0.0, sd))


def sample_patient(rng: np.random.Generator) -> dict:
    """Draw one 'patient': body habitus, organ sizes and positions, shape perturbation fields.

    All randomness of the anatomy happens here so that it does not depend on the voxel grid.
    """
    p: dict = {}
    h = float(np.clip(rng.normal(1.0, 0.06), 0.88, 1.12))    # craniocaudal scale
    w = float(np.clip(rng.normal(1.0, 0.06), 0.88, 1.14))    # skeletal frame width
    v = float(rng.beta(2.0, 2.5))                             # visceral fat, 0 lean .. 1 obese
    fat = float(np.clip(rng.lognormal(np.log(10 + 22 * v), 0.35), 4.0, 60.0))  # subcutaneous fat (mm)
    p.update(h=h, w=w, visceral=v, fat_sc=fat)
    # cavity (inside the muscular wall) keyframes along z
    zk = np.array([110.0, 0.0, -70.0, -140.0, -210.0, -280.0, -380.0]) * h
    a = w * np.array([125, 133, 136, 132, 130, 140, 132]) + v * np.array([10, 22, 32, 40, 44, 42, 34])
    ya = w * np.array([92, 100, 104, 100, 96, 92, 84]) + v * np.array([10, 25, 45, 62, 66, 55, 40])
    p["cavity_keys"] = (zk, a * (1 + _n(rng, 0.03)), ya * (1 + _n(rng, 0.04)), -80.0 * w)
    p["wall_mm"] = float(rng.uniform(8, 15))
    p["fat_phase"] = float(rng.uniform(0, 2 * np.pi))
    # diaphragm domes
    p["dome_left_z"] = -float(rng.uniform(5, 25)) * h
    p["dome_rc"] = float(rng.uniform(115, 150)) * w
    # skeleton
    p["z_l1"] = (-85.0 + _n(rng, 8)) * h
    p["level_h"] = 33.0 * h
    p["vb_lat"], p["vb_ap"] = 18.0 * w, 15.0 * w
    p["bone_age"] = float(rng.uniform(0.0, 1.0))
    # organ sizes
    vs = float(np.clip(rng.lognormal(np.log(185.0), 0.42), 80.0, 450.0))
    p["spleen_target_ml"] = vs
    p["s_spleen"] = (vs / 158.0) ** (1 / 3)  # calibrated on 30 seeds: actual volume ~ target
    p["s_liver"] = float(np.clip(rng.normal(0.96, 0.07), 0.82, 1.15))
    p["s_kidney"] = (float(np.clip(rng.normal(1.0, 0.07), 0.85, 1.2)), float(np.clip(rng.normal(1.0, 0.07), 0.85, 1.2)))
    p["s_gb"] = float(rng.uniform(0.7, 1.3))
    p["gb_present"] = bool(rng.uniform() > 0.06)     # cholecystectomy
    p["s_stomach"] = float(rng.uniform(0.75, 1.25))
    p["stomach_gas_y"] = float(rng.uniform(5, 80))
    p["stomach_content"] = str(rng.choice(["fluid", "fluid", "food", "contrast"]))
    p["s_aorta"] = float(np.clip(rng.normal(1.0, 0.08), 0.85, 1.25))
    p["s_ivc"] = float(rng.uniform(0.8, 1.2))
    p["s_pancreas"] = float(rng.uniform(0.8, 1.2))
    p["pancreas_fat"] = float(rng.uniform(0.0, 1.0))
    p["oral_contrast"] = bool(rng.uniform() < 0.3)
    p["colon_stool"] = float(rng.uniform(0.0, 0.8))
    # position jitter (mm)
    p["j"] = {k: np.array([_n(rng, 5), _n(rng, 5), _n(rng, 7)]) for k in
              ("liver", "spleen", "lk", "rk", "gb", "stomach", "pancreas", "ladr", "radr", "colon", "heart")}
    # shape perturbation and pattern fields
    p["f_liver"] = SmoothField(rng, (60, 160))
    p["f_liver2"] = SmoothField(rng, (20, 50))
    p["f_spleen"] = SmoothField(rng, (40, 110))
    p["f_spleen_pat"] = SmoothField(rng, (7, 16))
    p["f_kidney"] = SmoothField(rng, (35, 90))
    p["f_pancreas"] = SmoothField(rng, (10, 25))
    p["f_pfat"] = SmoothField(rng, (5, 12))
    p["f_stomach"] = SmoothField(rng, (30, 80))
    p["f_bowel"] = SmoothField(rng, (28, 70), n_modes=16)
    p["f_bowel2"] = SmoothField(rng, (30, 80), n_modes=10)
    p["f_stool"] = SmoothField(rng, (6, 18))
    p["f_tex"] = SmoothField(rng, (10, 40), n_modes=6)
    p["f_fat"] = SmoothField(rng, (80, 200), n_modes=8)
    p["spleen_R_jit"] = rng.normal(0, 0.12, size=3)
    p["kidney_R_jit"] = rng.normal(0, 0.08, size=(2, 3))
    p["esophagus_gas"] = bool(rng.uniform() < 0.4)
    # accessory spleen (splenule) near the hilum in about 10 % of people
    p["splenule"] = (bool(rng.uniform() < 0.1), float(rng.uniform(5, 11)), rng.normal(0, 1, size=3))
    return p


# ---------------------------------------------------------------------------------------------------------------
# body wall, thorax, table
# ---------------------------------------------------------------------------------------------------------------

def _cavity_sdf_2d(X: np.ndarray, Y: np.ndarray, a: float, ya: float, yp: float,
                   spacing: tuple[float, float]) -> np.ndarray:
    """Signed distance (mm, positive inside) to a superellipse cavity cross-section with a flattened back."""
    y0 = yp + 0.42 * (ya - yp)
    yy = Y - y0
    b = np.where(yy >= 0, ya - y0, y0 - yp)
    pw = np.where(yy >= 0, 2.3, 3.4)
    inside = (np.abs(X) / a) ** pw + (np.abs(yy) / b) ** pw <= 1.0
    din = ndimage.distance_transform_edt(inside, sampling=spacing)
    dout = ndimage.distance_transform_edt(~inside, sampling=spacing)
    return (din - dout).astype(F32)


def diaphragm_z(p: dict, x, y):
    """Height (mm) of the diaphragm above (x, y): two domes (the right one higher), falling steeply towards the
    posterior and lateral costophrenic recesses."""
    w, h = p["w"], p["h"]

    def dome(cx, cy, ztop):
        dy = y - cy
        r2 = (x - cx) ** 2 + (dy * np.where(dy < 0, 1.1, 0.85)) ** 2
        return ztop - r2 / (2 * p["dome_rc"])

    return np.maximum(np.maximum(dome(55 * w, 0.0, 0.0), dome(-55 * w, -5.0, p["dome_left_z"])), -85 * h)


def paint_body(cv: Canvas, p: dict) -> dict:
    """Body outline, skin, subcutaneous fat, abdominal wall, thorax (lungs, diaphragm, heart), table.

    The cross-section is a few 2-D maps (cavity signed distance at 7 keyframes, wall and fat thickness) interpolated
    along z with one small matrix product per block of x rows; the layers are thresholds of that distance, turned
    into tissue ids by one lookup. Blocks run in parallel threads.
    """
    xs, ys, zs = cv.xs, cv.ys, cv.zs
    X2, Y2 = np.meshgrid(xs, ys, indexing="ij")
    sp = (float(xs[1] - xs[0]), float(ys[1] - ys[0]))
    zk, ak, yak, yp = p["cavity_keys"]
    S_keys = np.empty((len(zk),) + X2.shape, F32)

    def key(i: int) -> None:
        S_keys[i] = _cavity_sdf_2d(X2, Y2, ak[i], yak[i], yp, sp)

    parallel_map(key, range(len(zk)))
    order = np.argsort(zk)
    zk_s, S_s = zk[order], S_keys[order]

    def cavity_at(z: float) -> np.ndarray:
        zc = float(np.clip(z, zk_s[0], zk_s[-1]))
        i = int(np.clip(np.searchsorted(zk_s, zc), 1, len(zk_s) - 1))
        t = F32((zc - zk_s[i - 1]) / (zk_s[i] - zk_s[i - 1]))
        return S_s[i - 1] * (1 - t) + S_s[i] * t

    # fat and wall thickness vary around the circumference (thicker flanks/back, belly in the lower abdomen)
    ang = np.arctan2(Y2 + 20.0, X2)
    fat2 = (p["fat_sc"] * (1.0 + 0.25 * np.cos(2 * ang + p["fat_phase"]) + 0.25 * np.sin(ang) ** 2)).astype(F32)
    wall2 = (p["wall_mm"] * (0.55 + 0.6 * np.abs(np.cos(ang)))).astype(F32)
    wall2 = np.where(Y2 < -40, np.minimum(wall2, 6.0), wall2).astype(F32)
    h, w = p["h"], p["w"]

    zd = diaphragm_z(p, X2, Y2).astype(F32)
    zd_min = float(zd.min())
    # CT table under the back: thin dense shells around a foam core
    S0 = cavity_at(-100 * h)
    body0 = S0 > -(wall2 + fat2)
    yb = ys[np.nonzero(body0.any(axis=0))[0][0]] if body0.any() else ys[0]
    d = (yb - 2.0 + 0.0012 * X2 ** 2).astype(F32) - Y2
    table = np.where((d >= 0) & (d < 4), T.TABLE_SHELL, np.where((d >= 4) & (d < 35), T.TABLE_CORE,
                     np.where((d >= 35) & (d < 39), T.TABLE_SHELL, T.AIR)))
    table = np.where(np.abs(X2) < 230, table, T.AIR).astype(np.uint8)
    nx, ny, nz = len(xs), len(ys), len(zs)
    K = len(zk_s)
    # the cavity SDF is interpolated linearly between keyframes: S(x, y, z) = sum_k S_k(x, y) W[k, z]
    zc = np.clip(zs.astype(np.float64), zk_s[0], zk_s[-1])
    iz = np.clip(np.searchsorted(zk_s, zc), 1, K - 1)
    tz = (zc - zk_s[iz - 1]) / (zk_s[iz] - zk_s[iz - 1])
    Wz = np.zeros((K, nz), F32)
    Wz[iz - 1, np.arange(nz)] = 1 - tz
    Wz[iz, np.arange(nz)] += tz
    S_rows = S_s.reshape(K, nx, ny)
    neg_fz = (-(1.0 + 0.25 * np.clip((-zs.astype(np.float64) - 80) / 150, 0, 1))).astype(F32)  # fat grows caudally
    # level 0 outside the skin (air or the table under this pixel), 1 skin, 2 subcutaneous fat, 3 muscular wall,
    # 4 cavity; the table's code (0 air, 5 shell, 10 core) is added so one lookup gives the tissue
    tab_code = np.where(table == T.TABLE_SHELL, 5, np.where(table == T.TABLE_CORE, 10, 0)).astype(np.uint8)
    body_lut = np.array([T.AIR, T.SKIN, T.FAT_SC, T.MUSCLE, T.FAT_VISC], np.uint8)
    lut = np.concatenate([body_lut, body_lut, body_lut])
    lut[5], lut[10] = T.TABLE_SHELL, T.TABLE_CORE
    kz = int(np.searchsorted(zs, zd_min - 6.0, side="right"))  # slices that may reach the diaphragm (zs ascending)
    Zd = zs[kz:].astype(F32)
    rows = max(1, CHUNK_VOXELS // (ny * nz))

    def one(ci: int) -> None:
        # x-chunks: x is the slowest array axis, so each chunk of the canvas is one contiguous block
        i0, i1 = ci * rows, min(nx, (ci + 1) * rows)
        r = i1 - i0
        u = np.matmul(S_rows[:, i0:i1].reshape(K, r * ny).T, Wz).reshape(r, ny, nz)  # cavity SDF S
        wall = wall2[i0:i1, :, None]
        u += wall                                   # u = S + wall: positive inside the outer surface of the wall
        nf = fat2[i0:i1, :, None] * neg_fz          # -(subcutaneous fat thickness) at this height
        lev = (u > nf).view(np.uint8)               # inside the skin
        nf += F32(2.0)
        lev += u > nf                               # below the 2 mm skin
        lev += u > 0                                # inside the wall
        lev += u > wall                             # inside the cavity (S > 0)
        lev += tab_code[i0:i1, :, None]
        tt = cv.tis[i0:i1]
        np.take(lut, lev, out=tt)
        if kz < nz:
            # lungs above the diaphragm, a 5 mm muscle sheet under it
            top = tt[:, :, kz:]
            zdd = zd[i0:i1, :, None]
            vis = top == T.FAT_VISC
            above = Zd > zdd
            top[vis & above] = T.LUNG
            top[vis & ~above & (Zd > zdd - F32(5.0))] = T.MUSCLE

    parallel_map(one, range((nx + rows - 1) // rows))
    # heart on the central tendon, pericardial fat around it
    c = np.array([-25 * w, 50.0, 42 * h]) + p["j"]["heart"]
    for sl, X, Y, Z in cv.boxes(c - 75, c + 75):
        f = ellipsoid_f(X, Y, Z, c, (70, 55, 60))
        cv.paint(sl, f > -6, T.MED_FAT, None, allowed_lut([T.LUNG]))
        cv.paint(sl, f > 0, T.MYOCARDIUM, None, allowed_lut([T.MED_FAT]))
        cv.paint(sl, f > 10, T.BLOOD_HEART, None, allowed_lut([T.MYOCARDIUM]))
    return {"cavity_at": cavity_at, "zd": zd, "ang": ang, "wall2": wall2}


# ---------------------------------------------------------------------------------------------------------------
# skeleton and muscles
# ---------------------------------------------------------------------------------------------------------------

def _vertical(cv: Canvas, z_lo: float, z_hi: float, cx, cy, rx, ry, tissue: int, allowed=SOFT,
              shell: float = 0.0, inner: int | None = None) -> None:
    """Paint an elliptic cylinder whose centre/radii are functions of z (callables), within [z_lo, z_hi]."""
    zsel = np.nonzero((cv.zs >= z_lo) & (cv.zs <= z_hi))[0]
    if not len(zsel):
        return
    zz = cv.zs[zsel]
    CX, CY, RX, RY = (np.asarray(f(zz), F32) for f in (cx, cy, rx, ry))
    lo = [float((CX - RX).min()), float((CY - RY).min()), float(zz.min())]
    hi = [float((CX + RX).max()), float((CY + RY).max()), float(zz.max())]
    bx = cv.box(lo, hi)
    if bx is None:
        return
    sl, X, Y, Z = bx
    idx = np.arange(sl[2].start, sl[2].stop) - zsel[0]
    CX, CY, RX, RY = (a[idx][None, None, :] for a in (CX, CY, RX, RY))
    q = ((X - CX) / RX) ** 2 + ((Y - CY) / RY) ** 2
    cv.paint(sl, q < 1, tissue, None, allowed)
    if inner is not None:
        qi = ((X - CX) / np.maximum(RX - shell, 1)) ** 2 + ((Y - CY) / np.maximum(RY - shell, 1)) ** 2
        cv.paint(sl, qi < 1, inner, None, allowed_lut([tissue]))


def paint_skeleton(cv: Canvas, p: dict, body: dict) -> None:
    """Vertebrae (bodies, discs, arches, processes), paraspinal/psoas/quadratus muscles, ribs, pelvis."""
    h, w = p["h"], p["w"]
    zl1, lh = p["z_l1"], p["level_h"]
    vb_lat, vb_ap = p["vb_lat"], p["vb_ap"]
    xs, ys, zs = cv.xs, cv.ys, cv.zs
    bone_any = allowed_lut([T.FAT_VISC, T.LUNG, T.MUSCLE, T.FAT_SC, T.MED_FAT])
    # --- spine, one 2-D section per sub-slice inside the spine's bounding box
    bx = cv.box((-60 * w, -100 * w, zs.min()), (60 * w, 45.0, zs.max()))
    sacrum_top = zl1 - 4.6 * lh
    if bx is not None:
        sl, X, Y, _ = bx
        X2, Y2 = X[:, :, 0], Y[:, :, 0]
        tsub = cv.tis[sl]
        for k, z in enumerate(zs[sl[2]]):
            lvl = (zl1 - z) / lh
            j = np.round(lvl)
            dz = (lvl - j) * lh
            grow = np.clip((zl1 - z) / (4 * lh), -1, 1)
            rl, ra = vb_lat * (1 + 0.22 * grow), vb_ap * (1 + 0.18 * grow)
            sk = tsub[:, :, k]
            okk = bone_any[sk]
            if z < sacrum_top:
                # sacrum: a broad, posteriorly tilted plate
                yc = -25.0 - 0.35 * (sacrum_top - z)
                taper = max(0.3, 1.0 - (sacrum_top - z) / 140.0)
                q = (X2 / (46 * w * taper)) ** 2 + ((Y2 - yc) / (20.0 * taper + 4)) ** 2
                sk[(q < 1) & okk] = T.BONE_CORTEX
                sk[(q < 0.7) & okk] = T.BONE_CANC
                continue
            q = (X2 / rl) ** 2 + (Y2 / ra) ** 2
            if abs(dz) < 0.38 * lh:
                sk[(q < 1) & okk] = T.BONE_CORTEX
                qi = (X2 / (rl - 1.5)) ** 2 + (Y2 / (ra - 1.5)) ** 2
                sk[(qi < 1) & okk] = T.BONE_CANC
            else:
                sk[(q < 1) & okk] = T.DISC
            # neural arch around the canal, processes
            cy = -ra - 10.0
            rc = np.hypot(X2, (Y2 - cy) * 1.1)
            arch = (rc < 17.0) & (rc >= 9.0) & (Y2 < -ra + 2)
            if abs(dz) < 0.34 * lh:
                sk[arch & okk] = T.BONE_CORTEX
            sk[(rc < 9.0) & okk] = T.CSF
            if abs(dz) < 0.18 * lh and z < zl1 + 0.5 * lh:
                tp = (np.abs(Y2 - cy - 2) < 3.5) & (np.abs(X2) < 38 * w) & (np.abs(X2) > 10)
                sk[tp & okk] = T.BONE_CORTEX
            if -0.45 * lh < dz < 0.15 * lh:
                spn = (np.abs(X2) < 3.2) & (Y2 < cy - 12) & (Y2 > cy - 45 * w)
                sk[spn & okk] = T.BONE_CORTEX
    vb_post = lambda z: np.full_like(z, -vb_ap - 10.0)  # noqa: E731
    # --- paraspinal muscles (erector spinae + multifidus), both sides
    for sgn in (1, -1):
        _vertical(cv, zl1 - 6 * lh, zs.max() + 1, lambda z, s=sgn: s * 30.0 * w + 0 * z,
                  lambda z: vb_post(z) - 32.0 - 4 * np.clip((zl1 - z) / 100, 0, 1),
                  lambda z: 25.0 * w + 4 * np.clip((zl1 - z) / 100, 0, 1),
                  lambda z: 21.0 + 5 * np.clip((zl1 - z) / 100, 0, 1) + 0 * z, T.MUSCLE,
                  allowed_lut([T.FAT_VISC, T.LUNG, T.FAT_SC, T.MUSCLE]))
        # psoas: from L1 down, growing, sliding laterally in the pelvis
        g = lambda z: np.clip((zl1 - z) / (4 * lh), 0, 1)  # noqa: E731
        _vertical(cv, zl1 - 7.5 * lh, zl1 + 0.3 * lh,
                  lambda z, s=sgn: s * (vb_lat + 6 + 14 * g(z) + 30 * np.clip((zl1 - 4.5 * lh - z) / 80, 0, 1)),
                  lambda z: -2.0 + 12 * np.clip((zl1 - 4.5 * lh - z) / 80, 0, 1) + 0 * z,
                  lambda z: (6 + 14 * g(z)) * w + 0 * z, lambda z: (6 + 12 * g(z)) * w + 0 * z, T.MUSCLE)
        # quadratus lumborum lateral to the transverse processes
        ql = lambda z: np.sin(np.pi * np.clip((zl1 - 0.2 * lh - z) / (3.8 * lh), 0.02, 0.98)) ** 0.5  # noqa: E731
        _vertical(cv, zl1 - 4.0 * lh, zl1 - 0.2 * lh, lambda z, s=sgn: s * (50.0 + 12 * ql(z)) * w,
                  lambda z: -38.0 + 0 * z, lambda z: 17.0 * w * ql(z), lambda z: 9.0 * ql(z), T.MUSCLE)
    # --- ribs 7-12 in the wall ring, sloping down anteriorly; costal cartilage continues the upper ones
    wall2 = body["wall2"]
    X2, Y2 = np.meshgrid(xs, ys, indexing="ij")
    psi = np.arctan2(Y2 + 15.0, np.abs(X2)) + np.pi / 2   # 0 posterior midline .. pi anterior midline
    S_rib = body["cavity_at"](-40 * h)
    ring = np.abs(S_rib + wall2 * 0.5) < 6.0
    ix, iy = np.nonzero(ring)
    sdist = (S_rib[ix, iy] + wall2[ix, iy] * 0.5).astype(F32)
    ps = psi[ix, iy].astype(F32)
    allow_rib = allowed_lut([T.MUSCLE, T.FAT_SC, T.LUNG])  # never into the abdominal cavity
    for r in range(7, 13):
        zpost = zl1 + (13 - r) * lh + 8.0
        end = {7: 2.5, 8: 2.45, 9: 2.35, 10: 2.2, 11: 1.75, 12: 1.15}[r]
        cart = {7: 2.95, 8: 2.85, 9: 2.7, 10: 2.5, 11: 0, 12: 0}[r]
        on = (ps > 0.45) & (ps < max(end, cart))
        # ribs fall steeply from the spine to the flank (the 10th reaches about L2-L3 laterally), cartilages climb
        zc = zpost - 115 * h * np.clip((ps - 0.3) / 1.9, 0, 1) ** 1.2 + np.where(ps > end, 70 * (ps - end), 0)
        zsel = np.nonzero((zs > zc[on].min() - 7) & (zs < zc[on].max() + 7))[0] if on.any() else []
        for k in zsel:
            dzr = (zs[k] - zc) / 5.5
            q = dzr ** 2 + (sdist / 4.5) ** 2
            m = on & (q < 1)
            if not m.any():
                continue
            t = cv.tis[ix[m], iy[m], k]
            ok = allow_rib[t]
            inner = q[m] < 0.45
            val = np.where(ps[m] > end, T.CARTILAGE, np.where(inner, T.BONE_CANC, T.BONE_CORTEX)).astype(np.uint8)
            t = np.where(ok, val, t)
            cv.tis[ix[m], iy[m], k] = t
    # --- iliac wings with iliacus inside and gluteal muscles outside
    z_crest = zl1 - 3.3 * lh
    for sgn in (1, -1):
        c2 = (sgn * 48.0 * w, -30.0)
        zsel = np.nonzero((zs < z_crest) & (zs > z_crest - 120 * h))[0]
        bx = cv.box((min(sgn * 160 * w, 0), -110, zs.min()), (max(sgn * 160 * w, 0), 80, zs.max()))
        if bx is None or not len(zsel):
            continue
        sl, X, Y, _ = bx
        Xl, Yl = X[:, :, 0], Y[:, :, 0]
        rho = np.hypot((Xl - c2[0]) * 1.0, (Yl - c2[1]) * 1.25)
        th = np.arctan2(Yl - c2[1], sgn * (Xl - c2[0]))
        sector = (th > -1.3) & (th < 0.9)
        for k in zsel:
            if k < sl[2].start or k >= sl[2].stop:
                continue
            R = 62 * w + 0.25 * (z_crest - zs[k])
            sk = cv.tis[sl[0], sl[1], k]
            ok = allow_rib[sk]
            band = sector & (np.abs(rho - R) < 4.5)
            sk[band & ok] = T.BONE_CORTEX
            sk[sector & (np.abs(rho - R) < 2.5) & ok] = T.BONE_CANC
            mus = sector & (((rho > R - 22) & (rho < R - 4.5)) | ((rho > R + 4.5) & (rho < R + 30))) & ok
            sk[mus & (sk != T.BONE_CORTEX) & (sk != T.BONE_CANC)] = T.MUSCLE


# ---------------------------------------------------------------------------------------------------------------
# organs and vessels
# ---------------------------------------------------------------------------------------------------------------

def _blob(cv: Canvas, parts: list, fn, field=None, amp: float = 0.0, field2=None, amp2: float = 0.0,
          carve: list | None = None, k: float = 15.0) -> None:
    """Evaluate a smooth union of ellipsoids (c, axes, R) with optional carve-outs and additive perturbation fields
    (amplitudes in mm) z-chunk by z-chunk, calling ``fn(slices, X, Y, Z, f)`` for each chunk in parallel threads
    (chunks are disjoint, so the result does not depend on the thread count)."""
    lo = np.min([np.asarray(c) - max(ax) for c, ax, _ in parts], axis=0) - 3 * (amp + amp2)
    hi = np.max([np.asarray(c) + max(ax) for c, ax, _ in parts], axis=0) + 3 * (amp + amp2)
    chunks = list(cv.boxes(lo, hi))

    def one(i: int) -> None:
        sl, X, Y, Z = chunks[i]
        f = None
        for c, ax, R in parts:
            g = ellipsoid_f(X, Y, Z, c, ax, R)
            f = g if f is None else smooth_union(f, g, k)
        for c, ax, R in carve or []:
            g = ellipsoid_f(X, Y, Z, c, ax, R)
            np.negative(g, out=g)
            np.minimum(f, g, out=f)
        for fld, a in ((field, amp), (field2, amp2)):
            if fld is not None and a:
                g = cv.field_in(fld, sl)
                g *= F32(a)
                f += g
        fn(sl, X, Y, Z, f)

    parallel_map(one, range(len(chunks)))


def paint_organs(cv: Canvas, p: dict, body: dict) -> dict:
    """Vessels, organs and bowel, in priority order. Returns landmark positions used by the lesion painter."""
    h, w, J = p["h"], p["w"], p["j"]
    vb_ap = p["vb_ap"]
    zl1 = p["z_l1"]
    vessel_ok = allowed_lut([T.FAT_VISC, T.LUNG, T.MED_FAT, T.MUSCLE])
    # mediastinal fat sleeve for the thoracic aorta and esophagus
    cv.tube([(-14 * w, 28, 160), (-14 * w, 28, 40 * h), (-14 * w, 28, -10 * h)], 26, T.MED_FAT, None,
            allowed_lut([T.LUNG]))
    # --- aorta and arteries
    sa = p["s_aorta"]
    ra = np.array([13.0, 12.5, 11.5, 10.5, 9.0]) * sa
    ay = vb_ap + ra + 2
    aorta = [(-18 * w, ay[0] - 6, 170.0), (-16 * w, ay[1] - 4, 40 * h), (-13 * w, ay[2], -40 * h),
             (-11 * w, ay[3], zl1 - 0.8 * p["level_h"]), (-9 * w, ay[4], zl1 - 3.6 * p["level_h"])]
    cv.tube(aorta, ra, T.AORTA, 8, vessel_ok)
    bif = np.array(aorta[-1])
    for s in (1, -1):
        cv.tube([bif, bif + (s * 28 * w, -6, -45 * h), bif + (s * 55 * w, 2, -100 * h)], [8 * sa, 7 * sa, 6.5 * sa],
                T.ARTERY, None, vessel_ok)
    z_cel, z_sma, z_ren = zl1 + 0.5 * p["level_h"], zl1, zl1 - 0.6 * p["level_h"]
    cel = (-12 * w, ay[2] + ra[2] - 2, z_cel)
    cv.tube([cel, (-10 * w, 50, z_cel - 3), (+15 * w, 48, z_cel - 8), (+40 * w, 33, z_cel - 8)], 3.5, T.ARTERY, None,
            FREE)
    # splenic artery along the upper border of the pancreas, behind the stomach
    cv.tube([(-10 * w, 50, z_cel - 3), (-30 * w, 38, z_cel - 14), (-55 * w, 12, z_cel - 14), (-78 * w, -12, z_cel - 8)],
            3.2, T.ARTERY, None, FREE)
    sma = [(-12 * w, ay[2] + ra[2] - 2, z_sma), (-10 * w, 46, z_sma - 14), (-7 * w, 52, z_sma - 55),
           (-3 * w, 64, z_sma - 110)]
    cv.tube(sma, [4.0, 4.0, 3.5, 3.0], T.ARTERY, None, FREE)
    # --- kidneys (positions needed by vessels)
    kid = {}
    for name, sgn, jit, sk, rj in (("left", -1, J["lk"], p["s_kidney"][1], p["kidney_R_jit"][0]),
                                    ("right", 1, J["rk"], p["s_kidney"][0], p["kidney_R_jit"][1])):
        cz = (-108.0 * h if sgn < 0 else -123.0 * h) + (zl1 + 85 * h) * 0.5
        c = np.array([sgn * (p["vb_lat"] + 50) * w, -12.0, cz]) + jit
        u = np.array([-sgn * 0.2, -0.15, 1.0]) + rj
        R = rotation_from_axes(u, (-sgn * 0.55, 1.0, 0.0))
        med = np.array([-sgn * 1.0, 0.6, 0.0])
        med -= (med @ R[:, 0]) * R[:, 0]
        med /= np.linalg.norm(med)
        kid[name] = dict(c=c, R=R, s=sk, hil=c + med * 28 * sk, top=c + R[:, 0] * 55 * sk, sgn=sgn)
    # renal arteries (behind the IVC on the right) and renal veins (left one in front of the aorta)
    for name in ("left", "right"):
        kd = kid[name]
        cv.tube([(-11 * w, ay[3] - 4, z_ren), (kd["hil"][0] * 0.5, kd["hil"][1] + 2, (z_ren + kd["hil"][2]) / 2),
                 kd["hil"]], 3.2, T.ARTERY, None, FREE)
    # --- IVC and veins
    si = p["s_ivc"]
    ivc_x = 24 * w
    z_conf = zl1 - 3.9 * p["level_h"]
    ivc = [(ivc_x - 2, 34.0, 50 * h), (ivc_x, 24.0, -20 * h), (ivc_x, 21.0, -70 * h), (ivc_x - 2, 23.0, z_ren),
           (ivc_x - 5, 25.0, (z_ren + z_conf) / 2), (ivc_x - 8, 24.0, z_conf)]
    cv.tube(ivc, [12 * si, 12.5 * si, 12 * si, 11.5 * si, 10.5 * si, 10 * si], T.IVC_SUPRA, 9, vessel_ok,
            tissue_fn=lambda X, Y, Z, sl: np.where(Z > z_ren, T.IVC_SUPRA, T.IVC_INFRA).astype(np.uint8))
    cf = np.array(ivc[-1])
    for s in (1, -1):
        cv.tube([cf, cf + (s * 25 * w - 6, -10, -45 * h), cf + (s * 48 * w - 4, -4, -95 * h)], [9.0, 8.5, 8.0],
                T.VEIN, None, vessel_ok)
    lk, rk = kid["left"], kid["right"]
    cv.tube([lk["hil"], (-30 * w, ay[3] + ra[3] + 3, z_ren + 4), (-8 * w, ay[3] + ra[3] + 6, z_ren + 3),
             (ivc_x - 4, 28.0, z_ren)], 4.5, T.RENAL_VEIN, None, FREE)
    cv.tube([rk["hil"], (ivc_x + 8, 20.0, z_ren - 4)], 5.0, T.RENAL_VEIN, None, FREE)
    # --- portal system (label 10): confluence behind the pancreatic neck, up-right into the hilum; splenic vein
    conf = np.array([8 * w, 38.0, zl1 - 0.7 * p["level_h"]])
    hil = np.array([40 * w, 30.0, -75 * h])
    pv = [conf, conf + (14 * w, -3, 18 * h), hil, (62 * w, 22, -68 * h), (80 * w, 15, -65 * h)]
    cv.tube(pv, [7.5, 7.5, 7.0, 5.5, 4.5], T.PORTAL, 10, FREE)
    cv.tube([hil, (20 * w, 45, -62 * h), (5 * w, 58, -55 * h)], [5.0, 4.5, 4.0], T.PORTAL, 10, FREE)
    # spleen geometry first: the splenic vein ends at its hilum
    zk, ak, _, _ = p["cavity_keys"]
    a_sp = float(np.interp(-70 * h, zk[::-1], ak[::-1]))
    ss = p["s_spleen"]
    cs = np.array([-(a_sp - 30 * ss), -38.0, -68 * h]) + J["spleen"]
    Rs = rotation_from_axes(np.array([-0.35, 0.55, -0.75]) + p["spleen_R_jit"], (0.8, 0.55, 0.0))
    # the spleen lies under the diaphragm: push it down until its surface clears the dome (and its recesses)
    sph = np.random.default_rng(0).normal(size=(400, 3))
    sph = sph / np.linalg.norm(sph, axis=1, keepdims=True) * np.array([55, 36, 21]) * ss * 1.05
    surf = cs + sph @ Rs.T
    cs = cs - np.array([0.0, 0.0, max(0.0, float(np.max(surf[:, 2] - (diaphragm_z(p, surf[:, 0], surf[:, 1]) - 6))))])
    sp_hilum = cs + Rs[:, 2] * 22 * ss
    cv.tube([conf, conf + (-23 * w, -2, 8 * h), (-45 * w, 14, conf[2] + 16 * h), (-68 * w, -2, conf[2] + 24 * h),
             sp_hilum], 4.8, T.PORTAL, 10, FREE)
    cv.tube([conf, conf + (4 * w, 14, -35 * h), conf + (8 * w, 24, -90 * h)], [6.0, 5.5, 5.0], T.VEIN, None, FREE)
    # --- adrenals: thin inverted-Y glands above-medial to the upper poles
    for name, lab in (("right", 12), ("left", 13)):
        kd = kid[name]
        sg = kd["sgn"]
        base = np.array([sg * 33 * w, 2.0 if sg > 0 else 6.0, kd["top"][2] + (22 if sg > 0 else 14) * h])
        base += J["radr" if sg > 0 else "ladr"] * 0.5
        for off in ((-sg * 5, -14, -24 * h), (sg * 9, -12, -22 * h), (0, 9, 8)):
            cv.tube([base, base + np.array(off) * 0.55, base + np.array(off)], [4.3, 4.0, 3.0], T.ADRENAL, lab, FREE)
    # --- esophagus (label 5) through the hiatus to the cardia
    eso = [(-6 * w, 38, 170.0), (-8 * w, 38, 60 * h), (-14 * w, 33, -5 * h), (-27 * w, 22, -28 * h),
           (-38 * w, 12, -40 * h)]
    cv.tube(eso, 9.0, T.ESO_WALL, 5, allowed_lut([T.FAT_VISC, T.LUNG, T.MED_FAT, T.MUSCLE]))
    if p["esophagus_gas"]:
        cv.tube(eso[:3], 2.5, T.GAS, None, allowed_lut([T.ESO_WALL]), labelled_min_radius=False)
    # --- gallbladder (label 4): pear from the neck at the hilum to the fundus at the liver edge
    if p["gb_present"]:
        g, jg = p["s_gb"], J["gb"]
        gb = [np.array((38 * w, 22, -78 * h)) + jg, np.array((52 * w, 40, -98 * h)) + jg,
              np.array((58 * w, 40 + 18 * g, -98 * h - 18 * g)) + jg]
        cv.tube(gb, [7.0 * g, 14.0 * g, 16.0 * g], T.GB_WALL, 4, FREE)
        cv.tube(gb, [7.0 * g - 2.5, 14.0 * g - 2.5, 16.0 * g - 2.5], T.GB_BILE, 4, allowed_lut([T.GB_WALL]),
                labelled_min_radius=False)
    # --- pancreas (label 11): head in the duodenal C-loop, neck over the confluence, body/tail to the spleen
    sp_ = p["s_pancreas"]
    jp = J["pancreas"]
    pan = [np.array(q) + jp for q in ((22 * w, 30, conf[2] - 32 * h), (38 * w, 30, conf[2] - 18 * h),
                                      (16 * w, 53, conf[2]), (-15 * w, 49, conf[2] + 8 * h),
                                      (-45 * w, 26, conf[2] + 18 * h), (-68 * w, 4, conf[2] + 26 * h))]
    pfat = p["pancreas_fat"]

    def pan_tissue(X, Y, Z, sl):
        fpat = cv.field_in(p["f_pfat"], sl)
        return np.where(fpat > 2.1 - 0.8 * pfat, T.PANCREAS_FAT, T.PANCREAS).astype(np.uint8)

    cv.tube(pan, np.array([11.0, 16.0, 10.0, 11.0, 10.0, 9.0]) * sp_, T.PANCREAS, 11, FREE,
            radius_field=p["f_pancreas"], field_amp=1.8, tissue_fn=pan_tissue)
    # --- kidneys (labels 2, 3): bean = ellipsoid minus hilar notch, cortex/medulla, sinus fat, pelvis, ureter
    for name, lab in (("right", 2), ("left", 3)):
        kd = kid[name]
        c, R, s = kd["c"], kd["R"], kd["s"]
        axes = (55 * s, 28 * s, 22 * s)
        hil_c = c + (kd["hil"] - c) * 0.85

        def kidney_chunk(sl, X, Y, Z, f, c=c, R=R, s=s, axes=axes, hil_c=hil_c, lab=lab):
            notch = ellipsoid_f(X, Y, Z, hil_c, (22 * s, 12 * s, 10 * s), R)
            dx, dy, dz = X - F32(c[0]), Y - F32(c[1]), Z - F32(c[2])
            uu = dx * F32(R[0, 0]) + dy * F32(R[1, 0]) + dz * F32(R[2, 0])
            vv = dx * F32(R[0, 1]) + dy * F32(R[1, 1]) + dz * F32(R[2, 1])
            nn = dx * F32(R[0, 2]) + dy * F32(R[1, 2]) + dz * F32(R[2, 2])
            pyr = np.cos(5.0 * np.arctan2(nn, vv)) * np.cos(np.pi * uu / (0.42 * axes[0]))
            ctx = (f < 6.0) | (pyr < -0.25)
            tis = np.where(ctx, T.KIDNEY_CORTEX, T.KIDNEY_MEDULLA).astype(np.uint8)
            inside = (f > 0) & (notch < 0)
            cv.paint(sl, inside, tis, lab, FREE)
            cv.paint(sl, (f > 0) & (notch >= 0), T.SINUS_FAT, None, FREE)
            cv.paint(sl, ellipsoid_f(X, Y, Z, hil_c, (11 * s, 7 * s, 6 * s), R) > 0, T.URINE, None,
                     allowed_lut([T.SINUS_FAT]))

        _blob(cv, [(c, axes, R)], kidney_chunk, p["f_kidney"], 2.5)
        sg = kd["sgn"]
        cv.tube([kd["hil"], (sg * (p["vb_lat"] + 24) * w, 6.0, kd["hil"][2] - 60 * h),
                 (sg * 40 * w, 20.0, kd["hil"][2] - 160 * h)], 2.8, T.URINE, None, FREE)
    # --- spleen (label 1): crescent = ellipsoid carved on its visceral side; arciform pattern for the arterial phase
    def spleen_chunk(sl, X, Y, Z, f):
        pat = cv.field_in(p["f_spleen_pat"], sl)
        tis = np.where(pat > 0.45, T.SPLEEN_DARK, T.SPLEEN).astype(np.uint8)
        cv.paint(sl, f > 0, tis, 1, FREE)

    _blob(cv, [(cs, (55 * ss, 36 * ss, 21 * ss), Rs)], spleen_chunk, p["f_spleen"], 3.0,
          carve=[(cs + Rs[:, 2] * 57 * ss + Rs[:, 1] * 4, (46 * ss, 34 * ss, 34 * ss), Rs)])
    has_splenule, r_acc, d_acc = p["splenule"]
    if has_splenule:
        c_acc = cs + Rs[:, 2] * 30 * ss - Rs[:, 0] * 30 * ss + d_acc * 6
        for sl, X, Y, Z in cv.boxes(c_acc - r_acc, c_acc + r_acc):
            cv.paint(sl, ellipsoid_f(X, Y, Z, c_acc, (r_acc, r_acc, r_acc)) > 0, T.SPLEEN, 1, FREE)
    # --- stomach (label 7): J-shaped tube, wall, gas above a fluid level
    st, js = p["s_stomach"], J["stomach"]
    # fundus under the left dome, body curving forward and down, antrum crossing the midline in front of the pancreas
    sto = [np.array(q) + js for q in ((-52 * w, -18, -28 * h), (-58 * w, 0, -55 * h), (-50 * w, 34, -86 * h),
                                      (-28 * w, 60, -108 * h), (0.0, 72, -118 * h), (25 * w, 62, -112 * h),
                                      (38 * w, 44, -105 * h))]
    rs = np.array([30, 37, 35, 29, 23, 16, 9.0]) * st
    gas_y = p["stomach_gas_y"]
    content = {"fluid": T.STOMACH_FLUID, "food": T.FECES, "contrast": T.ORAL_CONTRAST}[p["stomach_content"]]
    cv.tube(sto, rs, T.STOMACH_WALL, 7, FREE, radius_field=p["f_stomach"], field_amp=2.0)
    cv.tube(sto, rs - 4.0, content, 7, allowed_lut([T.STOMACH_WALL]), radius_field=p["f_stomach"], field_amp=2.0,
            tissue_fn=lambda X, Y, Z, sl: np.where(Y > gas_y, T.GAS, content).astype(np.uint8),
            labelled_min_radius=False)
    # --- liver (label 6): right lobe, medial segment, left lobe; fills the space left under the right dome
    sl_, jl = p["s_liver"], J["liver"]
    a_lv = float(np.interp(-60 * h, zk[::-1], ak[::-1]))
    parts = [(np.array((a_lv - 66 * w, -8.0, -62 * h)) + jl, (80 * sl_, 90 * sl_, 80 * sl_), None),
             (np.array((25 * w, 38.0, -58 * h)) + jl, (50 * sl_, 48 * sl_, 46 * sl_), None),
             (np.array((-28 * w, 48.0, -45 * h)) + jl, (72 * sl_, 30 * sl_, 40 * sl_),
              rotation_from_axes((1.0, 0.0, 0.25), (0.0, 1.0, 0.0)))]
    _blob(cv, parts, lambda sl, X, Y, Z, f: cv.paint(sl, f > 0, T.LIVER, 6, FREE), p["f_liver"], 7.0, p["f_liver2"],
          1.2, k=25.0)
    # intrahepatic veins change HU only (their voxels stay liver)
    in_liver = allowed_lut([T.LIVER])
    hv0 = np.array((ivc_x, 22.0, -15 * h))
    for end, r0 in (((105 * w, -15, -60 * h), 6.0), ((50 * w, 55, -72 * h), 5.0), ((-32 * w, 55, -35 * h), 4.5)):
        mid = (hv0 + np.array(end)) / 2 + (0, 0, 6)
        cv.tube([hv0, mid, end], [r0, r0 * 0.65, 1.8], T.HEPATIC_VEIN, None, in_liver)
    for a_, b_ in ((((80 * w, 15, -65 * h)), (108 * w, 0, -95 * h)), (((80 * w, 15, -65 * h)), (96 * w, 30, -38 * h)),
                   (((5 * w, 58, -55 * h)), (-42 * w, 55, -50 * h)), (((40 * w, 30, -75 * h)), (50 * w, 60, -95 * h))):
        cv.tube([a_, (np.array(a_) + np.array(b_)) / 2 + (0, 0, 4), b_], [4.0, 3.0, 1.6], T.LIVER_PORTAL_BRANCH,
                None, in_liver)
    # --- bowel into the remaining visceral fat: duodenum, colon, small bowel, bladder
    paint_bowel(cv, p, np.array(sto[-1]))
    return {"kidneys": kid, "spleen_center": cs}


def paint_bowel(cv: Canvas, p: dict, pylorus: np.ndarray) -> None:
    """Duodenal C-loop, colon frame with gas/stool, small-bowel loops with fluid or oral contrast, bladder."""
    h, w = p["h"], p["w"]
    wall_ok = FREE
    lum_ok = allowed_lut([T.BOWEL_WALL])
    duo = [pylorus, (52 * w, 22, -102 * h), (58 * w, 8, -118 * h), (58 * w, 5, -148 * h), (30 * w, 12, -165 * h),
           (0.0, 45, -167 * h), (-28 * w, 35, -150 * h), (-38 * w, 30, -128 * h)]
    rd = [9.0, 13, 12, 12, 11, 8, 10, 10]
    cv.tube(duo, rd, T.BOWEL_WALL, None, wall_ok)
    cv.tube(duo, np.array(rd) - 2.5, T.BOWEL_FLUID, None, lum_ok,
            tissue_fn=lambda X, Y, Z, sl: np.where(Y > 30, T.GAS, T.BOWEL_FLUID).astype(np.uint8))
    jc = p["j"]["colon"]
    col = [np.array(q) + jc for q in (
        (70 * w, 20, -225 * h), (92 * w, 0, -185 * h), (96 * w, 5, -145 * h), (82 * w, 32, -125 * h),
        (40 * w, 78, -142 * h), (0, 86, -168 * h), (-45 * w, 72, -140 * h), (-90 * w, 20, -102 * h),
        (-100 * w, 0, -150 * h), (-98 * w, 5, -215 * h), (-70 * w, 35, -265 * h), (-20 * w, 45, -285 * h),
        (5, 10, -305 * h), (0, -28, -330 * h), (0, -32, -420 * h))]
    rc = [28, 25, 24, 22, 21, 20, 20, 20, 18, 18, 17, 17, 18, 20, 18.0]
    stool = p["colon_stool"]

    def colon_content(X, Y, Z, sl):
        f = cv.field_in(p["f_stool"], sl)
        return np.where(f > 1.2 - 2.0 * stool, T.FECES, T.GAS).astype(np.uint8)

    cv.tube(col, rc, T.BOWEL_WALL, None, wall_ok)
    cv.tube(col, np.array(rc) - 2.2, T.GAS, None, lum_ok, tissue_fn=colon_content)
    # small bowel: sponge of loops from two random fields, in front of the retroperitoneum
    z_top = -112 * h
    content = T.ORAL_CONTRAST if p["oral_contrast"] else T.BOWEL_FLUID
    chunks = list(cv.boxes((cv.xs.min(), 0.0, cv.zs.min()), (cv.xs.max(), cv.ys.max(), z_top + 45.0)))

    def bowel_chunk(i: int) -> None:
        sl, _, _, Z = chunks[i]
        t = cv.tis[sl]
        free = t == T.FAT_VISC
        if not free.any():
            return
        g1 = cv.field_in(p["f_bowel"], sl)
        g2 = cv.field_in(p["f_bowel2"], sl)
        # the upper limit of the small-bowel mass undulates instead of being a flat cut
        free &= Z < z_top + 20.0 * np.abs(g1 + g2)
        loops = (g1 > -0.15) & (np.abs(g2) > 0.1) & free
        lumen = (g1 > 0.1) & (np.abs(g2) > 0.25)
        t[loops] = T.BOWEL_WALL
        t[loops & lumen] = content
        t[loops & lumen & (g2 > 1.3)] = T.GAS

    parallel_map(bowel_chunk, range(len(chunks)))
    # urinary bladder low in the pelvis
    zb = -345 * h
    bx = cv.box((-60, -10, zb - 45), (60, 90, zb + 45))
    if bx is not None:
        sl, X, Y, Z = bx
        f = ellipsoid_f(X, Y, Z, (0, 40, zb), (48, 38, 38))
        cv.paint(sl, f > 0, T.BOWEL_WALL, None, allowed_lut([T.FAT_VISC, T.BOWEL_WALL, T.BOWEL_FLUID, T.GAS]))
        cv.paint(sl, f > 3, T.URINE, None, allowed_lut([T.BOWEL_WALL]))


def paint_patient(cv: Canvas, p: dict) -> dict:
    """Paint a sampled patient onto the canvas; returns landmarks."""
    body = paint_body(cv, p)
    paint_skeleton(cv, p, body)
    marks = paint_organs(cv, p, body)
    del body
    return marks
