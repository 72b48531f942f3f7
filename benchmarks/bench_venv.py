"""The suite's own virtual environment, in the gitignored `.cache/bench-venv` of the repo (not named
`venv.py`: run as `python benchmarks/run.py`, that name would hide the standard library's venv).

Created on first use; reinstalled when `requirements.txt` or `pyproject.toml` changes.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import venv
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VENV = REPO / ".cache" / "bench-venv"
REQUIREMENTS = Path(__file__).resolve().parent / "requirements.txt"
STAMP = VENV / ".installed"
PIP_TIMEOUT = 900  # seconds for one pip install


def python() -> Path:
    return VENV / "bin" / "python"


def _fingerprint() -> str:
    digest = hashlib.sha256()
    for path in (REQUIREMENTS, REPO / "pyproject.toml"):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def inside() -> bool:
    return Path(sys.prefix).resolve() == VENV.resolve()


def ensure(*, quiet: bool = True) -> Path:
    """Create and fill the venv if it is missing or stale; return its python."""
    fingerprint = _fingerprint()
    if python().exists() and STAMP.exists() and STAMP.read_text().strip() == fingerprint:
        return python()
    if not python().exists():
        print(f"creating {VENV.relative_to(REPO)} ...", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    flags = ["-q"] if quiet else []
    pip = [str(python()), "-m", "pip", "install", "--disable-pip-version-check", *flags]
    print("installing the peers and asgiws[fast,metrics] into it ...", flush=True)
    subprocess.run([*pip, "-r", str(REQUIREMENTS)], check=True, timeout=PIP_TIMEOUT)
    subprocess.run([*pip, "-e", f"{REPO}[fast,metrics]"], check=True, timeout=PIP_TIMEOUT)
    STAMP.write_text(fingerprint + "\n")
    return python()
