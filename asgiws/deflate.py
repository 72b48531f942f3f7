"""permessage-deflate (RFC 7692) for the server side: negotiation and the zlib streams.

``negotiate(offers, window_bits=..., mem_level=...)`` reads every Sec-WebSocket-Extensions
request header, accepts the first acceptable permessage-deflate offer and returns the response
header value with a configured :class:`PerMessageDeflate`, or None to decline them all.

Memory. A zlib compressor allocates its state when it is made: about
``(1 << (window_bits + 2)) + (1 << (mem_level + 9))`` bytes plus ~6 KiB, so zlib's defaults
(15 bits, level 8) reserve ~262 KiB per connection against ~38 KiB for this server's defaults
(12 bits, level 5). An inflater costs ~7 KiB, plus its window (``1 << window_bits``) from the
first message on. Measured as RSS (``benchmarks/micro_codec.py --memory``), one connection
after a 64 KiB message each way costs ~59 KiB with these defaults and ~202 KiB with zlib's,
the inflater's 32 KiB window for the client's default 15 bits included in both. Both streams
are made lazily, on the first message in their direction, and dropped after each message when
context takeover is off, so a connection that has not yet exchanged a compressed message costs
nothing here.

The library. The streams come from CPython's ``zlib`` or from zlib-ng (the ``zlib-ng``
package, in the 'fast' extra): ``--ws-deflate-zlib`` chooses, and 'auto' takes zlib-ng when it
is installed. Both write and read the same raw deflate format and honour the same window, so a
peer cannot tell them apart except by the bytes' count. Measured on the benchmark suite's 4 KiB
JSON messages (12-bit windows, level 1, memory level 5): zlib-ng compresses one in a third of
zlib's time (12 against 37 us) and inflates the client's in half (5 against 10 us), but its
level 1 is a quicker, coarser algorithm (1,539 bytes out against zlib's 1,214), and its
compressor takes ~156 KiB per stream whatever the window and memory level (a fixed 64 Ki-entry
hash table) against zlib's ~38 KiB, its inflater ~46 KiB against ~13 KiB. So zlib-ng trades
memory per compressing connection (about what CPython's zlib takes at its own defaults) for
CPU per compressed message; 'zlib' takes the other side.

Nothing in this module imports asyncio or reads a clock.
"""

from __future__ import annotations

import re
import zlib
from typing import Final, Protocol, cast

from ._abnf import OWS, TOKEN

__all__ = [
    "DEFLATE_TAIL",
    "INFLATE_ERRORS",
    "PerMessageDeflate",
    "ZlibLibrary",
    "negotiate",
    "parse_extensions",
    "zlib_library",
]

EXTENSION_NAME: Final = "permessage-deflate"

# RFC 7692 §7.2.1/§7.2.2: the 4 octets a sync flush ends with (an empty stored block): the
# sender removes them from each compressed message; the receiver appends them again before
# inflating the end of the message.
DEFLATE_TAIL: Final = b"\x00\x00\xff\xff"

# RFC 7692 §7.1.2.1/§7.1.2.2: a window bits value is a decimal integer 8-15 with no leading zero.
_WINDOW_BITS_VALUES: Final = {str(bits): bits for bits in range(8, 16)}


class Deflater(Protocol):
    """A compressor stream, of either library."""

    def compress(self, data: bytes, /) -> bytes: ...
    def flush(self, mode: int, /) -> bytes: ...


class Inflater(Protocol):
    """An inflater stream, of either library."""

    @property
    def eof(self) -> bool: ...
    @property
    def unconsumed_tail(self) -> bytes: ...
    def decompress(self, data: bytes, max_length: int = ..., /) -> bytes: ...


class ZlibLibrary(Protocol):
    """What this module takes from ``zlib`` or ``zlib_ng.zlib_ng``: the two are alike."""

    def compressobj(self, level: int, method: int, wbits: int, memLevel: int, /) -> Deflater: ...
    def decompressobj(self, wbits: int, /) -> Inflater: ...


_zlib_ng: ZlibLibrary | None
# What a bad compressed stream raises: each library has its own error class.
INFLATE_ERRORS: tuple[type[Exception], ...]
try:
    from zlib_ng import zlib_ng
except ImportError:  # pragma: no cover - the 'fast' extra and the tests install it
    _zlib_ng = None
    INFLATE_ERRORS = (zlib.error,)
else:
    _zlib_ng = zlib_ng
    # zlib-ng's stub types its error class as an instance.
    INFLATE_ERRORS = (zlib.error, cast("type[Exception]", zlib_ng.error))


