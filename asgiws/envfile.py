"""``--env-file FILE``: environment variables from a dotenv file, read with python-dotenv (the
``dotenv`` extra: ``pip install 'asgiws[dotenv]'``).

The file is read before the options are, so ``ASGIWS_*`` variables in it count as if they were
set in the environment; a variable already set in the environment wins over the file. The
command also puts the file's variables into ``os.environ`` (without replacing any), so that the
app sees them too.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping


class EnvFileError(ValueError):
    """An --env-file that cannot be read; the message names the flag and the file."""


def read_env_file(path: str, label: str = "--env-file") -> dict[str, str]:
    """The variables of the dotenv file at ``path`` (a variable without a value is left out).
    ``label`` names where the path came from (``--env-file``, ``ASGIWS_ENV_FILE``)."""
    try:
        from dotenv import dotenv_values
    except ImportError:
        raise EnvFileError(
            f"{label} {path!r}: reading a dotenv file needs python-dotenv: "
            "pip install 'asgiws[dotenv]'"
        ) from None
    # Not isfile(): a pipe (--env-file <(...)) is a fine file to read.
    if not os.path.exists(path) or os.path.isdir(path):
        reason = "no such file" if not os.path.exists(path) else "is a directory"
        raise EnvFileError(f"{label} {path!r}: {reason}")
    try:
        values = dotenv_values(path, encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise EnvFileError(f"{label} {path!r}: cannot read it: {exc}") from None
    return {name: value for name, value in values.items() if value is not None}


def check_values(values: dict[str, str], path: str, label: str) -> None:
    """Convert the ``ASGIWS_*`` variables of a file once, so that a bad value is reported with
    the file it came from."""
    from .options import OptionError, env_values

    try:
        env_values(values)
    except OptionError as exc:
        raise OptionError(f"{exc} (set in {label} {path!r})") from None


def export(values: dict[str, str], environ: MutableMapping[str, str]) -> None:
    """Set each of ``values`` in ``environ`` where it is not set already."""
    for name, value in values.items():
        environ.setdefault(name, value)
