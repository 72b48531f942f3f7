"""What the three fuzz targets share: atheris when it is installed, a corpus replay without it.

Each target module defines ``test_one_input(data: bytes) -> None``, which raises (an assertion, or
an exception the code under test may not raise) on a bad input and returns otherwise. Run as a
script, a target is handed to atheris (libFuzzer's flags apply: ``-max_total_time=3600``, a
corpus directory, ``-rss_limit_mb=``); without atheris, it replays the files it is given.
tests/test_fuzzing.py replays every seed corpus through the same functions in the quick suite.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

atheris: Any
try:
    atheris = importlib.import_module("atheris")
except ImportError:  # a corpus replay needs no atheris
    atheris = None

CORPUS = Path(__file__).parent / "corpus"


def instrumented(name: str) -> contextlib.AbstractContextManager[Any]:
    """Around a target's imports of asgiws (and h11): coverage instrumentation when the target
    runs under atheris, nothing when it is imported (by the replay test, say)."""
    if atheris is not None and name == "__main__":
        return atheris.instrument_imports(include=["asgiws", "h11"])  # type: ignore[no-any-return]
    return contextlib.nullcontext()


def corpus_files(paths: list[str]) -> Iterator[Path]:
    """The files named, and those in the directories named, in a stable order."""
    for path in map(Path, paths):
        if path.is_dir():
            yield from sorted(p for p in path.iterdir() if p.is_file())
        else:
            yield path


def replay(target: Callable[[bytes], None], paths: list[str]) -> int:
    """Run ``target`` on each file; the number of files run."""
    count = 0
    for path in corpus_files(paths):
        target(path.read_bytes())
        count += 1
    return count


def main(target: Callable[[bytes], None], corpus: str) -> None:
    """A target's entry point: fuzz under atheris, else replay the corpus (``corpus``, the
    target's seed directory, when no path is given)."""
    args = sys.argv[1:]
    if atheris is None:
        paths = [a for a in args if not a.startswith("-")] or [str(CORPUS / corpus)]
        print(f"atheris is not installed: replayed {replay(target, paths)} inputs")
        return
    atheris.Setup(sys.argv, target)
    atheris.Fuzz()
