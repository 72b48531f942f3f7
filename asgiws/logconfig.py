"""``--log-config FILE``: logging configured from a file, with :mod:`logging.config`.

The extension chooses the reader: ``.json`` and ``.yaml`` / ``.yml`` (with PyYAML installed)
hold a :func:`logging.config.dictConfig` dictionary; ``.ini``, ``.cfg`` and ``.conf`` are read
by :func:`logging.config.fileConfig`. Loggers that exist already (asgiws's own among them) are
kept enabled unless a dictionary says ``"disable_existing_loggers": true``: the standard
library's default would silence ``asgiws.error`` and ``asgiws.access`` under a configuration
that only names the root logger.

Every failure (no such file, a syntax error, a handler class that cannot be imported, a file
a handler cannot open) is a :class:`LogConfigError` naming the flag and the file, with the
reason; the command reports it without a traceback.
"""

from __future__ import annotations

import configparser
import json
import logging.config
import os
from typing import Any

DICT_EXTENSIONS = (".json", ".yaml", ".yml")
INI_EXTENSIONS = (".ini", ".cfg", ".conf")


class LogConfigError(ValueError):
    """A --log-config file that cannot be applied."""


def _fail(path: str, reason: str) -> LogConfigError:
    return LogConfigError(f"--log-config {path!r}: {reason}")


def _reason(exc: BaseException) -> str:
    text = str(exc)
    # logging.config wraps the real error: "Unable to configure handler 'file'" and its cause.
    cause = exc.__cause__ or exc.__context__
    if cause is not None and str(cause) and str(cause) not in text:
        text = f"{text}: {cause}"
    return text or type(exc).__name__


def read_dict_config(path: str) -> dict[str, Any]:
    """The dictionary of a .json or .yaml file."""
    extension = os.path.splitext(path)[1].lower()
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read()
    except OSError as exc:
        raise _fail(path, exc.strerror or str(exc)) from None
    except UnicodeDecodeError as exc:
        raise _fail(path, f"not UTF-8 text ({exc.reason})") from None
    if extension == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise _fail(path, f"invalid JSON: {exc}") from None
    else:
        try:
            import yaml
        except ImportError:
            raise _fail(
                path, "a YAML file needs PyYAML (pip install pyyaml), or write it as .json"
            ) from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise _fail(path, f"invalid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise _fail(path, f"expected a mapping (a dictConfig), got {type(data).__name__}")
    return data


def apply_log_config(path: str) -> None:
    """Configure logging from the file at ``path``; :class:`LogConfigError` when it cannot."""
    extension = os.path.splitext(path)[1].lower()
    if extension not in DICT_EXTENSIONS + INI_EXTENSIONS:
        known = ", ".join(DICT_EXTENSIONS + INI_EXTENSIONS)
        raise _fail(path, f"unknown extension {extension or '(none)'!r} (expected {known})")
    if extension in DICT_EXTENSIONS:
        config = read_dict_config(path)
        config.setdefault("disable_existing_loggers", False)
        try:
            logging.config.dictConfig(config)
        except Exception as exc:  # the file's mistake, of any kind: reported, not raised on
            raise _fail(path, _reason(exc)) from None
        return
    if not os.path.isfile(path):
        raise _fail(path, "No such file" if not os.path.exists(path) else "not a file")
    try:
        logging.config.fileConfig(path, disable_existing_loggers=False)
    except configparser.Error as exc:
        raise _fail(path, f"invalid INI file: {exc}") from None
    except KeyError as exc:
        raise _fail(path, f"missing section or option {exc}") from None
    except Exception as exc:  # as above: a KeyError for a missing section, an ImportError ...
        if isinstance(exc.__context__, configparser.Error):  # wrapped in a RuntimeError
            raise _fail(path, f"invalid INI file: {exc.__context__}") from None
        raise _fail(path, _reason(exc)) from None
