"""import_app: every failure names the module or attribute and the reason."""

from __future__ import annotations

import itertools
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from asgiws.importer import AppImportError, import_app

_counter = itertools.count()

APP = """
async def app(scope, receive, send):
    pass

class api:
    class v1:
        app = app

def create():
    return app

def bad_factory():
    raise RuntimeError("no database")

def returns_int():
    return 3

not_callable = 42
"""


@pytest.fixture
def make_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], str]]:
    """Write a module with a unique name into tmp_path; the name is returned."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    written: list[str] = []

    def make(source: str) -> str:
        name = f"asgiws_test_app_{next(_counter)}"
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        written.append(name)
        return name

    yield make
    for name in written:
        sys.modules.pop(name, None)


def test_imports_an_app(make_module: Callable[[str], str], tmp_path: Path) -> None:
    name = make_module(APP)
    app = import_app(f"{name}:app", app_dir=str(tmp_path))
    assert app.__name__ == "app"
    assert str(tmp_path) == sys.path[0]


def test_dotted_attribute(make_module: Callable[[str], str], tmp_path: Path) -> None:
    name = make_module(APP)
    assert import_app(f"{name}:api.v1.app", app_dir=str(tmp_path)).__name__ == "app"


def test_factory(make_module: Callable[[str], str], tmp_path: Path) -> None:
    name = make_module(APP)
    assert import_app(f"{name}:create", factory=True, app_dir=str(tmp_path)).__name__ == "app"


def test_package_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))
    package = tmp_path / "asgiws_test_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "main.py").write_text(APP)
    try:
        assert import_app("asgiws_test_pkg.main:app", app_dir=str(tmp_path)).__name__ == "app"
        with pytest.raises(AppImportError) as info:
            import_app("asgiws_test_pkg.nope:app", app_dir=str(tmp_path))
        assert str(info.value) == (
            "could not import module 'asgiws_test_pkg.nope': No module named 'asgiws_test_pkg.nope'"
        )
    finally:
        for key in [k for k in sys.modules if k.startswith("asgiws_test_pkg")]:
            del sys.modules[key]


@pytest.mark.parametrize("spec", ["myapp", "myapp:", ":app", "my app:app", "a:b:c", "a:b.", ""])
def test_not_of_the_form(spec: str) -> None:
    with pytest.raises(AppImportError) as info:
        import_app(spec)
    assert str(info.value).startswith(f"{spec!r} is not of the form module:attribute")


def test_module_missing() -> None:
    with pytest.raises(AppImportError) as info:
        import_app("asgiws_no_such_module:app")
    assert str(info.value) == (
        "could not import module 'asgiws_no_such_module': No module named 'asgiws_no_such_module'"
    )
    assert isinstance(info.value.__cause__, ModuleNotFoundError)


def test_module_that_imports_a_missing_module(
    make_module: Callable[[str], str], tmp_path: Path
) -> None:
    name = make_module("import asgiws_missing_dependency\n")
    with pytest.raises(AppImportError) as info:
        import_app(f"{name}:app", app_dir=str(tmp_path))
    assert str(info.value) == (
        f"error while importing module {name!r}: it imports a module that is missing: "
        "ModuleNotFoundError: No module named 'asgiws_missing_dependency'"
    )


def test_error_raised_while_importing(make_module: Callable[[str], str], tmp_path: Path) -> None:
    name = make_module("x = 1 / 0\n")
    with pytest.raises(AppImportError) as info:
        import_app(f"{name}:app", app_dir=str(tmp_path))
    assert str(info.value) == (
        f"error while importing module {name!r}: ZeroDivisionError: division by zero"
    )
    assert isinstance(info.value.__cause__, ZeroDivisionError)


def test_syntax_error(make_module: Callable[[str], str], tmp_path: Path) -> None:
    name = make_module("def app(:\n")
    with pytest.raises(
        AppImportError, match=rf"error while importing module '{name}': SyntaxError"
    ):
        import_app(f"{name}:app", app_dir=str(tmp_path))


def test_system_exit_in_module(make_module: Callable[[str], str], tmp_path: Path) -> None:
    name = make_module("import sys\nsys.exit(3)\n")
    with pytest.raises(AppImportError, match=rf"importing module '{name}': SystemExit: 3"):
        import_app(f"{name}:app", app_dir=str(tmp_path))


def test_missing_attribute_with_suggestion(
    make_module: Callable[[str], str], tmp_path: Path
) -> None:
    name = make_module(APP)
    with pytest.raises(AppImportError) as info:
        import_app(f"{name}:aap", app_dir=str(tmp_path))
    assert str(info.value) == f"module {name!r} has no attribute 'aap' (did you mean 'app'?)"
    with pytest.raises(AppImportError) as info:
        import_app(f"{name}:zzzzz", app_dir=str(tmp_path))
    assert str(info.value) == f"module {name!r} has no attribute 'zzzzz'"


def test_missing_dotted_attribute(make_module: Callable[[str], str], tmp_path: Path) -> None:
    name = make_module(APP)
    with pytest.raises(AppImportError) as info:
        import_app(f"{name}:api.v1.ap", app_dir=str(tmp_path))
    assert str(info.value) == f"'{name}:api.v1' has no attribute 'ap' (did you mean 'app'?)"
    with pytest.raises(AppImportError) as info:
        import_app(f"{name}:api.v2.app", app_dir=str(tmp_path))
    assert str(info.value) == f"'{name}:api' has no attribute 'v2'"


def test_not_callable(make_module: Callable[[str], str], tmp_path: Path) -> None:
    name = make_module(APP)
    with pytest.raises(AppImportError) as info:
        import_app(f"{name}:not_callable", app_dir=str(tmp_path))
    assert str(info.value) == (
        f"'{name}:not_callable' is not an ASGI app: it is int, which is not callable"
    )


def test_factory_failures(make_module: Callable[[str], str], tmp_path: Path) -> None:
    name = make_module(APP)
    with pytest.raises(AppImportError) as info:
        import_app(f"{name}:bad_factory", factory=True, app_dir=str(tmp_path))
    assert str(info.value) == (
        f"--factory: calling {name}:bad_factory failed: RuntimeError: no database"
    )
    assert isinstance(info.value.__cause__, RuntimeError)
    with pytest.raises(AppImportError, match=r"--factory: .*:returns_int returned int"):
        import_app(f"{name}:returns_int", factory=True, app_dir=str(tmp_path))
    with pytest.raises(AppImportError, match=r"--factory: .*:not_callable' is not callable"):
        import_app(f"{name}:not_callable", factory=True, app_dir=str(tmp_path))


def test_app_dir_must_exist(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(AppImportError) as info:
        import_app("x:app", app_dir=str(missing))
    assert str(info.value) == f"--app-dir: {str(missing)!r} is not a directory"