def zlib_library(name: str) -> ZlibLibrary:
    """--ws-deflate-zlib: 'zlib' (CPython's), 'zlib-ng', or 'auto' (zlib-ng when installed).

    Raises LookupError for 'zlib-ng' when the package is not installed.
    """
    if name == "zlib" or (name == "auto" and _zlib_ng is None):
        return zlib
    if name not in ("auto", "zlib-ng"):
        raise ValueError(f"unknown zlib library {name!r}: 'auto', 'zlib' or 'zlib-ng'")
    if _zlib_ng is None:
        raise LookupError("the zlib-ng package is not installed (pip install 'asgiws[fast]')")
    return _zlib_ng


_PARAMETERS: Final = frozenset(
    {
        "server_no_context_takeover",
        "client_no_context_takeover",
        "server_max_window_bits",
        "client_max_window_bits",
    }
)


class PerMessageDeflate:
    """The compression state of one connection, as negotiated.

    ``server_max_window_bits`` sizes the server's compressor and ``client_max_window_bits``
    the inflater of the client's messages. zlib cannot make a raw deflate stream with an 8-bit
    window, so 8 becomes 9 for both: an inflater with a larger window reads any stream made
    with a smaller one, and zlib's compressor with a 512-byte window never emits a distance
    over 250 (its MAX_DIST is the window less 262 bytes of lookahead), so its output also fits
    the 256-byte window of a peer that asked for 8.
    """

    __slots__ = (
        "_deflater",
        "_inflater",
        "_zlib",
        "client_max_window_bits",
        "client_no_context_takeover",
        "level",
        "mem_level",
        "min_size",
        "server_max_window_bits",
        "server_no_context_takeover",
    )

    def __init__(
        self,
        *,
        server_no_context_takeover: bool = False,
        client_no_context_takeover: bool = False,
        server_max_window_bits: int = 15,
        client_max_window_bits: int = 15,
        mem_level: int = 8,
        level: int = zlib.Z_DEFAULT_COMPRESSION,
        min_size: int = 0,
        library: ZlibLibrary = zlib,
    ) -> None:
        for name, bits in (
            ("server_max_window_bits", server_max_window_bits),
            ("client_max_window_bits", client_max_window_bits),
        ):
            if not 8 <= bits <= 15:
                raise ValueError(f"{name} must be 8 to 15, not {bits}")
        if not 1 <= mem_level <= 9:
            raise ValueError(f"mem_level must be 1 to 9, not {mem_level}")
        if not (1 <= level <= 9 or level == zlib.Z_DEFAULT_COMPRESSION):
            raise ValueError(f"level must be 1 to 9, not {level}")
        if min_size < 0:
            raise ValueError(f"min_size must be 0 or more, not {min_size}")
        self.server_no_context_takeover = server_no_context_takeover
        self.client_no_context_takeover = client_no_context_takeover
        self.server_max_window_bits = max(server_max_window_bits, 9)
        self.client_max_window_bits = max(client_max_window_bits, 9)
        self.mem_level = mem_level
        self.level = level  # zlib's compression level (-1: its default, 6)
        # Messages whose payload is shorter are sent uncompressed, RSV1 clear: RFC 7692 §6
        # lets a sender compress any message or none (see FrameCodec._payload_into).
        self.min_size = min_size
        self._zlib = library
        self._deflater: Deflater | None = None
        self._inflater: Inflater | None = None

    def __repr__(self) -> str:
        return (
            f"PerMessageDeflate(server_no_context_takeover={self.server_no_context_takeover}, "
            f"client_no_context_takeover={self.client_no_context_takeover}, "
            f"server_max_window_bits={self.server_max_window_bits}, "
            f"client_max_window_bits={self.client_max_window_bits}, "
            f"mem_level={self.mem_level}, level={self.level}, min_size={self.min_size}, "
            f"library={self.library})"
        )

    @property
    def library(self) -> str:
        """The zlib library of the streams: 'zlib' or 'zlib-ng'."""
        return "zlib" if self._zlib is zlib else "zlib-ng"

    @property
    def holds_deflater(self) -> bool:
        """Whether a compressor stream (and its memory) is kept until the next message."""
        return self._deflater is not None

    @property
    def holds_inflater(self) -> bool:
        """Whether an inflater stream (and its window) is kept until the next message."""
        return self._inflater is not None

    def compress(self, data: bytes) -> bytes:
        """Compress one whole message (RFC 7692 §7.2.1), without the 00 00 ff ff tail."""
        deflater = self._deflater
        if deflater is None:
            deflater = self._zlib.compressobj(
                self.level,
                zlib.DEFLATED,  # 8 in both libraries
                -self.server_max_window_bits,  # negative: raw deflate, no zlib header
                self.mem_level,
            )
        out = deflater.compress(data) + deflater.flush(zlib.Z_SYNC_FLUSH)
        # RFC 7692 §7.1.1.1: with server_no_context_takeover, each message starts afresh;
        # dropping the stream does that and frees its memory between messages.
        self._deflater = None if self.server_no_context_takeover else deflater
        # RFC 7692 §7.2.1: remove the 4 octets 00 00 ff ff at the tail end.
        return out[:-4] if out.endswith(DEFLATE_TAIL) else out

    def inflater(self) -> Inflater:
        """The zlib stream for the client's messages, made on first use.

        The caller feeds it with bounded ``decompress(data, max_length)`` calls and appends
        the RFC 7692 tail itself; see :class:`asgiws.frames.FrameCodec`.
        """
        inflater = self._inflater
        if inflater is None:
            inflater = self._inflater = self._zlib.decompressobj(-self.client_max_window_bits)
        return inflater

    def end_inbound_message(self) -> None:
        """A compressed message from the client has been inflated to its end."""
        inflater = self._inflater
        # RFC 7692 §7.1.1.2: with client_no_context_takeover the client starts each message
        # afresh, so the window need not be kept. A stream ended by a block with BFINAL set
        # (RFC 7692 §7.2.3.4) cannot take more input: the next message starts a new one.
        if inflater is not None and (self.client_no_context_takeover or inflater.eof):
            self._inflater = None


