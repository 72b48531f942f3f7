"""asgiws: a WebSocket-first ASGI server for HTTP/1.1 and RFC 6455 WebSocket."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:
    from .embed import Server, StartupError

__all__ = ["Server", "StartupError", "__version__", "run"]


def __getattr__(name: str) -> Any:
    # asgiws.Server and asgiws.StartupError import asyncio: only when asked for, so that
    # "import asgiws" stays light.
    if name in ("Server", "StartupError"):
        from . import embed

        return getattr(embed, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def run(app: Callable[..., Any] | str, **options: Any) -> int:
    """Serve ``app`` until SIGINT/SIGTERM and return the exit status (0 after a clean shutdown).

    ``app`` is an ASGI callable or a ``"module:attribute"`` string. The keyword arguments are the
    options of the ``asgiws`` command with underscores (``port=0``, ``ws_max_size=1 << 20``,
    ``access_log=False``); options not given are read from ``ASGIWS_<NAME>`` environment
    variables, then take their defaults. An unknown keyword or a value of the wrong type raises
    ``TypeError``; a value out of range or not among the choices raises ``ValueError``; an app
    that cannot be imported raises :class:`asgiws.importer.AppImportError`. ``env_file`` is read
    into ``os.environ`` (without replacing what is set) before the environment is;
    ``log_config`` is applied once the app is imported (a bad file raises ``ValueError``).
    """
    # Imported here so that "import asgiws" stays light (the sans-IO core imports the package).
    import os

    from asgiws.accesslog import is_json
    from asgiws.envfile import check_values, export, read_env_file
    from asgiws.importer import import_app
    from asgiws.logs import configure_logging
    from asgiws.options import build_config, env_values, keyword_values

    given = keyword_values(options)
    env_file = given.get("env_file", os.environ.get("ASGIWS_ENV_FILE") or None)
    if env_file is not None:
        label = "run(env_file=...)" if "env_file" in given else "ASGIWS_ENV_FILE"
        loaded = read_env_file(env_file, label)
        check_values({k: v for k, v in loaded.items() if k not in os.environ}, env_file, label)
        export(loaded, os.environ)
    config = build_config((given, lambda o: o.keyword), (env_values(os.environ), lambda o: o.env))
    if config.reload:
        # A fresh process imports the app on each change: it must be named, not passed.
        if not isinstance(app, str):
            raise ValueError(
                "run(reload=True): the app must be a 'module:attribute' string, so that each "
                "restart imports it anew"
            )
        configure_logging(
            config.log_level,
            access_log=config.access_log,
            json_lines=is_json(config.access_log_format),
            log_config=config.log_config,
        )
        from asgiws.reload import run_reloader

        return run_reloader(app, config)
    if config.workers > 1:
        # Each worker process imports the app itself: it must be named, not passed.
        if not isinstance(app, str):
            raise TypeError(
                f"run(workers={config.workers}): pass the app as a 'module:attribute' string, "
                "which each worker process imports"
            )
        configure_logging(
            config.log_level,
            access_log=config.access_log,
            json_lines=is_json(config.access_log_format),
            log_config=config.log_config,
        )
        from asgiws.runtime import serve_workers

        return serve_workers(app, config)
    target: Callable[..., Any]
    if isinstance(app, str):
        target = import_app(app, factory=config.factory, app_dir=config.app_dir)
    elif not callable(app):
        raise TypeError(
            f"run(app=...): expected an ASGI app or a 'module:attribute' string, "
            f"got {type(app).__name__}"
        )
    elif config.factory:
        target = app()
    else:
        target = app
    configure_logging(
        config.log_level,
        access_log=config.access_log,
        json_lines=is_json(config.access_log_format),
        log_config=config.log_config,
    )

    from asgiws.runtime import serve

    status: int = serve(target, config)
    return status
