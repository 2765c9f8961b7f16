"""Smoke tests of tools/bench_phantoms.py (the commands that produce the numbers and the figure in docs/phantoms.md)."""

from __future__ import annotations

import importlib.util
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_phantoms", ROOT / "tools" / "bench_phantoms.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_figure_is_a_small_png(bench, tmp_path):
    res = bench.figure(out=str(tmp_path / "f.png"), seeds="0,1", resolution="tiny", dpi=40)
    data = (tmp_path / "f.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and res["bytes"] == len(data) < 300_000


def test_speed_and_baseline_report(bench):
    sp = bench.speed(resolution="tiny", n=1, warmup=False)
    assert sp["seconds_per_volume_mean"] > 0 and sp["machine"]["cuda"] is None
    bl = bench.baseline(resolution="tiny", n=2)
    assert 0.0 <= bl["dice_mean"] < 0.5 and len(bl["dice"]) == 2


def test_hu_table_lists_every_tissue(bench):
    from bundlezoo.data.phantom.appearance import HU_TABLE

    text = bench.hu_table()
    assert text.count("\n| ") >= len(HU_TABLE) and "| liver | 58 | 80 | 115 |" in text
