"""Medical Segmentation Decathlon (MSD) task folders: the reader, seeded splits and the embedded phantom default.

Both are data-source components a config names: :class:`MSDFolder` reads a folder, :class:`PhantomMSD` makes the
embedded one. Reading never generates anything.

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
from pathlib import Path
from typing import Any

from .checks import InputDataError, check_nifti_header, check_same_shape
from .generate import generate_once

__all__ = ["MSD_LAYOUT", "MSDFolder", "PhantomMSD", "msd_datalist", "split_cases"]

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


class MSDFolder:
    """An MSD task folder that already exists (a real download, or any folder in its layout); it is only read.

    The training and validation datalists of a bundle come from one such component, so both read one source with
    one split.

    Args:
        dataset_dir: the task folder (``dataset.json``, ``imagesTr/``, ``labelsTr/``).
        val_fraction: fraction of the labelled cases held out for validation.
        seed: seed of the train/validation split.
        check_files: check every listed file's header (see :func:`msd_datalist`).

    Example::

        "data_source": {"_target_": "bundlezoo.data.MSDFolder", "dataset_dir": "@dataset_dir", "seed": "@seed"},
        "train": {"datalist": "$@data_source.datalist('train')", ...}
    """

    def __init__(self, dataset_dir: str | os.PathLike, *, val_fraction: float = 0.25, seed: int = 0,
                 check_files: bool = True) -> None:
        self.dataset_dir = Path(dataset_dir).expanduser()
        self.val_fraction = val_fraction
        self.seed = seed
        self.check_files = check_files

    def datalist(self, split: str = "train") -> list[dict[str, str]]:
        """The cases of ``split`` (``"train"``, ``"validation"`` or ``"all"``); see :func:`msd_datalist`."""
        return msd_datalist(self.dataset_dir, split=split, val_fraction=self.val_fraction, seed=self.seed,
                            check_files=self.check_files)


class PhantomMSD:
    """The embedded default data set: seeded synthetic phantoms in the MSD Task09_Spleen layout, generated on first use.

    A config names it explicitly and takes the folder from it, so a ``--dataset_dir`` given on the command line
    replaces the whole expression and nothing is generated::

        "phantom": {"_target_": "bundlezoo.data.PhantomMSD", "dataset_dir": "$@bundle_root + '/data/phantom'",
                    "n": 32, "seed": 0, "resolution": "scan"},
        "dataset_dir": "$@phantom.prepare()"

    Generation is locked and atomic (:func:`~bundlezoo.data.generate.generate_once`): a second run waits for the
    first, partial folders of interrupted runs are removed, and the folder appears only when complete.

    Args:
        dataset_dir: where the data set lives (generated there when it holds no ``dataset.json``).
        n: number of labelled cases.
        seed: data-set seed (case seeds derive from it).
        resolution: phantom grid (``"scan"``, ``"fast"``, ``"tiny"``).
        wait: seconds to wait for another run generating the same folder (``None``: as long as it takes; 0: refuse).
    """

    def __init__(self, dataset_dir: str | os.PathLike, *, n: int = 32, seed: int = 0, resolution: str = "scan",
                 wait: float | None = None) -> None:
        self.dataset_dir = Path(dataset_dir).expanduser()
        self.n = int(n)
        self.seed = int(seed)
        self.resolution = resolution
        self.wait = wait

    def prepare(self) -> str:
        """Generate the data set unless it is complete already; returns its folder."""
        from .layouts import write_msd_spleen  # deferred: the phantom engine is only needed here

        def write(folder: Path) -> None:
            write_msd_spleen(folder, n_train=self.n, n_test=0, seed=self.seed, resolution=self.resolution)

        what = f"synthetic phantom data set ({self.n} cases, seed {self.seed})"
        return str(generate_once(self.dataset_dir, write, marker="dataset.json", description=what, wait=self.wait))


def msd_datalist(
    dataset_dir: str | Path,
    *,
    split: str = "train",
    val_fraction: float = 0.25,
    seed: int = 0,
    check_files: bool = True,
) -> list[dict[str, str]]:
    """Return the cases of one split of an MSD task folder as ``[{"image": path, "label": path}, ...]``.

    Args:
        dataset_dir: the MSD task folder.
        split: ``"train"``, ``"validation"`` or ``"all"`` (every labelled case).
        val_fraction: fraction of the labelled cases held out for validation.
        seed: seed of the train/validation split.
        check_files: check every listed file's header (exists, is NIfTI, one channel, image and label shapes agree).

    Raises:
        InputDataError: with the offending path and the problem on one line.
    """
    root = Path(dataset_dir).expanduser()
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
