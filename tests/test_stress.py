"""Short runs of the stress scripts (stress/): each must hold its promises at a small size.
The full-size runs and their last figures are in stress/README.md."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

SHORT = {
    "sigterm": ["--clients", "30", "--seconds", "0.5"],
    "slowloris": ["--connections", "200", "--timeout", "1"],
    "rst_storm": ["--sessions", "200", "--concurrency", "40"],
    "slow_readers": ["--slow", "4", "--fast", "2", "--seconds", "0.5"],
}


@pytest.mark.parametrize("script", SHORT)
def test_stress_script_short_run(script: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", f"stress.{script}", *SHORT[script]],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    line = result.stdout.strip().splitlines()[-1]
    assert "FAILED" not in line
    assert line.startswith(script.replace("_", " ") + ":"), line
