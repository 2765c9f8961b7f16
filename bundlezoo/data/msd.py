"""Medical Segmentation Decathlon (MSD) task folders: datalists, seeded splits and the embedded phantom default.

A real MSD download (e.g. ``Task09_Spleen``) and the phantom folders written by :mod:`bundlezoo.data.layouts` share one
layout, so a bundle reads both with this module:

    <dataset_dir>/dataset.json   {"training": [{"image": "./imagesTr/x.nii.gz", "label": "./labelsTr/x.nii.gz"}, ...],
                                  "test": ["./imagesTs/y.nii.gz", ...], ...}
    <dataset_dir>/imagesTr/  <dataset_dir>/labelsTr/  <dataset_dir>/imagesTs/
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

from .checks import InputDataError, check_nifti_header, check_same_shape

__all__ = ["MSD_LAYOUT", "msd_datalist", "split_cases", "ensure_phantom_msd"]

MSD_LAYOUT = (
    "an MSD task folder: dataset.json with a 'training' list of {'image': './imagesTr/<case>.nii.gz', "
    "'label': './labelsTr/<case>.nii.gz'} entries, plus the imagesTr/ and labelsTr/ folders"
)


def split_cases(cases: list[dict[str, Any]], *, val_fraction: float, seed: int) -> tuple[list, list]:
    """Split cases into (train, validation) with a seeded shuffle of the sorted case list.

    Sorting first makes the split independent of the order in dataset.json; the seed makes it explicit and
    reproducible. At least one case goes to each side when there are two or more cases.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    ordered = sorted(cases, key=lambda c: str(c["image"]))
    random.Random(seed).shuffle(ordered)
    n_val = int(round(len(ordered) * val_fraction))
    if len(ordered) >= 2:
        n_val = min(max(n_val, 1), len(ordered) - 1)
    val = sorted(ordered[:n_val], key=lambda c: str(c["image"]))
    train = sorted(ordered[n_val:], key=lambda c: str(c["image"]))
    return train, val


def ensure_phantom_msd(dataset_dir: str | Path, *, n: int, seed: int, resolution: str = "scan") -> Path:
    """Generate the embedded phantom MSD spleen data set at ``dataset_dir`` unless it is already there.

    The data set is written to a temporary sibling folder and renamed into place, so an interrupted generation
    never leaves a folder that looks complete. Under ``torch.distributed`` only rank 0 generates; the others wait.
    """
    target = Path(dataset_dir)
    if (target / "dataset.json").is_file():
        return target
    dist = _dist()
    if dist is None or dist.get_rank() == 0:
        from .layouts import write_msd_spleen  # deferred: the phantom engine is only needed here

        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
        try:
            print(f"Generating the embedded synthetic phantom data set ({n} cases, seed {seed}) in {target}")
            write_msd_spleen(tmp, n_train=n, n_test=0, seed=seed, resolution=resolution)
            try:
                os.replace(tmp, target)
            except OSError:  # another process finished first (target exists and is non-empty)
                if not (target / "dataset.json").is_file():
                    raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    if dist is not None:
        dist.barrier()
    return target


def msd_datalist(
    dataset_dir: str | Path,
    *,
    split: str = "train",
    val_fraction: float = 0.25,
    seed: int = 0,
    embedded_dir: str | Path | None = None,
    phantom_n: int = 32,
    phantom_seed: int = 0,
    phantom_resolution: str = "scan",
    check_files: bool = True,
) -> list[dict[str, str]]:
    """Return the cases of one split of an MSD task folder as ``[{"image": path, "label": path}, ...]``.

    Args:
        dataset_dir: the MSD task folder.
        split: ``"train"``, ``"validation"`` or ``"all"`` (every labelled case).
        val_fraction: fraction of the labelled cases held out for validation.
        seed: seed of the train/validation split.
        embedded_dir: the bundle's default data location. When ``dataset_dir`` is this folder and holds no data
            set, the synthetic phantom data set is generated there first; any other empty ``dataset_dir`` is an error.
        phantom_n, phantom_seed, phantom_resolution: size, seed and grid of the embedded phantom data set.
        check_files: check every listed file's header (exists, is NIfTI, one channel, image and label shapes agree).

    Raises:
        InputDataError: with the offending path and the problem on one line.
    """
    root = Path(dataset_dir).expanduser()
    if embedded_dir is not None and _same_path(root, Path(embedded_dir)):
        ensure_phantom_msd(root, n=phantom_n, seed=phantom_seed, resolution=phantom_resolution)
    manifest = root / "dataset.json"
    if not manifest.is_file():
        raise InputDataError(manifest, f"not found; dataset_dir must be {MSD_LAYOUT}")
    try:
        meta = json.loads(manifest.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputDataError(manifest, f"is not valid JSON ({e})") from e
    entries = meta.get("training") if isinstance(meta, dict) else None
    if not isinstance(entries, list):
        raise InputDataError(manifest, f"has no 'training' list; expected {MSD_LAYOUT}")
    if not entries:
        raise InputDataError(manifest, "lists no training cases (empty data set)")

    cases = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or "image" not in entry or "label" not in entry:
            raise InputDataError(manifest, f"training entry {i} is not an {{'image', 'label'}} pair: {entry!r}")
        cases.append({"image": str((root / entry["image"]).resolve()), "label": str((root / entry["label"]).resolve())})

    if split == "all":
        chosen = sorted(cases, key=lambda c: c["image"])
    elif split in ("train", "validation"):
        train, val = split_cases(cases, val_fraction=val_fraction, seed=seed)
        chosen = train if split == "train" else val
    else:
        raise ValueError(f"split must be 'train', 'validation' or 'all', got {split!r}")

    if check_files:
        for case in chosen:
            image_shape = check_nifti_header(case["image"])
            label_shape = check_nifti_header(case["label"])
            check_same_shape(case["image"], image_shape, case["label"], label_shape)
    return chosen


def _same_path(a: Path, b: Path) -> bool:
    return os.path.abspath(a.expanduser()) == os.path.abspath(b.expanduser())


def _dist() -> Any:
    """The ``torch.distributed`` module when a process group is running, else None."""
    try:
        import torch.distributed as dist
    except ImportError:  # pragma: no cover - torch is a hard dependency
        return None
    return dist if dist.is_available() and dist.is_initialized() else None
