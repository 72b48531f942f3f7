"""Import the ASGI app named on the command line: ``module:attribute``.

Every failure is an :class:`AppImportError` whose message names the module or attribute and the
reason, with the original exception as ``__cause__`` (the CLI shows its traceback at debug level).
"""

from __future__ import annotations

import difflib
import importlib
import os
import sys
import typing
from collections.abc import Callable
from typing import Any


class AppImportError(Exception):
    """The app could not be imported; the message says what and why."""


def _split(spec: str) -> tuple[str, str]:
    module, sep, attribute = spec.partition(":")
    if (
        not sep
        or not module
        or not attribute
        or ":" in attribute
        or not all(part.isidentifier() for part in module.split("."))
        or not all(part.isidentifier() for part in attribute.split("."))
    ):
        raise AppImportError(
            f"{spec!r} is not of the form module:attribute (for example 'myapp.main:app')"
        )
    return module, attribute


def _is_missing_module_itself(exc: ModuleNotFoundError, module: str) -> bool:
    """True when ``module`` (or a package on its path) does not exist, False when it exists but
    imports something that does not."""
    missing = exc.name
    if missing is None:
        return False
    return module == missing or module.startswith(missing + ".")


def _close_names(name: str, candidates: list[str]) -> str:
    found = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    return f" (did you mean {found[0]!r}?)" if found else ""


def import_app(
    spec: str, *, factory: bool = False, app_dir: str | None = "."
) -> Callable[..., Any]:
    """Import ``spec`` (``module:attribute``, the attribute may be dotted) and return the app.

    ``app_dir`` is inserted at the front of ``sys.path`` first (unless it is there already).
    With ``factory`` the attribute is called with no arguments and its result is the app.
    """
    module_name, attribute = _split(spec)

    if app_dir is not None:
        directory = os.path.abspath(app_dir)
        if not os.path.isdir(directory):
            raise AppImportError(f"--app-dir: {app_dir!r} is not a directory")
        if directory not in sys.path:
            sys.path.insert(0, directory)

    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if _is_missing_module_itself(exc, module_name):
            raise AppImportError(f"could not import module {module_name!r}: {exc}") from exc
        raise AppImportError(
            f"error while importing module {module_name!r}: it imports a module that is "
            f"missing: {type(exc).__name__}: {exc}"
        ) from exc
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise AppImportError(
            f"error while importing module {module_name!r}: {type(exc).__name__}: {exc}"
        ) from exc

    obj: Any = module
    walked: list[str] = []
    for part in attribute.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError as exc:
            if walked:
                where = f"{module_name}:{'.'.join(walked)}"
                message = f"{where!r} has no attribute {part!r}"
            else:
                message = f"module {module_name!r} has no attribute {part!r}"
            hint = _close_names(part, [n for n in dir(obj) if not n.startswith("_")])
            raise AppImportError(message + hint) from exc
        walked.append(part)

    if factory:
        if not callable(obj):
            raise AppImportError(
                f"--factory: {spec!r} is not callable (it is {type(obj).__name__})"
            )
        try:
            obj = obj()
        except Exception as exc:
            raise AppImportError(
                f"--factory: calling {spec} failed: {type(exc).__name__}: {exc}"
            ) from exc
        if not callable(obj):
            raise AppImportError(
                f"--factory: {spec} returned {type(obj).__name__}, which is not an ASGI app"
            )
        return typing.cast(Callable[..., Any], obj)

    if not callable(obj):
        raise AppImportError(
            f"{spec!r} is not an ASGI app: it is {type(obj).__name__}, which is not callable"
        )
    return typing.cast(Callable[..., Any], obj)