# -- negotiation -------------------------------------------------------------------------------

# RFC 9110 §5.6.2 token, §5.6.4 quoted-string and §5.6.3 OWS (RFC 7230 §3.2.6 when RFC 6455
# §9.1 was written); RFC 6455 §9.1 builds the header from them.
_TOKEN: Final = TOKEN
_QUOTED: Final = r'"(?:[^"\\]|\\.)*"'
_OWS: Final = OWS
_PARAM: Final = rf"{_OWS};{_OWS}({_TOKEN})(?:{_OWS}={_OWS}({_TOKEN}|{_QUOTED}))?"
_PARAM_RE: Final = re.compile(_PARAM)
_ELEMENT_RE: Final = re.compile(rf"{_OWS}({_TOKEN})((?:{_PARAM})*){_OWS}")
_UNESCAPE_RE: Final = re.compile(r"\\(.)")

Params = list[tuple[str, str | None]]


def parse_extensions(header: str) -> list[tuple[str, Params] | None]:
    """Split one Sec-WebSocket-Extensions value into ``(name, [(param, value), ...])``.

    Names and parameter names are lower-cased; a quoted value is unquoted. An element that
    does not parse is returned as None, so that a bad offer is declined on its own and the
    offers after it are still read. Empty elements (``a, , b``) are skipped, as RFC 7230 §7
    allows.
    """
    result: list[tuple[str, Params] | None] = []
    for element in _split_elements(header):
        if not element.strip(" \t"):
            continue
        match = _ELEMENT_RE.fullmatch(element)
        if match is None:
            result.append(None)
            continue
        params: Params = []
        for param in _PARAM_RE.finditer(match.group(2)):
            value = param.group(2)
            if value is not None and value.startswith('"'):
                value = _UNESCAPE_RE.sub(r"\1", value[1:-1])
            params.append((param.group(1).lower(), value))
        result.append((match.group(1).lower(), params))
    return result


def _split_elements(header: str) -> list[str]:
    """Split at the commas that are outside quoted strings (RFC 7230 §3.2.6)."""
    elements = []
    start = 0
    quoted = escaped = False
    for index, char in enumerate(header):
        if escaped:
            escaped = False
        elif quoted:
            if char == "\\":
                escaped = True
            elif char == '"':
                quoted = False
        elif char == '"':
            quoted = True
        elif char == ",":
            elements.append(header[start:index])
            start = index + 1
    elements.append(header[start:])
    return elements


