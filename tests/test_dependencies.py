"""What asgiws needs at run time: h11, and nothing from the test oracle (wsproto)."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_no_module_of_the_package_imports_wsproto() -> None:
    code = (
        "import importlib, pkgutil, sys, asgiws\n"
        "for info in pkgutil.walk_packages(asgiws.__path__, 'asgiws.'):\n"
        "    if info.name != 'asgiws.__main__':\n"
        "        importlib.import_module(info.name)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'wsproto'))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_wsproto_is_a_test_dependency_only() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert [d.split(">")[0] for d in project["dependencies"]] == ["h11"]
    assert any(d.startswith("wsproto") for d in project["optional-dependencies"]["test"])
