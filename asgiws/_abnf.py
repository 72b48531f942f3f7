"""The RFC 9110 grammar that more than one module needs, written once.

The patterns are regular-expression source, as ``str`` for text (header values decoded as
latin-1 or ASCII) and as ``bytes`` for bytes, to be built into each user's own pattern.
"""

from __future__ import annotations

from typing import Final

__all__ = ["OWS", "TCHAR", "TCHAR_BYTES", "TOKEN", "TOKEN_BYTES"]

# RFC 9110 §5.6.2: tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." / "^" /
# "_" / "`" / "|" / "~" / DIGIT / ALPHA, as the body of a character class ("-" first, so it is
# a literal); token = 1*tchar.
TCHAR: Final = r"-!#$%&'*+.^_`|~0-9A-Za-z"
TOKEN: Final = rf"[{TCHAR}]+"
# RFC 9110 §5.6.3: OWS = *( SP / HTAB ).
OWS: Final = r"[ \t]*"

TCHAR_BYTES: Final = TCHAR.encode("ascii")
TOKEN_BYTES: Final = TOKEN.encode("ascii")
