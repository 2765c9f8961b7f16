"""CT appearance of the phantom: tissue ids, Hounsfield values per contrast phase, texture, noise and blur.

HU values are typical adult values collected from (see docs/phantoms.md for the table):
  [Bae]     K. T. Bae, "Intravenous contrast medium administration and scan timing at CT", Radiology 256(1), 2010.
  [Prokop]  M. Prokop, M. Galanski, "Spiral and Multislice Computed Tomography of the Body", Thieme, 2003.
  [Webb]    W. R. Webb, W. E. Brant, N. M. Major, "Fundamentals of Body CT", 4th ed., Elsevier, 2015.
  [Kodama]  Y. Kodama et al., "Comparison of CT methods for determining the fat content of the liver", AJR 188, 2007.
  [Boland]  G. W. Boland et al., "Characterization of adrenal masses using unenhanced CT", AJR 171, 1998.
Enhanced values are the non-contrast value plus the phase's enhancement times a per-volume contrast strength
(injection rate, cardiac output and timing vary between patients).
"""

from __future__ import annotations

import numpy as np

__all__ = ["PHASES", "T", "HU_TABLE", "LITERATURE_RANGES", "hu_lookup", "sample_appearance"]

PHASES = ("non_contrast", "arterial", "portal_venous")
PHASE_PROBS = (0.2, 0.2, 0.6)


class T:
    """Tissue ids painted into the canvas (uint8)."""

    AIR, TABLE_SHELL, TABLE_CORE, SKIN, FAT_SC, MUSCLE, FAT_VISC, LUNG = range(8)
    MYOCARDIUM, BLOOD_HEART, BONE_CORTEX, BONE_CANC, DISC, CSF, CARTILAGE = range(8, 15)
    LIVER, HEPATIC_VEIN, LIVER_PORTAL_BRANCH, SPLEEN, SPLEEN_DARK = range(15, 20)
    KIDNEY_CORTEX, KIDNEY_MEDULLA, URINE, SINUS_FAT = range(20, 24)
    PANCREAS, PANCREAS_FAT, ADRENAL, GB_BILE, GB_WALL, ESO_WALL = range(24, 30)
    STOMACH_WALL, STOMACH_FLUID, GAS, ORAL_CONTRAST = range(30, 34)
    AORTA, ARTERY, IVC_SUPRA, IVC_INFRA, PORTAL, RENAL_VEIN, VEIN = range(34, 41)
    BOWEL_WALL, BOWEL_FLUID, FECES, LESION_HYPO, LESION_HYPER, LESION_CYST, MED_FAT = range(41, 48)
    N = 48


# tissue: (non-contrast, arterial, portal-venous) mean HU, texture amplitude (HU, low-frequency), per-volume jitter sd
HU_TABLE: dict[int, tuple[float, float, float, float, float]] = {
    T.AIR: (-1000, -1000, -1000, 0, 0),
    T.TABLE_SHELL: (250, 250, 250, 10, 40),
    T.TABLE_CORE: (-800, -800, -800, 10, 30),
    T.SKIN: (35, 45, 50, 6, 5),
    T.FAT_SC: (-105, -100, -100, 4, 8),           # [Webb] fat -80..-120
    T.MUSCLE: (50, 58, 62, 4, 5),                  # [Prokop] muscle 40-60, +10-20 enhanced
    T.FAT_VISC: (-100, -95, -95, 5, 8),
    T.LUNG: (-860, -850, -850, 45, 25),            # [Webb] aerated lung bases -700..-900
    T.MYOCARDIUM: (45, 110, 100, 6, 8),
    T.BLOOD_HEART: (45, 260, 160, 8, 10),
    T.BONE_CORTEX: (1100, 1100, 1100, 60, 150),    # [Webb] cortical bone 700-1500+ (blurred by the PSF)
    T.BONE_CANC: (230, 235, 240, 35, 50),          # cancellous bone 150-350, falls with age
    T.DISC: (85, 90, 95, 8, 10),
    T.CSF: (15, 15, 15, 3, 4),
    T.CARTILAGE: (120, 125, 125, 25, 20),
    T.LIVER: (58, 80, 115, 5, 5),                  # [Kodama] normal liver 55-65 unenhanced; [Bae] +50-60 portal
    T.HEPATIC_VEIN: (40, 55, 135, 4, 5),           # unopacified veins are darker than liver, brighter in PV
    T.LIVER_PORTAL_BRANCH: (40, 110, 170, 4, 8),
    T.SPLEEN: (48, 125, 120, 5, 5),                # [Prokop] spleen 40-50, 5-10 HU below liver unenhanced
    T.SPLEEN_DARK: (48, 85, 120, 5, 5),            # arterial-phase arciform (moire) pattern
    T.KIDNEY_CORTEX: (35, 185, 175, 6, 10),        # corticomedullary phase: cortex 150-200 [Prokop]
    T.KIDNEY_MEDULLA: (32, 85, 160, 6, 10),        # medulla 60-100 arterial, homogeneous later
    T.URINE: (8, 8, 8, 3, 4),
    T.SINUS_FAT: (-90, -85, -85, 12, 8),
    T.PANCREAS: (45, 120, 100, 8, 6),              # pancreatic phase 100-130 [Bae]
    T.PANCREAS_FAT: (-40, -20, -25, 20, 10),       # fatty interdigitation of the ageing pancreas
    T.ADRENAL: (15, 55, 65, 6, 6),                 # [Boland] normal adrenal <30 HU unenhanced (lipid rich < 10)
    T.GB_BILE: (8, 8, 9, 3, 5),                    # bile 0-20
    T.GB_WALL: (40, 70, 80, 5, 5),
    T.ESO_WALL: (42, 65, 75, 6, 5),
    T.STOMACH_WALL: (42, 90, 85, 6, 6),
    T.STOMACH_FLUID: (12, 12, 12, 6, 8),
    T.GAS: (-990, -990, -990, 8, 5),
    T.ORAL_CONTRAST: (280, 280, 280, 30, 60),
    T.AORTA: (42, 320, 170, 3, 6),                 # [Bae] aortic peak 250-400 arterial, 150-200 portal
    T.ARTERY: (42, 300, 165, 3, 6),
    T.IVC_SUPRA: (42, 120, 150, 6, 6),             # renal veins return contrast early: supra-renal IVC mixes
    T.IVC_INFRA: (42, 60, 140, 6, 6),              # infra-renal IVC unopacified in the arterial phase
    T.PORTAL: (42, 115, 175, 4, 6),                # [Bae] portal vein 150-200 portal-venous phase
    T.RENAL_VEIN: (42, 170, 165, 4, 6),
    T.VEIN: (42, 70, 145, 4, 6),
    T.BOWEL_WALL: (40, 85, 90, 6, 6),
    T.BOWEL_FLUID: (15, 15, 15, 8, 8),
    T.FECES: (-40, -40, -40, 120, 20),             # mottled stool with gas bubbles
    T.LESION_HYPO: (30, 45, 60, 5, 8),             # hypovascular metastasis: below parenchyma in every phase
    T.LESION_HYPER: (55, 150, 100, 6, 10),         # hypervascular lesion: arterial hyper-enhancement
    T.LESION_CYST: (8, 8, 8, 3, 4),
    T.MED_FAT: (-95, -90, -90, 12, 8),
}

