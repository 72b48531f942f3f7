"""The README's option table is the generated one, and its quick-start commands are there."""

from __future__ import annotations

import re
from pathlib import Path

from asgiws.options import markdown_table, options

README = Path(__file__).resolve().parent.parent / "README.md"
START = "<!-- options:start -->\n"
END = "<!-- options:end -->"


def readme() -> str:
    return README.read_text(encoding="utf-8")


def test_option_table_is_current() -> None:
    text = readme()
    assert text.count(START) == 1 and text.count(END) == 1
    table = text.split(START, 1)[1].split(END, 1)[0]
    assert table == markdown_table(), (
        "the README's option table is stale: replace the lines between the options markers "
        "with the output of: python -m asgiws.config --markdown"
    )


def test_every_option_is_documented() -> None:
    text = readme()
    for option in options():
        assert f"`{option.flag}`" in text
        assert f"`{option.env}`" in text


def test_quick_start_commands() -> None:
    text = readme()
    assert "pip install -e '.[fast]' && asgiws asgiws.demo:app" in text
    assert "http://127.0.0.1:8000" in text
    assert "pip install -e '.[test]' && python -m pytest" in text


def test_python_api_example_uses_real_option_names() -> None:
    names = {o.name for o in options()}
    for call in re.findall(r"asgiws\.run\((.*)\)", readme()):
        for keyword in re.findall(r"\b([a-z_]+)=", call):
            assert keyword in names, keyword
