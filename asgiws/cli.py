"""The ``asgiws`` command: ``asgiws APP [options]``.

Every option flag is generated from :class:`asgiws.config.Config`; values are converted and
checked by :func:`asgiws.options.convert`, the same function the environment variables and
:func:`asgiws.run` go through. Precedence: command line, then ``ASGIWS_<NAME>``, then default.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import traceback
from collections.abc import Mapping, Sequence
from importlib import metadata
from typing import Any, NoReturn

from asgiws._version import __version__
from asgiws.accesslog import is_json
from asgiws.cli_parser import Parser, add_uvicorn_flags
from asgiws.config import Config
from asgiws.envfile import EnvFileError, check_values, export, read_env_file
from asgiws.importer import AppImportError, import_app
from asgiws.logconfig import LogConfigError
from asgiws.logs import configure_logging, error_logger
from asgiws.options import (
    Option,
    OptionError,
    build_config,
    convert,
    env_values,
    options,
    unknown_env_names,
)

PROG = "asgiws"

DESCRIPTION = (
    "Serve the ASGI app APP over HTTP/1.1 and WebSocket. Every option can also be set with an "
    "environment variable ASGIWS_<NAME> (for example ASGIWS_WS_MAX_SIZE=1048576; booleans as "
    "1/0, true/false, yes/no or on/off); the command line wins over the environment. Sizes in "
    "bytes also take KiB, MiB and GiB (16MiB); durations in seconds also take ms and s (500ms)."
)

EPILOG = "Example: asgiws asgiws.demo:app --port 8000, then open http://127.0.0.1:8000"


def version_text() -> str:
    parts = [f"{platform.python_implementation()} {platform.python_version()}"]
    for dist in ("h11", "uvloop", "websockets"):
        try:
            parts.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            continue
    return f"{PROG} {__version__} ({', '.join(parts)})"


class _VersionAction(argparse.Action):
    """``--version``, computed only when asked for (it looks up package versions)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> NoReturn:
        sys.stdout.write(version_text() + "\n")
        parser.exit(0)


def help_text(option: Option) -> str:
    """The option's help, its unit, default, zero remark and environment variable."""
    env = f"env {option.env}"
    if option.spec.also_env:
        env += f" or {option.spec.also_env}"
    remarks = [*option.remarks(), env]
    text = f"{option.spec.help} [{'; '.join(remarks)}]"
    return text.replace("%", "%%")  # argparse %-formats help texts


def build_parser() -> Parser:
    parser = Parser(
        prog=PROG,
        usage="%(prog)s [options] APP   (asgiws --help lists the options)",
        description=DESCRIPTION,
        epilog=EPILOG,
        allow_abbrev=False,
    )
    parser.add_argument(
        "app",
        metavar="APP",
        help="the ASGI app as module:attribute, for example myapp.main:app",
    )
    parser.add_argument("--version", action=_VersionAction, help="print the version and exit")
    groups: dict[str, Any] = {}
    for option in options():
        group = groups.get(option.section)
        if group is None:
            group = groups[option.section] = parser.add_argument_group(option.section)
        if option.repeated:
            group.add_argument(
                option.flag,
                dest=option.name,
                metavar=option.metavar,
                action="append",
                default=None,
                help=help_text(option),
            )
        elif option.kind is bool:
            # --access-log / --no-access-log; None means "not given here". The parser also takes
            # --access-log=false and --access-log false (as uvicorn's boolean flags do).
            parser.add_boolean(option.flag, option.negative_flag)
            group.add_argument(
                option.flag,
                dest=option.name,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=help_text(option),
            )
        else:
            # Kept as text: asgiws.options.convert parses and checks it, with the message format
            # shared with the environment and run().
            group.add_argument(
                option.flag,
                dest=option.name,
                metavar=option.metavar,
                default=None,
                help=help_text(option),
            )
    add_uvicorn_flags(parser)
    return parser


def parse_command_line(
    argv: Sequence[str] | None, environ: Mapping[str, str]
) -> tuple[str, Config]:
    """The APP argument and the :class:`Config` from the command line and the environment
    (with the variables of ``--env-file``, which those of ``environ`` override).

    Exits with status 2 and a message naming the flag (or variable) and value on a bad value.
    """
    app, config, _ = _parse(argv, environ)
    return app, config


def _parse(
    argv: Sequence[str] | None, environ: Mapping[str, str]
) -> tuple[str, Config, dict[str, str]]:
    """:func:`parse_command_line`, and the variables read from the --env-file."""
    parser = build_parser()
    namespace = parser.parse_args(argv)
    loaded: dict[str, str] = {}
    try:
        env_file, label = namespace.env_file, "--env-file"
        if env_file is None:
            env_file, label = environ.get("ASGIWS_ENV_FILE") or None, "ASGIWS_ENV_FILE"
        if env_file is not None:
            loaded = read_env_file(env_file, label)
            check_values({k: v for k, v in loaded.items() if k not in environ}, env_file, label)
            environ = {**loaded, **environ}
        given: dict[str, Any] = {}
        for option in options():
            raw = getattr(namespace, option.name)
            if raw is not None:
                given[option.name] = convert(
                    option, raw, option.flag, from_text=not isinstance(raw, bool)
                )
        config = build_config(
            (given, lambda o: o.flag),
            (env_values(environ), lambda o: o.env),
        )
    except (OptionError, EnvFileError) as exc:
        parser.error(str(exc))
    app: str = namespace.app
    return app, config, loaded


def report_import_error(exc: AppImportError, *, debug: bool) -> None:
    """``asgiws: error: <message>`` on stderr; the traceback only at debug level."""
    if debug:
        traceback.print_exception(exc, file=sys.stderr)
    sys.stderr.write(f"{PROG}: error: {exc}\n")
    sys.stderr.flush()


def fail(message: str) -> NoReturn:
    """``asgiws: error: <message>`` on stderr and exit status 2, as for a bad option value."""
    sys.stderr.write(f"{PROG}: error: {message}\n")
    sys.exit(2)


def main(argv: Sequence[str] | None = None) -> NoReturn:
    app_spec, config, loaded = _parse(argv, os.environ)
    export(loaded, os.environ)  # the app sees the --env-file variables too
    try:
        configure_logging(
            config.log_level,
            access_log=config.access_log,
            json_lines=is_json(config.access_log_format),
            log_config=config.log_config,
        )
    except LogConfigError as exc:
        fail(str(exc))
    if config.metrics_port is not None:
        from asgiws.metrics import missing_extra

        missing = missing_extra()
        if missing is not None:
            fail(missing)
    for name in unknown_env_names(os.environ):
        error_logger.warning("ignoring unknown environment variable %s", name)
    if config.reload:
        # The children import the app; this process only watches files.
        from asgiws.reload import run_reloader

        sys.exit(run_reloader(app_spec, config))
    if config.workers > 1:
        # The supervisor does not import the app: each worker does (asgiws.supervisor).
        from asgiws.runtime import serve_workers

        sys.exit(serve_workers(app_spec, config))
    try:
        app = import_app(app_spec, factory=config.factory, app_dir=config.app_dir)
    except AppImportError as exc:
        report_import_error(exc, debug=config.log_level in ("debug", "trace"))
        sys.exit(1)

    # Imported here: the server module is heavy (asyncio, uvloop) and the CLI must be able to
    # report option and import errors without it.
    from asgiws.runtime import serve

    sys.exit(serve(app, config))
