"""Render a results file (the latest by default) as a Markdown table, for the README.

Usage: python benchmarks/render.py [RESULTS.jsonl] [--text]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", type=Path, help="a .jsonl file under results/")
    parser.add_argument("--text", action="store_true", help="the terminal table instead")
    args = parser.parse_args(argv)
    path = args.path or report.latest()
    if path is None or not path.exists():
        print(f"no results file found in {report.RESULTS_DIR}", file=sys.stderr)
        return 1
    lines = report.load(path)
    print(report.render_text(lines) if args.text else report.render_markdown(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
