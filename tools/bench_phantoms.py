"""Benchmarks and figures for the synthetic phantom engine (synthetic phantoms, not patient data).

Usage::

    python tools/bench_phantoms.py speed --resolution fast --n 8        # volumes per second (generation [+ write])
    python tools/bench_phantoms.py speed --resolution scan --n 4 --write
    python tools/bench_phantoms.py baseline --resolution fast --n 12    # HU-window + largest-component spleen Dice
    python tools/bench_phantoms.py volumes --n 40                       # organ volume ranges over seeds
    python tools/bench_phantoms.py figure --out docs/phantoms.png       # axial/coronal slices with label overlay
    python tools/bench_phantoms.py hu_table                             # the HU model as a markdown table

Each command prints one JSON object (and ``figure`` writes the PNG atomically).
"""

from __future__ import annotations

import io
import json
import pathlib
import tempfile
import time

import numpy as np

from bundlezoo.data.io import atomic_write_bytes, save_nifti
from bundlezoo.data.phantom import BTCV_LABELS, generate_phantom
from bundlezoo.data.phantom.baseline import threshold_lcc_dice
from bundlezoo.data.phantom.canvas import n_threads
from tools.provenance import machine_info


def speed(resolution: str = "fast", n: int = 8, seed: int = 1000, write: bool = False, warmup: bool = True) -> dict:
    """Time ``n`` phantoms (after one warm-up); with ``write`` also the NIfTI image + label writes (gzip level 1)."""
    if warmup:
        generate_phantom(seed - 1, resolution=resolution)
    walls, cpus, voxels = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(n):
            t0, c0 = time.perf_counter(), time.process_time()
            ph = generate_phantom(seed + i, resolution=resolution)
            if write:
                save_nifti(pathlib.Path(tmp) / "img.nii.gz", ph.image, ph.affine)
                save_nifti(pathlib.Path(tmp) / "lab.nii.gz", ph.label, ph.affine)
            walls.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - c0)
            voxels.append(int(np.prod(ph.image.shape)))
    res = {"command": "speed", "resolution": resolution, "n": n, "write": write,
           "seconds_per_volume_mean": round(float(np.mean(walls)), 3),
           "seconds_per_volume_median": round(float(np.median(walls)), 3),
           "volumes_per_second": round(1.0 / float(np.mean(walls)), 3),
           "cpu_seconds_per_volume": round(float(np.mean(cpus)), 3),
           "mean_voxels": int(np.mean(voxels)), "machine": {**machine_info(), "phantom_threads": n_threads()}}
    print(json.dumps(res))
    return res


def baseline(resolution: str = "fast", n: int = 12, seed: int = 2000) -> dict:
    """Spleen Dice of an oracle HU window + largest connected component over ``n`` phantoms."""
    dice, phases = [], []
    for i in range(n):
        ph = generate_phantom(seed + i, resolution=resolution)
        dice.append(threshold_lcc_dice(ph.image, ph.label == 1))
        phases.append(ph.meta["phase"])
    by_phase = {p: round(float(np.mean([d for d, q in zip(dice, phases) if q == p])), 3) for p in sorted(set(phases))}
    res = {"command": "baseline", "resolution": resolution, "n": n, "seed": seed,
           "dice_mean": round(float(np.mean(dice)), 3), "dice_max": round(float(np.max(dice)), 3),
           "dice_by_phase": by_phase, "dice": [round(d, 3) for d in dice]}
    print(json.dumps(res))
    return res


def volumes(n: int = 40, seed: int = 0, resolution: str = "tiny") -> dict:
    """Organ volume percentiles (mL) over ``n`` seeds."""
    vals: dict[str, list[float]] = {}
    for i in range(n):
        for k, v in generate_phantom(seed + i, resolution=resolution).meta["organ_volumes_ml"].items():
            vals.setdefault(k, []).append(v)
    res = {"command": "volumes", "n": n, "resolution": resolution,
           "ml": {k: {q: round(float(np.percentile(v, p)), 1) for q, p in (("min", 0), ("p10", 10), ("median", 50),
                                                                           ("p90", 90), ("max", 100))}
                  for k, v in vals.items()}}
    print(json.dumps(res))
    return res


