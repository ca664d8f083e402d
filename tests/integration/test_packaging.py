"""Installing txmon is quiet: no deprecation warning from the build backend (a newcomer
reads warnings as something they did wrong)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_building_the_distribution_prints_no_deprecation_warning(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(tmp_path), str(ROOT)],
        capture_output=True, text=True, timeout=300)
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-3000:]
    assert "deprecat" not in text.lower(), text[-3000:]
    assert list(tmp_path.glob("txmon-*.whl"))