def negotiate(
    offers: list[str],
    *,
    window_bits: int,
    mem_level: int,
    client_window_bits: int = 15,
    level: int = zlib.Z_DEFAULT_COMPRESSION,
    min_size: int = 0,
    library: ZlibLibrary = zlib,
) -> tuple[str, PerMessageDeflate] | None:
    """Accept the first acceptable permessage-deflate offer among ``offers``.

    ``offers`` are the values of every Sec-WebSocket-Extensions request header, in order.
    ``window_bits`` (9-15), ``mem_level`` (1-9) and ``level`` (1-9, or -1 for zlib's 6)
    configure the server's compressor, ``library`` (:func:`zlib_library`) makes the streams,
    and ``min_size`` is the smallest payload the server compresses; the
    window is lowered further when the client asks. ``client_window_bits`` (9-15) is the largest
    window the server lets the client's compressor use, where the client offered
    client_max_window_bits (otherwise the client may use 15). Returns the response header value
    and the compression state, or None when no offer is acceptable.
    """
    if not 9 <= window_bits <= 15:
        raise ValueError(f"window_bits must be 9 to 15, not {window_bits}")
    if not 9 <= client_window_bits <= 15:
        raise ValueError(f"client_window_bits must be 9 to 15, not {client_window_bits}")
    if not 1 <= mem_level <= 9:
        raise ValueError(f"mem_level must be 1 to 9, not {mem_level}")
    if min_size < 0:
        raise ValueError(f"min_size must be 0 or more, not {min_size}")
    for header in offers:
        for element in parse_extensions(header):
            if element is None or element[0] != EXTENSION_NAME:
                continue
            accepted = _accept(
                element[1], window_bits, mem_level, client_window_bits, level, min_size, library
            )
            if accepted is not None:
                return accepted
    return None


def _accept(
    params: Params,
    window_bits: int,
    mem_level: int,
    client_window_bits: int,
    level: int,
    min_size: int,
    library: ZlibLibrary,
) -> tuple[str, PerMessageDeflate] | None:
    """Answer one offer, or None to decline it (RFC 7692 §7.1)."""
    seen: set[str] = set()
    server_no_context_takeover = False
    client_no_context_takeover = False
    server_max_window_bits: int | None = None
    client_max_window_bits: int | None = None
    client_max_window_bits_offered = False
    for name, value in params:
        # RFC 7692 §7: decline an offer with an unknown parameter, a duplicate parameter or an
        # invalid value.
        if name not in _PARAMETERS or name in seen:
            return None
        seen.add(name)
        if name == "server_no_context_takeover" or name == "client_no_context_takeover":
            # RFC 7692 §7.1.1.1/§7.1.1.2: these parameters have no value.
            if value is not None:
                return None
            if name == "server_no_context_takeover":
                server_no_context_takeover = True
            else:
                client_no_context_takeover = True
        elif name == "server_max_window_bits":
            # RFC 7692 §7.1.2.1: in an offer, this parameter has a value 8-15.
            if value is None or value not in _WINDOW_BITS_VALUES:
                return None
            server_max_window_bits = _WINDOW_BITS_VALUES[value]
        else:
            # RFC 7692 §7.1.2.2: in an offer, this parameter may have a value 8-15 or none.
            client_max_window_bits_offered = True
            if value is not None:
                if value not in _WINDOW_BITS_VALUES:
                    return None
                client_max_window_bits = _WINDOW_BITS_VALUES[value]

    response = [EXTENSION_NAME]
    # RFC 7692 §7.1.1.1: a server that accepts server_no_context_takeover MUST include it.
    if server_no_context_takeover:
        response.append("server_no_context_takeover")
    # RFC 7692 §7.1.1.2: the server may use client_no_context_takeover; echoing it lets the
    # server drop its inflater between messages.
    if client_no_context_takeover:
        response.append("client_no_context_takeover")
    # RFC 7692 §7.1.2.1: the server answers an offered server_max_window_bits with the same or a
    # smaller value, and MAY include the parameter even when it was not offered: it always
    # does, so that the client may size its inflater to the server's real window. The server's
    # compressor never uses a larger window than this.
    server_bits = (
        window_bits if server_max_window_bits is None else min(window_bits, server_max_window_bits)
    )
    response.append(f"server_max_window_bits={server_bits}")
    # RFC 7692 §7.1.2.2: client_max_window_bits appears in the response only if it was offered;
    # an offered value (or 15, for a value-less offer) may be answered with the same or a
    # smaller one: the server answers with at most client_window_bits, which sizes its
    # inflater. Without the offer the client may use 15, and the inflater must allow it.
    client_bits = 15
    if client_max_window_bits_offered:
        offered = 15 if client_max_window_bits is None else client_max_window_bits
        client_bits = min(offered, client_window_bits)
        response.append(f"client_max_window_bits={client_bits}")
    state = PerMessageDeflate(
        server_no_context_takeover=server_no_context_takeover,
        client_no_context_takeover=client_no_context_takeover,
        server_max_window_bits=server_bits,
        client_max_window_bits=client_bits,
        mem_level=mem_level,
        level=level,
        min_size=min_size,
        library=library,
    )
    return "; ".join(response), state
