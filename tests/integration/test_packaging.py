"""Installing txmon is quiet: no deprecation warning from the build backend (a newcomer
reads warnings as something they did wrong)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_building_the_distribution_prints_no_deprecation_warning(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(tmp_path), str(ROOT)],
        capture_output=True, text=True, timeout=300)
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-3000:]
    assert "deprecat" not in text.lower(), text[-3000:]
    wheels = list(tmp_path.glob("txmon-*.whl"))
    assert wheels
    # The live page works without internet: its page and uPlot (with its licence) ship.
    names = set(zipfile.ZipFile(wheels[0]).namelist())
    static = "api/static/"
    assert {static + f for f in ("live.html", "live.js", "live.css", "vendor/uplot/LICENSE",
                                 "vendor/uplot/uPlot.iife.min.js")} <= names