# Literature range of the mean HU of each labelled organ's parenchyma per phase; used by the tests and the docs.
# (non_contrast, arterial, portal_venous) as (lo, hi).
LITERATURE_RANGES: dict[str, tuple[tuple[float, float], tuple[float, float], tuple[float, float]]] = {
    "spleen": ((35, 60), (80, 160), (95, 145)),
    "liver": ((45, 70), (60, 100), (90, 140)),
    "right_kidney": ((25, 45), (90, 200), (130, 210)),
    "left_kidney": ((25, 45), (90, 200), (130, 210)),
    "pancreas": ((20, 55), (85, 150), (70, 125)),   # low end: fatty infiltration of the ageing pancreas
    "aorta": ((30, 55), (200, 450), (120, 220)),
    "inferior_vena_cava": ((30, 55), (35, 150), (100, 190)),
    "portal_and_splenic_veins": ((30, 55), (70, 180), (130, 220)),
    "gallbladder": ((-5, 25), (-5, 25), (-5, 30)),
}


def sample_appearance(rng: np.random.Generator, phase: str | None) -> dict:
    """Draw the per-volume appearance: phase, contrast strength, per-tissue HU jitter, noise and blur."""
    drawn = str(rng.choice(PHASES, p=PHASE_PROBS))  # always drawn, so a forced phase changes nothing else
    if phase is None:
        phase = drawn
    elif phase not in PHASES:
        raise ValueError(f"phase must be one of {PHASES} or None, got {phase!r}")
    strength = float(rng.uniform(0.8, 1.2))
    jitter = rng.standard_normal(T.N)
    return {
        "phase": phase,
        "contrast_strength": strength,
        "jitter": jitter,
        "noise_sigma_5mm": float(rng.uniform(7.0, 15.0)),  # HU at 5 mm slices, scaled by sqrt(5 / thickness)
        "psf_sigma_mm": float(rng.uniform(0.45, 0.8)),     # soft-tissue kernel, FWHM about 1.1-1.9 mm
        "fov_padding": float(rng.choice([-1024.0, -2048.0, np.nan, np.nan])),  # outside the reconstruction circle
    }


def hu_lookup(app: dict) -> tuple[np.ndarray, np.ndarray]:
    """Per-tissue mean HU and texture amplitude for a sampled appearance (lookup tables of length 256)."""
    ph = PHASES.index(app["phase"])
    base = np.full(256, -1000.0, np.float32)
    amp = np.zeros(256, np.float32)
    for tid, (nc, art, pv, tex, jit) in HU_TABLE.items():
        val = (nc, art, pv)[ph]
        enh = (val - nc) * app["contrast_strength"]
        # unenhanced tissue varies less between patients than enhancement does
        base[tid] = nc + enh + jit * app["jitter"][tid] * (0.5 if ph == 0 else 1.0)
        amp[tid] = tex
    return base, amp