def hu_table() -> str:
    """Markdown table of the HU model (mean per phase, texture, per-volume jitter) and the tested literature ranges."""
    from bundlezoo.data.phantom.appearance import HU_TABLE, LITERATURE_RANGES, T

    names = {v: k for k, v in vars(T).items() if isinstance(v, int) and k != "N"}
    rows = ["| tissue | non-contrast | arterial | portal-venous | texture sd | per-volume sd |",
            "|---|---:|---:|---:|---:|---:|"]
    for tid, (nc, art, pv, tex, jit) in HU_TABLE.items():
        rows.append(f"| {names[tid].lower()} | {nc:g} | {art:g} | {pv:g} | {tex:g} | {jit:g} |")
    rows += ["", "| organ (label) | non-contrast | arterial | portal-venous |", "|---|---|---|---|"]
    for organ, rng in LITERATURE_RANGES.items():
        rows.append(f"| {organ} | " + " | ".join(f"{lo:g} to {hi:g}" for lo, hi in rng) + " |")
    text = "\n".join(rows)
    print(text)
    return text


def figure(out: str = "docs/phantoms.png", seeds: str | tuple = "0,1,2", resolution: str = "scan",
           dpi: int = 56) -> dict:
    """Axial (through the spleen) and coronal (through the kidneys) slices of a few phantoms, with label overlay.

    Shown in radiological convention: the patient's right on the viewer's left, anterior / superior up.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    seed_list = [int(s) for s in (seeds if isinstance(seeds, (list, tuple)) else str(seeds).split(","))]
    colors = plt.get_cmap("tab20")(np.linspace(0, 1, 20))[[0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 1, 3, 5, 7]]
    cmap = ListedColormap(colors[:13])
    fig, axs = plt.subplots(len(seed_list), 4, figsize=(13, 3.3 * len(seed_list)))
    axs = np.atleast_2d(axs)
    for r, s in enumerate(seed_list):
        ph = generate_phantom(s, resolution=resolution, orientation="RAS")
        im, lb = ph.image.astype(np.float32), ph.label
        sp = ph.meta["spacing"]
        zc = int(np.argwhere(lb == 1)[:, 2].mean())
        yc = int(np.argwhere((lb == 2) | (lb == 3))[:, 1].mean())
        views = [(im[:, :, zc].T[::-1, ::-1], lb[:, :, zc].T[::-1, ::-1], sp[1] / sp[0], "axial"),
                 (im[:, yc, :].T[::-1, ::-1], lb[:, yc, :].T[::-1, ::-1], sp[2] / sp[0], "coronal")]
        for c, (img, lab, asp, name) in enumerate(views):
            for j in range(2):
                ax = axs[r, 2 * c + j]
                ax.imshow(img, cmap="gray", vmin=-160, vmax=240, aspect=asp, interpolation="bilinear")
                if j:
                    ax.imshow(np.ma.masked_equal(lab, 0) - 1, cmap=cmap, vmin=-0.5, vmax=12.5, alpha=0.45,
                              aspect=asp, interpolation="nearest")
                ax.set_axis_off()
                m = ph.meta
                info = f"\n{sp[0]:.2f} mm, {m['slice_thickness_mm']} mm slices, noise {m['noise_sigma_hu']:.0f} HU"
                ax.set_title(f"seed {s}, {m['phase'].replace('_', '-')}, {name}" + (" + labels" if j else info),
                             fontsize=8)
    handles = [plt.Rectangle((0, 0), 1, 1, color=colors[i - 1]) for i in range(1, 14)]
    fig.legend(handles, [BTCV_LABELS[i].replace("_", " ") for i in range(1, 14)], loc="lower center", ncol=7,
               fontsize=7, frameon=False)
    fig.suptitle("Synthetic phantom CT (not patient data); window W400/L40", fontsize=10)
    fig.tight_layout(rect=(0, 0.05, 1, 0.97))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    atomic_write_bytes(out, buf.getvalue())
    res = {"command": "figure", "out": str(out), "bytes": len(buf.getvalue()), "seeds": seed_list,
           "resolution": resolution}
    print(json.dumps(res))
    return res


if __name__ == "__main__":
    import fire

    def quiet(fn):
        """Fire prints return values; the JSON line printed by each command is the output."""
        import functools

        @functools.wraps(fn)
        def run(*args, **kwargs) -> None:
            fn(*args, **kwargs)

        return run

    fire.Fire({name: quiet(fn) for name, fn in
               {"speed": speed, "baseline": baseline, "volumes": volumes, "figure": figure,
                "hu_table": hu_table}.items()})
