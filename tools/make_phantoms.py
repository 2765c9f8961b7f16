"""Generate synthetic phantom CT data sets (not patient data) in the layouts of the real data sets.

Usage::

    python tools/make_phantoms.py --task spleen --n 32 --out data/spleen --seed 0 [--n_test 4] [--resolution scan]
    python tools/make_phantoms.py --task btcv --n 24 --n_val 6 --out data/btcv --seed 0
    python tools/make_phantoms.py --task unlabeled --n 100 --out data/ssl --seed 0 --resolution fast

``--task spleen`` writes the MSD Task09_Spleen layout (``dataset.json``), ``btcv`` the BTCV/UNETR layout
(``dataset_0.json``), ``unlabeled`` ``images/`` + ``dataset.json``. The command refuses to write into a non-empty
folder that has no ``phantom_manifest.json`` (i.e. one it did not make) and exits with status 2; a complete folder
made with the same arguments is reused, ``--overwrite`` regenerates it. One seed gives byte-identical files.
"""

from __future__ import annotations

import sys

from bundlezoo.data.layouts import NotAPhantomFolderError, write_btcv, write_msd_spleen, write_unlabeled

TASKS = ("spleen", "btcv", "unlabeled")


def make_phantoms(task: str, n: int, out: str, seed: int = 0, resolution: str = "scan", n_test: int = 0,
                  n_val: int = 0, progress: bool = True, overwrite: bool = False) -> None:
    """Write ``n`` phantoms for ``task`` into ``out`` (see the module docstring).

    Args:
        task: "spleen" (MSD Task09), "btcv" or "unlabeled".
        n: number of labelled training cases (spleen, btcv: training + ``n_val`` validation) or of images.
        out: output folder.
        seed: data-set seed.
        resolution: "scan", "fast" or "tiny".
        n_test: spleen only: unlabelled ``imagesTs`` cases.
        n_val: btcv: validation cases in ``dataset_0.json``; unlabeled: cases in the ``validation`` list.
        progress: show a progress bar.
        overwrite: regenerate even if a complete folder with the same arguments exists.
    """
    try:
        if task not in TASKS:
            raise ValueError(f"--task must be one of {TASKS}, got {task!r}")
        if int(n) < 1:
            raise ValueError("--n must be at least 1")
        kw = dict(seed=int(seed), resolution=str(resolution), progress=bool(progress), overwrite=bool(overwrite))
        if task == "spleen":
            path = write_msd_spleen(out, int(n), int(n_test), **kw)
        elif task == "btcv":
            path = write_btcv(out, int(n), int(n_val), **kw)
        else:
            path = write_unlabeled(out, int(n), n_val=int(n_val), **kw)
    except (NotAPhantomFolderError, NotADirectoryError, ValueError) as e:
        print(f"make_phantoms: error: {e}", file=sys.stderr)
        sys.exit(2)
    print(f"make_phantoms: {task} phantoms (synthetic, not patient data) in {path}", file=sys.stderr)


def main() -> None:
    """Console entry point (``bundlezoo-phantoms``)."""
    import fire

    fire.Fire(make_phantoms)


if __name__ == "__main__":
    main()
