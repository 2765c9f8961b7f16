"""tools/run_demo.py never trains in the bundle folder whose models/model.pt packaging ships."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BUNDLE = REPO / "bundles" / "spleen-fast-train"


def test_demo_refuses_the_bundle_folder_as_its_root() -> None:
    before = sorted(p.name for p in (BUNDLE / "models").iterdir())
    proc = subprocess.run([sys.executable, "tools/run_demo.py", "--bundle_root", str(BUNDLE)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines()[-1] == (
        f"run_demo: {BUNDLE.resolve()} is the bundle folder, whose models/model.pt is what packaging ships; "
        "choose another --bundle_root"), proc.stderr[-2000:]
    assert sorted(p.name for p in (BUNDLE / "models").iterdir()) == before
    assert not (BUNDLE / "eval" / "demo.log").exists()
