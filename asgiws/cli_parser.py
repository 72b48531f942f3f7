"""The argument parser of the ``asgiws`` command, beyond what argparse does by itself.

- A boolean flag takes an optional explicit value: ``--access-log``, ``--no-access-log``,
  ``--access-log=false`` and ``--access-log false`` (uvicorn's ``--ws-per-message-deflate
  false``). Only a following boolean word (1/0, true/false, yes/no, on/off) is taken as the
  value, so the APP argument after a bare flag stays the APP.
- uvicorn's flags that asgiws spells otherwise or does not offer are known
  (:mod:`asgiws.uvicorn_flags`): each fails naming the flag and the asgiws spelling or the
  reason, instead of argparse's "unrecognized arguments" or a value taken for the APP.
- An unknown flag gets argparse's message and the closest asgiws flag.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Sequence
from typing import Any

from .options import FALSE_WORDS, TRUE_WORDS
from .uvicorn_flags import FLAGS, UvicornFlag

BOOLEAN_WORDS = TRUE_WORDS + FALSE_WORDS


class Parser(argparse.ArgumentParser):
    """argparse, with optional values for boolean flags and suggestions for unknown flags."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Each boolean flag (both forms) -> (positive form, negative form or None).
        self.boolean_flags: dict[str, tuple[str, str | None]] = {}

    def add_boolean(self, positive: str, negative: str | None) -> None:
        self.boolean_flags[positive] = (positive, negative)
        if negative is not None:
            self.boolean_flags[negative] = (positive, negative)

    def known_flags(self, *, hidden: bool = False) -> list[str]:
        """The option strings, without those hidden from --help unless ``hidden``."""
        return [
            name
            for action in self._actions
            if hidden or action.help != argparse.SUPPRESS
            for name in action.option_strings
        ]

    def normalize(self, args: Sequence[str]) -> list[str]:
        """Boolean flags with a value, as the bare positive or negative form."""
        result: list[str] = []
        index = 0
        while index < len(args):
            arg = args[index]
            index += 1
            if arg == "--":
                result.extend(args[index - 1 :])
                break
            name, equals, value = arg.partition("=")
            pair = self.boolean_flags.get(name)
            if pair is None:
                result.append(arg)
                continue
            positive, negative = pair
            if not equals and index < len(args) and args[index].lower() in BOOLEAN_WORDS:
                value = args[index]
                index += 1
            elif not equals:
                result.append(name)
                continue
            if name != positive:
                self.error(f"{name} takes no value (got {value!r}): write {positive} {value}")
            word = value.strip().lower()
            if word not in BOOLEAN_WORDS:
                expected = ", ".join(
                    f"{t}/{f}" for t, f in zip(TRUE_WORDS, FALSE_WORDS, strict=True)
                )
                self.error(f"{name}: invalid value {value!r} (expected a boolean: {expected})")
            if word in TRUE_WORDS or negative is None:
                result.append(positive)
            else:
                result.append(negative)
        return result

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: Any = None
    ) -> tuple[argparse.Namespace, list[str]]:
        given = sys.argv[1:] if args is None else args
        return super().parse_known_args(self.normalize(given), namespace)

    def parse_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: Any = None
    ) -> argparse.Namespace:
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            message = f"unrecognized arguments: {' '.join(extras)}"
            for extra in extras:
                if extra.startswith("--"):
                    found = difflib.get_close_matches(
                        extra.partition("=")[0], self.known_flags(), n=1, cutoff=0.6
                    )
                    if found:
                        message += f" (did you mean {found[0]}?)"
                        break
            self.error(message)
        return parsed


class _UvicornAction(argparse.Action):
    """A uvicorn flag asgiws spells otherwise or does not offer: an error naming it, or a note
    for a value that names what asgiws does anyway (``--ws websockets``)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        self.row: UvicornFlag = kwargs.pop("row")
        super().__init__(option_strings, dest, **kwargs)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        value = values if isinstance(values, str) else None
        row = self.row
        if value is not None and value.lower() in row.harmless:
            sys.stderr.write(f"{parser.prog}: note: {row.message(value)}\n")
            return
        parser.error(row.message(value))


def add_uvicorn_flags(parser: Parser) -> None:
    """Register uvicorn's flags that asgiws does not have (hidden from --help)."""
    taken = set(parser.known_flags(hidden=True))
    for row in FLAGS:
        names = [name for name in row.flags() if name not in taken]
        if not names or row.same:
            continue
        parser.add_argument(
            *names,
            dest=f"uvicorn_{row.flag[2:].replace('-', '_')}",
            action=_UvicornAction,
            row=row,
            nargs=None if row.takes_value else 0,
            default=argparse.SUPPRESS,
            help=argparse.SUPPRESS,
        )
        if not row.takes_value:
            parser.add_boolean(row.flag, row.negative)
